// The backend interface: memory and every op the model runs, on flat Tensor
// views. The CPU backend (cpu_backend.cc) is the reference; the CUDA backend
// implements the same calls with its own kernels. Shapes are explicit
// arguments; each op's header in src/ops documents them. Gradients of
// parameters are accumulated (+=), activations written (=), except where an
// op's header says otherwise.
#ifndef GPT2_BACKEND_BACKEND_H_
#define GPT2_BACKEND_BACKEND_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/core/tensor.h"
#include "src/ops/adamw.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2 {

// GPU time spent in one kind of op, summed over calls (see EnableOpTiming).
// bytes and flops are what the calls must move and compute at least (each
// tensor they touch read or written once; a tensor updated in place counts
// twice), so bytes / ms is the bandwidth the op achieved and flops / ms its
// arithmetic rate; 0 where the op does not say.
struct OpTiming {
  std::string op;
  double ms = 0.0;
  int64_t calls = 0;
  double bytes = 0.0;
  double flops = 0.0;
  // For the ops that name their shape (the matmuls: "N x C -> OC" in the
  // forward's terms), the same figures per shape, the slowest first; op is
  // the shape there.
  std::vector<OpTiming> shapes;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  // The float types this backend can train in.
  virtual bool SupportsDType(DType dtype) const = 0;
  // Which kernels run the heavy ops for this storage type and attention head
  // size, for start-up headers (e.g. "matmuls: cublaslt, attention:
  // tensor-core"); empty where there is no choice.
  virtual std::string KernelSummary(DType dtype, int head_size) const {
    (void)dtype;
    (void)head_size;
    return "";
  }

  // Kernel versions chosen by timing during the work run so far (e.g. the
  // attention forward and backward versions), for the log; empty where none.
  virtual std::string TunedKernels() const { return ""; }

  // What opening the backend's libraries cost (the CUDA backend's cuBLASLt,
  // opened beside start-up), for the log after the first step; empty where
  // nothing was opened.
  virtual std::string LibraryNote() const { return ""; }

  // ---- Memory: zero-filled allocations, host <-> backend copies. ----
  // The memory Alloc draws on, for planning a run before allocating it: the
  // GPU's free and total bytes, or the host's (MemAvailable and MemTotal of
  // /proc/meminfo) for the CPU; nullopt where unknown.
  struct MemoryInfo {
    int64_t free_bytes = 0, total_bytes = 0;
    std::string device;  // e.g. "GPU 0 (NVIDIA H100 80GB HBM3)", "the host"
  };
  virtual std::optional<MemoryInfo> DeviceMemory() const {
    return std::nullopt;
  }
  virtual Tensor Alloc(DType dtype, int64_t numel) = 0;
  virtual void Free(Tensor t) = 0;
  virtual void Upload(Tensor dst, const void* host_src) = 0;
  virtual void Download(void* host_dst, Tensor src) = 0;
  virtual void Zero(Tensor t) = 0;
  virtual void Copy(Tensor dst, Tensor src) = 0;
  // Copies src to host_dst once the work queued before this call has run; the
  // values are there after the next WaitQueuedDownloads(). For small reads (a
  // step's loss and norm) that should not wait for the work queued after them.
  // The CPU copies at once.
  virtual void QueueDownload(void* host_dst, Tensor src) {
    Download(host_dst, src);
  }
  virtual void WaitQueuedDownloads() {}
  // Step timing on the device: MarkStepEnd(step) marks the end of the work
  // queued for `step` so far; once a queued download after it has been waited
  // for, DeviceStepMs(step) is the device time between the marks of step - 1
  // and step, in ms, or -1 where there are no such marks (the CPU; a mark
  // older than the last 4). An asynchronous backend's host clock sees only
  // when the host got past each step, which jitters around the device's pace.
  virtual void MarkStepEnd(int64_t step) {}
  virtual double DeviceStepMs(int64_t step) { return -1.0; }
  // Whether ops return before their work is done (CUDA) or run as they are
  // called (CPU).
  virtual bool asynchronous() const { return false; }
  // Waits for all queued work (a no-op on the CPU).
  virtual void Synchronize() = 0;
  // Per-op timing for benchmarks: while enabled, each op is timed (CUDA events
  // on the GPU); TakeOpTimings returns the sums since the last call, slowest
  // first, and waits for the queued work. Backends without it return nothing.
  virtual void EnableOpTiming(bool on) {}
  // The CUDA stream the backend queues work on (device collectives order
  // themselves after it); null on the CPU.
  virtual CUstream_st* cuda_stream() const { return nullptr; }
  virtual std::vector<OpTiming> TakeOpTimings() { return {}; }
  // Host time inside op calls, for a first step's extra time: while on, each
  // op's call is timed on the host (queuing its work: launches, library
  // set-up, kernels loaded on first use; not the device's time), and
  // TakeHostCallTimes returns the sums since the last call, slowest first
  // (ms: host milliseconds). Backends whose ops run as they are called
  // (the CPU) keep nothing.
  virtual void TimeHostCalls(bool on) {}
  virtual std::vector<OpTiming> TakeHostCallTimes() { return {}; }

  // ---- Recorded op sequences (CUDA graphs): ops queued between BeginGraph
  // and EndGraph are recorded instead of run, and ReplayGraph runs them again
  // with one launch. Recorded ops must not allocate, copy from the host or
  // wait; values that change between replays (a decode position) live in
  // backend memory (an AdamW call's rate: AdamWArgs::step_values). Updates
  // beside queued while recording are recorded with the ops that wait for
  // them, and the graph ends once they are done. Backends without graphs (the
  // CPU) say so and the caller runs the ops directly. ----
  virtual bool SupportsGraphs() const { return false; }
  virtual void BeginGraph() { GPT2_CHECK_MSG(false, name(), " has no graphs"); }
  // Returns the graph's handle.
  virtual int EndGraph() { return -1; }
  virtual void ReplayGraph(int graph) {}
  // For graphs of training steps: EncoderBackward groups the positions by
  // token on the host and uploads the grouping at each call, which a
  // recording would freeze. This does it now, for the next step's tokens
  // (host memory, (B, T); outside a recording); EncoderBackward calls made
  // while recording read the last grouping staged here, on the device. C: the
  // model's channels (the grouping holds room for partial sums).
  virtual void StageEncoderBackward(const int32_t* host_tokens, int B, int T,
                                    int C) {}

  // ---- Ops: each checks its tensors' sizes against the shapes here, once for
  // every backend, then runs the backend's implementation (src/ops/<op>.h has
  // the shapes; Cast and the CUDA-only dtype rules are checked by the
  // backends). ----
  void EncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int B,
                      int T, int C) {
    CheckSize(out, int64_t{B} * T * C, "encoder out");
    CheckSize(tokens, int64_t{B} * T, "encoder tokens");
    // wte: only the rows the tokens index (an update of the other rows,
    // AdamWArgs::row_marks, need not be waited for).
    AwaitUpdatesTouching({out}, {tokens, wpe}, /*gathered=*/{wte});
    RunEncoderForward(out, tokens, wte, wpe, B, T, C);
  }
  // dwte always accumulates (GPT-2's tied lm_head writes it first); dwpe as
  // `dwpe_grads` says, its rows from T on zero when overwritten.
  void EncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens,
                       const int32_t* host_tokens, int B, int T, int C,
                       ParamGrads dwpe_grads = ParamGrads::kAccumulate) {
    CheckSize(dout, int64_t{B} * T * C, "encoder dout");
    CheckSize(tokens, int64_t{B} * T, "encoder tokens");
    GPT2_CHECK_MSG(dwpe.numel % C == 0 && dwpe.numel >= int64_t{T} * C,
                   "encoder dwpe has ", dwpe.numel, " elements, not a multiple",
                   " of C=", C, " holding T=", T, " rows");
    AwaitUpdatesTouching({dwte, dwpe}, {dout, tokens});
    RunEncoderBackward(dwte, dwpe, dout, tokens, host_tokens, B, T, C,
                       dwpe_grads);
  }
  void LayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                        Tensor weight, Tensor bias, int64_t N, int C) {
    CheckSize(out, N * C, "layernorm out");
    CheckSize(inp, N * C, "layernorm inp");
    CheckSize(mean, N, "layernorm mean");
    CheckSize(rstd, N, "layernorm rstd");
    CheckSize(weight, C, "layernorm weight");
    CheckSize(bias, C, "layernorm bias");
    AwaitUpdatesTouching({out, mean, rstd}, {inp, weight, bias});
    RunLayerNormForward(out, mean, rstd, inp, weight, bias, N, C);
  }
  // dinp accumulates; dweight and dbias as `dparams` says.
  void LayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                         Tensor inp, Tensor weight, Tensor mean, Tensor rstd,
                         int64_t N, int C,
                         ParamGrads dparams = ParamGrads::kAccumulate) {
    CheckSize(dinp, N * C, "layernorm dinp");
    CheckSize(dout, N * C, "layernorm dout");
    CheckSize(inp, N * C, "layernorm inp");
    CheckSize(dweight, C, "layernorm dweight");
    CheckSize(dbias, C, "layernorm dbias");
    CheckSize(mean, N, "layernorm mean");
    AwaitUpdatesTouching({dinp, dweight, dbias},
                         {dout, inp, weight, mean, rstd});
    RunLayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N,
                         C, dparams);
  }
  void MatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                     int64_t N, int C, int OC) {
    CheckSize(out, N * OC, "matmul out");
    CheckSize(inp, N * C, "matmul inp");
    CheckSize(weight, int64_t{OC} * C, "matmul weight");
    if (bias.data != nullptr) CheckSize(bias, OC, "matmul bias");
    AwaitUpdatesTouching({out}, {inp, weight, bias});
    RunMatmulForward(out, inp, weight, bias, N, C, OC);
  }
  // Where a backend computes weight (and bias) gradients beside the input
  // gradients (the CUDA backend's second stream, unless GPT2_WGRAD_BESIDE=0),
  // the ops after this call wait for every one queued so far but the last
  // `keep_last` (those of the latest MatmulBackward[Gelu] calls); elsewhere it
  // does nothing. MatmulBackward[Gelu] may return before its dweight / dbias
  // are written and while it still reads its dout and inp: call this before
  // an op that overwrites one of those, reads a gradient, or hands it on.
  // Free, Upload, Download, QueueDownload, Zero, Copy and Synchronize join
  // them all themselves.
  virtual void JoinWeightGradients(int keep_last) {}
  // Parameter updates beside the next step (the CUDA backend with
  // GPT2_UPDATE_BESIDE=1): the AdamW calls between BeginUpdatesBeside and
  // EndUpdatesBeside queue on a second stream, one after another, after all
  // work queued so far (and so do Zero calls there: the gradients once the
  // updates have read them); each claims the memory it writes (weights,
  // masters, moments: its runs' elements only) and reads (gradients, the norm).
  // Every later op, and Upload, Download, QueueDownload, Zero and Copy, first
  // waits for the newest update whose claims its tensors overlap (a write
  // against any claim, a read against a written one); Free, Synchronize and the
  // next BeginUpdatesBeside wait for all. So an optimizer that updates the
  // weights in the order the forward reads them (ForwardUpdateGroups) lets the
  // next forward start once the embeddings are updated, each layer waiting for
  // its own update only. A call with row marks updating the rows a batch does
  // not gather (AdamWArgs::row_marks, !marked_rows) is not waited for by that
  // batch's gather of its rows (the encoder's of wte), only by other ops.
  // Nothing else may touch the claimed memory meanwhile (collectives on
  // cuda_stream() do not wait: no updates beside with them). Where
  // UpdatesBeside() is false the calls run in place.
  virtual bool UpdatesBeside() const { return false; }
  virtual void BeginUpdatesBeside() {}
  virtual void EndUpdatesBeside() {}
  // accumulate_dinp = false overwrites dinp instead of adding to it (no
  // zeroing pass first); dweight and dbias as `dparams` says.
  void MatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                      Tensor inp, Tensor weight, int64_t N, int C, int OC,
                      bool accumulate_dinp = true,
                      ParamGrads dparams = ParamGrads::kAccumulate) {
    CheckSize(dout, N * OC, "matmul dout");
    CheckSize(inp, N * C, "matmul inp");
    CheckSize(dweight, int64_t{OC} * C, "matmul dweight");
    if (dinp.data != nullptr) CheckSize(dinp, N * C, "matmul dinp");
    if (dbias.data != nullptr) CheckSize(dbias, OC, "matmul dbias");
    AwaitUpdatesTouching({dinp, dweight, dbias}, {dout, inp, weight});
    RunMatmulBackward(dinp, dweight, dbias, dout, inp, weight, N, C, OC,
                      accumulate_dinp, dparams);
  }
  // Fused forms of the ops above, for the MLP and the residual stream. Each
  // means exactly its unfused sequence (the defaults below run that
  // sequence; the CPU reference is this); a backend overrides them where it
  // saves passes over memory.
  //
  // pre (N,OC) = inp @ weight^T + bias; out = gelu(pre).
  void MatmulGeluForward(Tensor pre, Tensor out, Tensor inp, Tensor weight,
                         Tensor bias, int64_t N, int C, int OC) {
    CheckSize(pre, N * OC, "matmul-gelu pre");
    CheckSize(out, N * OC, "matmul-gelu out");
    CheckSize(inp, N * C, "matmul-gelu inp");
    CheckSize(weight, int64_t{OC} * C, "matmul-gelu weight");
    CheckSize(bias, OC, "matmul-gelu bias");
    AwaitUpdatesTouching({pre, out}, {inp, weight, bias});
    RunMatmulGeluForward(pre, out, inp, weight, bias, N, C, OC);
  }
  // The backward of out = gelu(pre) @ weight^T + bias, with inp = gelu(pre):
  // dpre (N,C) = (dout @ weight) * gelu'(pre), overwritten; dweight (+)=
  // dout^T @ inp; dbias (+)= column sums of dout (as `dparams` says). scratch
  // (N,C) is working memory for backends that do not fuse the GELU into the
  // matmul.
  void MatmulBackwardGelu(Tensor dpre, Tensor dweight, Tensor dbias,
                          Tensor dout, Tensor inp, Tensor weight, Tensor pre,
                          Tensor scratch, int64_t N, int C, int OC,
                          ParamGrads dparams = ParamGrads::kAccumulate) {
    CheckSize(dpre, N * C, "matmul-gelu dpre");
    CheckSize(pre, N * C, "matmul-gelu pre");
    CheckSize(scratch, N * C, "matmul-gelu scratch");
    CheckSize(dout, N * OC, "matmul-gelu dout");
    CheckSize(inp, N * C, "matmul-gelu inp");
    CheckSize(dweight, int64_t{OC} * C, "matmul-gelu dweight");
    CheckSize(dbias, OC, "matmul-gelu dbias");
    AwaitUpdatesTouching({dpre, dweight, dbias, scratch},
                         {dout, inp, weight, pre});
    RunMatmulBackwardGelu(dpre, dweight, dbias, dout, inp, weight, pre, scratch,
                          N, C, OC, dparams);
  }
  // residual_out = a + b; out, mean, rstd = layernorm(residual_out).
  void ResidualLayerNormForward(Tensor residual_out, Tensor out, Tensor mean,
                                Tensor rstd, Tensor a, Tensor b, Tensor weight,
                                Tensor bias, int64_t N, int C) {
    CheckSize(residual_out, N * C, "residual-layernorm residual_out");
    CheckSize(a, N * C, "residual-layernorm a");
    CheckSize(b, N * C, "residual-layernorm b");
    CheckSize(out, N * C, "residual-layernorm out");
    CheckSize(mean, N, "residual-layernorm mean");
    CheckSize(rstd, N, "residual-layernorm rstd");
    CheckSize(weight, C, "residual-layernorm weight");
    CheckSize(bias, C, "residual-layernorm bias");
    AwaitUpdatesTouching({residual_out, out, mean, rstd}, {a, b, weight, bias});
    RunResidualLayerNormForward(residual_out, out, mean, rstd, a, b, weight,
                                bias, N, C);
  }
  // Decoding's fusion of a residual add, the LayerNorm after it and the
  // matmul reading it: residual_out = a + b, then out = LayerNorm(residual_out;
  // ln_w, ln_b) weight^T + bias; with gelu_out, out is the pre-activation and
  // gelu_out its GELU (as MatmulGeluForward). ln (N, C), mean and rstd (N) are
  // scratch for backends that run the steps one by one; their contents
  // afterwards are unspecified.
  void ResidualLayerNormMatmul(Tensor residual_out, Tensor out, Tensor gelu_out,
                               Tensor ln, Tensor mean, Tensor rstd, Tensor a,
                               Tensor b, Tensor ln_w, Tensor ln_b,
                               Tensor weight, Tensor bias, int64_t N, int C,
                               int OC) {
    CheckSize(residual_out, N * C, "residual_ln_matmul residual_out");
    CheckSize(a, N * C, "residual_ln_matmul a");
    CheckSize(b, N * C, "residual_ln_matmul b");
    CheckSize(ln, N * C, "residual_ln_matmul ln");
    CheckSize(mean, N, "residual_ln_matmul mean");
    CheckSize(rstd, N, "residual_ln_matmul rstd");
    CheckSize(ln_w, C, "residual_ln_matmul ln_w");
    CheckSize(ln_b, C, "residual_ln_matmul ln_b");
    CheckSize(out, N * OC, "residual_ln_matmul out");
    if (gelu_out.data != nullptr)
      CheckSize(gelu_out, N * OC, "residual_ln_matmul gelu_out");
    CheckSize(weight, int64_t{OC} * C, "residual_ln_matmul weight");
    if (bias.data != nullptr) CheckSize(bias, OC, "residual_ln_matmul bias");
    AwaitUpdatesTouching({residual_out, out, gelu_out, ln, mean, rstd},
                         {a, b, ln_w, ln_b, weight, bias});
    RunResidualLayerNormMatmul(residual_out, out, gelu_out, ln, mean, rstd, a,
                               b, ln_w, ln_b, weight, bias, N, C, OC);
  }
  void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                        int NH) {
    CheckSize(qkv, int64_t{B} * T * 3 * C, "attention qkv");
    CheckSize(out, int64_t{B} * T * C, "attention out");
    CheckSize(lse, int64_t{B} * NH * T, "attention lse");
    AwaitUpdatesTouching({out, lse}, {qkv});
    RunAttentionForward(out, lse, qkv, B, T, C, NH);
  }
  void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                         Tensor lse, int B, int T, int C, int NH) {
    CheckSize(dqkv, int64_t{B} * T * 3 * C, "attention dqkv");
    CheckSize(qkv, int64_t{B} * T * 3 * C, "attention qkv");
    CheckSize(dout, int64_t{B} * T * C, "attention dout");
    CheckSize(out, int64_t{B} * T * C, "attention out");
    CheckSize(lse, int64_t{B} * NH * T, "attention lse");
    AwaitUpdatesTouching({dqkv}, {dout, qkv, out, lse});
    RunAttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH);
  }
  // Decoding (see src/ops/attention.h): caches (B, max_T, C), qkv (B, 3C), out
  // (B, C). The position is an i32 tensor of one element in backend memory,
  // read when the op runs, so a recorded graph serves every position; the
  // caller keeps it in [0, max_T).
  void AttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache, Tensor qkv,
                       int B, int max_T, Tensor pos, int C, int NH) {
    CheckSize(out, int64_t{B} * C, "attention decode out");
    CheckSize(qkv, int64_t{B} * 3 * C, "attention decode qkv");
    CheckSize(k_cache, int64_t{B} * max_T * C, "attention decode k_cache");
    CheckSize(v_cache, int64_t{B} * max_T * C, "attention decode v_cache");
    CheckSize(pos, 1, "attention decode position");
    GPT2_CHECK_MSG(pos.dtype == DType::kI32, "the decode position is ",
                   DTypeName(pos.dtype), ", not i32");
    AwaitUpdatesTouching({out, k_cache, v_cache}, {qkv, pos});
    RunAttentionDecode(out, k_cache, v_cache, qkv, B, max_T, pos, C, NH);
  }
  void GeluForward(Tensor out, Tensor inp) {
    CheckSize(out, inp.numel, "gelu out");
    AwaitUpdatesTouching({out}, {inp});
    RunGeluForward(out, inp);
  }
  void GeluBackward(Tensor dinp, Tensor inp, Tensor dout) {
    CheckSize(dinp, inp.numel, "gelu dinp");
    CheckSize(dout, inp.numel, "gelu dout");
    AwaitUpdatesTouching({dinp}, {inp, dout});
    RunGeluBackward(dinp, inp, dout);
  }
  void ResidualForward(Tensor out, Tensor a, Tensor b) {
    CheckSize(a, out.numel, "residual a");
    CheckSize(b, out.numel, "residual b");
    AwaitUpdatesTouching({out}, {a, b});
    RunResidualForward(out, a, b);
  }
  void AddInPlace(Tensor dst, Tensor src) {
    CheckSize(src, dst.numel, "add src");
    AwaitUpdatesTouching({dst}, {src});
    RunAddInPlace(dst, src);
  }
  void ClassifierForward(Tensor logits, Tensor losses, Tensor targets,
                         int64_t N, int V, int Vp, double dloss,
                         bool write_grad) {
    CheckSize(logits, N * Vp, "classifier logits");
    CheckSize(losses, N, "classifier losses");
    CheckSize(targets, N, "classifier targets");
    GPT2_CHECK_MSG(V <= Vp, "vocab ", V, " exceeds its padded size ", Vp);
    AwaitUpdatesTouching({logits, losses}, {targets});
    RunClassifierForward(logits, losses, targets, N, V, Vp, dloss, write_grad);
  }
  void AccumulateSum(Tensor acc, Tensor x, double scale) {
    CheckSize(acc, 1, "sum accumulator");
    AwaitUpdatesTouching({acc}, {x});
    RunAccumulateSum(acc, x, scale);
  }
  void SumSquares(Tensor out, Tensor x) {
    CheckSize(out, 1, "sum-of-squares out");
    AwaitUpdatesTouching({out}, {x});
    RunSumSquares(out, x);
  }
  void AdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
             Tensor norm_squared, const AdamWArgs& args) {
    CheckSize(m, param.numel, "adamw m");
    CheckSize(v, param.numel, "adamw v");
    CheckSize(grad, param.numel, "adamw grad");
    CheckSize(norm_squared, 1, "adamw norm_squared");
    if (master.data != nullptr) CheckSize(master, param.numel, "adamw master");
    if (args.step_values.data != nullptr) {
      GPT2_CHECK_MSG(args.step_values.dtype == DType::kI32 &&
                         args.step_values.numel == kAdamWStepValuesI32,
                     "adamw step values: an AdamWStepValues (6 x i32)");
    }
    if (args.row_marks.data != nullptr) AdamWRows(args, param.numel);  // checks
    RunAdamW(param, master, m, v, grad, norm_squared, args);
  }
  // marks (i32, one per row of a table) = the stamp of args' step
  // (AdamWRowStamp; from args.step_values where set) at each row that tokens
  // (i32) index: for AdamW calls with row marks. Beside the next forward where
  // updates go there (an update of its own).
  void MarkAdamWRows(Tensor marks, Tensor tokens, const AdamWArgs& args) {
    GPT2_CHECK_MSG(marks.dtype == DType::kI32 && tokens.dtype == DType::kI32,
                   "adamw row marks and tokens: i32");
    RunMarkAdamWRows(marks, tokens, args);
  }
  void Cast(Tensor dst, Tensor src) {
    CheckSize(src, dst.numel, "cast src");
    AwaitUpdatesTouching({dst}, {src});
    RunCast(dst, src);
  }
  // tokens (rows, i32) = one top-k / top-p draw per row of logits (rows, Vp)
  // over ids below V (src/ops/sample.h), row b's uniform from its seed (seeds:
  // two i32 words a row) and counter (one i32 in backend memory, so that a
  // recorded graph can replay it).
  void SampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                  int rows, int V, int Vp, int top_k, double temperature,
                  double top_p) {
    CheckSize(tokens, rows, "sample tokens");
    CheckSize(logits, int64_t{rows} * Vp, "sample logits");
    CheckSize(seeds, 2 * int64_t{rows}, "sample seeds");
    CheckSize(counter, 1, "sample counter");
    GPT2_CHECK_MSG(V >= 1 && V <= Vp && top_k >= 1 && temperature > 0.0 &&
                       top_p > 0.0 && top_p <= 1.0,
                   "sampling needs 1 <= V <= Vp, top_k >= 1, temperature > "
                   "0, 0 < top_p <= 1");
    AwaitUpdatesTouching({tokens, counter}, {logits, seeds});
    RunSampleTopK(tokens, logits, seeds, counter, rows, V, Vp, top_k,
                  temperature, top_p);
  }

 protected:
  // Before an op: waits for the updates beside (BeginUpdatesBeside) that
  // claim memory of its tensors; writes: what the op writes, reads: what it
  // only reads. Backends without updates beside do nothing.
  // gathered: read only at the rows of the batch the op's tokens hold (the
  // encoder's wte), which updates of the other rows leave alone.
  virtual void AwaitUpdatesTouching(
      std::initializer_list<Tensor> writes, std::initializer_list<Tensor> reads,
      std::initializer_list<Tensor> gathered = {}) {}

  // A tensor's element count against what an op needs; a mismatch is a
  // programming error and names the tensor.
  static void CheckSize(const Tensor& t, int64_t numel, const char* what) {
    GPT2_CHECK_MSG(t.numel == numel, what, " has ", t.numel,
                   " elements, op needs ", numel);
  }

  // The backends' implementations, called after the checks above.
  virtual void RunEncoderForward(Tensor out, Tensor tokens, Tensor wte,
                                 Tensor wpe, int B, int T, int C) = 0;
  virtual void RunEncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout,
                                  Tensor tokens, const int32_t* host_tokens,
                                  int B, int T, int C,
                                  ParamGrads dwpe_grads) = 0;
  virtual void RunLayerNormForward(Tensor out, Tensor mean, Tensor rstd,
                                   Tensor inp, Tensor weight, Tensor bias,
                                   int64_t N, int C) = 0;
  virtual void RunLayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                                    Tensor dout, Tensor inp, Tensor weight,
                                    Tensor mean, Tensor rstd, int64_t N, int C,
                                    ParamGrads dparams) = 0;
  virtual void RunMatmulForward(Tensor out, Tensor inp, Tensor weight,
                                Tensor bias, int64_t N, int C, int OC) = 0;
  virtual void RunMatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                                 Tensor dout, Tensor inp, Tensor weight,
                                 int64_t N, int C, int OC, bool accumulate_dinp,
                                 ParamGrads dparams) = 0;
  // The fused ops' defaults: their unfused sequences.
  virtual void RunMatmulGeluForward(Tensor pre, Tensor out, Tensor inp,
                                    Tensor weight, Tensor bias, int64_t N,
                                    int C, int OC) {
    RunMatmulForward(pre, inp, weight, bias, N, C, OC);
    RunGeluForward(out, pre);
  }
  virtual void RunMatmulBackwardGelu(Tensor dpre, Tensor dweight, Tensor dbias,
                                     Tensor dout, Tensor inp, Tensor weight,
                                     Tensor pre, Tensor scratch, int64_t N,
                                     int C, int OC, ParamGrads dparams) {
    RunMatmulBackward(scratch, dweight, dbias, dout, inp, weight, N, C, OC,
                      /*accumulate_dinp=*/false, dparams);
    Zero(dpre);
    RunGeluBackward(dpre, pre, scratch);
  }
  virtual void RunResidualLayerNormForward(Tensor residual_out, Tensor out,
                                           Tensor mean, Tensor rstd, Tensor a,
                                           Tensor b, Tensor weight, Tensor bias,
                                           int64_t N, int C) {
    RunResidualForward(residual_out, a, b);
    RunLayerNormForward(out, mean, rstd, residual_out, weight, bias, N, C);
  }
  virtual void RunResidualLayerNormMatmul(Tensor residual_out, Tensor out,
                                          Tensor gelu_out, Tensor ln,
                                          Tensor mean, Tensor rstd, Tensor a,
                                          Tensor b, Tensor ln_w, Tensor ln_b,
                                          Tensor weight, Tensor bias, int64_t N,
                                          int C, int OC) {
    RunResidualLayerNormForward(residual_out, ln, mean, rstd, a, b, ln_w, ln_b,
                                N, C);
    if (gelu_out.data != nullptr) {
      RunMatmulGeluForward(out, gelu_out, ln, weight, bias, N, C, OC);
    } else {
      RunMatmulForward(out, ln, weight, bias, N, C, OC);
    }
  }
  virtual void RunAttentionForward(Tensor out, Tensor lse, Tensor qkv, int B,
                                   int T, int C, int NH) = 0;
  virtual void RunAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                                    Tensor out, Tensor lse, int B, int T, int C,
                                    int NH) = 0;
  virtual void RunAttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache,
                                  Tensor qkv, int B, int max_T, Tensor pos,
                                  int C, int NH) = 0;
  virtual void RunGeluForward(Tensor out, Tensor inp) = 0;
  virtual void RunGeluBackward(Tensor dinp, Tensor inp, Tensor dout) = 0;
  virtual void RunResidualForward(Tensor out, Tensor a, Tensor b) = 0;
  virtual void RunAddInPlace(Tensor dst, Tensor src) = 0;
  virtual void RunClassifierForward(Tensor logits, Tensor losses,
                                    Tensor targets, int64_t N, int V, int Vp,
                                    double dloss, bool write_grad) = 0;
  virtual void RunAccumulateSum(Tensor acc, Tensor x, double scale) = 0;
  virtual void RunSumSquares(Tensor out, Tensor x) = 0;
  virtual void RunAdamW(Tensor param, Tensor master, Tensor m, Tensor v,
                        Tensor grad, Tensor norm_squared,
                        const AdamWArgs& args) = 0;
  virtual void RunMarkAdamWRows(Tensor marks, Tensor tokens,
                                const AdamWArgs& args) = 0;
  virtual void RunCast(Tensor dst, Tensor src) = 0;
  virtual void RunSampleTopK(Tensor tokens, Tensor logits, Tensor seeds,
                             Tensor counter, int rows, int V, int Vp, int top_k,
                             double temperature, double top_p) = 0;
};

std::unique_ptr<Backend> MakeCpuBackend();

// "<what>, host time inside ops (...): op 120.3 ms (37 calls), ..." from
// TakeHostCallTimes' sums (the slowest first): the five slowest, the rest
// together, and the total.
std::string FormatHostCallTimes(const std::string& what,
                                const std::vector<OpTiming>& calls);

}  // namespace gpt2

#endif  // GPT2_BACKEND_BACKEND_H_
