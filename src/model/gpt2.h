// GPT-2 forward and backward, written once over the Backend interface.
// The model owns its parameters, gradients and activations on the backend,
// sized at construction for at most (max_batch, max_seq) tokens; nothing is
// allocated per step.
#ifndef GPT2_MODEL_GPT2_H_
#define GPT2_MODEL_GPT2_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "src/backend/backend.h"
#include "src/model/params.h"

namespace gpt2 {

class Gpt2Model {
 public:
  // The flat parameter and gradient buffers hold `buffer_elems` elements (at
  // least the parameter count; ZeRO pads them to equal shards), the tail zero.
  // recompute_gelu: keep no per-layer GELU outputs (L x B x T x 4C) and
  // recompute each layer's in the backward pass, trading one elementwise pass
  // for the memory. recompute_layernorm: likewise for the two LayerNorm
  // outputs of each layer (2 x L x B x T x C), recomputed from the kept
  // residual stream; the gradients are bitwise the same either way.
  // residual_fp32 (bf16 models): the residual stream and its gradient in f32.
  Gpt2Model(Backend* backend, const ModelShape& shape, DType dtype,
            int max_batch, int max_seq, int64_t buffer_elems = 0,
            bool recompute_gelu = false, bool recompute_layernorm = false,
            bool residual_fp32 = false);
  ~Gpt2Model();
  Gpt2Model(const Gpt2Model&) = delete;
  Gpt2Model& operator=(const Gpt2Model&) = delete;

  const ModelShape& shape() const { return shape_; }
  const std::vector<ParamSpec>& param_list() const { return param_list_; }
  // The LM head's products (forward and backward) run on row chunks, each
  // operand of each product spanning fewer than 2^31 elements (the logits
  // are rows x Vp: 3.3e9 at B=64, T=1024): a span that reaches 2^31 failed in
  // cuBLASLt 13.6 (NVIDIA/raft#3097), and GEMM kernels often index in 32
  // bits. Equal chunks of whole rows; one product where the span allows.
  // `max_rows` > 0 caps a chunk's rows lower (tests; GPT2_LM_HEAD_ROWS=N).
  // Returns (first row, rows) pairs.
  static std::vector<std::pair<int64_t, int64_t>> LmHeadChunks(
      int64_t rows, int Vp, int64_t max_rows = 0);
  void set_lm_head_rows(int64_t max_rows) { lm_head_rows_ = max_rows; }
  int64_t num_params() const { return num_params_; }
  DType dtype() const { return dtype_; }
  // Of layernorm statistics, attention log-sum-exps and losses: f32 for bf16
  // models.
  DType stats_dtype() const { return StatsDType(dtype_); }
  static DType StatsDType(DType dtype) {
    return dtype == DType::kBF16 ? DType::kF32 : dtype;
  }
  static DType ResidualDType(DType dtype, bool residual_fp32) {
    return residual_fp32 && dtype == DType::kBF16 ? DType::kF32 : dtype;
  }
  // Of the residual stream (f32 with residual_fp32 in a bf16 model, else
  // dtype()).
  DType residual_dtype() const { return residual_dtype_; }
  // Bytes of the activations, backward scratch and token inputs the model
  // allocated; ActivationBytes: the same for a model not made (the
  // constructor's arguments), for planning memory before allocating.
  int64_t activation_bytes() const { return activation_bytes_; }
  static int64_t ActivationBytes(const ModelShape& shape, DType dtype,
                                 int max_batch, int max_seq,
                                 bool recompute_gelu, bool recompute_layernorm,
                                 bool residual_fp32);

  // GPT-2's init from `seed`, computed on the host and uploaded.
  void InitParams(uint64_t seed);
  // The same in two halves, so that the host's draw can run while start-up
  // does other things: DrawParams (on any thread; TotalParams of `dtype`)
  // then UploadDrawn.
  static std::unique_ptr<char[]> DrawParams(const ModelShape& shape,
                                            DType dtype, uint64_t seed);
  void UploadDrawn(const char* bytes);
  void SetParams(const std::vector<double>& host);  // TotalParams values
  std::vector<double> GetParams() const;
  std::vector<double> GetGrads() const;

  // Runs the model on tokens (B,T) (host memory, B <= max_batch, T <= max_seq).
  // With targets (B,T): per-token losses, and when write_grad the logits are
  // replaced by dlogits scaled by `dloss` (the loss gradient per token, e.g.
  // 1/(B*T*accum)), ready for Backward. Without targets only the logits are
  // computed.
  void Forward(const int32_t* tokens, const int32_t* targets, int B, int T,
               double dloss, bool write_grad);
  // Forward in two parts, for recording the ops as a graph (Backend::
  // BeginGraph) and replaying them with new inputs: SetInputs checks the
  // tokens and copies tokens and targets (may be null) to the model's device
  // buffers; QueueForward queues the ops on what is there, with targets when
  // `with_targets`. Forward is SetInputs then QueueForward.
  void SetInputs(const int32_t* tokens, const int32_t* targets, int B, int T);
  void QueueForward(int B, int T, double dloss, bool write_grad,
                    bool with_targets);
  // Accumulates (+=) parameter gradients of the last Forward's loss, or with
  // ParamGrads::kOverwrite writes them over whatever the gradient buffer
  // holds (a step's first micro-step: the same bits as ZeroGrads then
  // accumulating, without that pass over the buffer). When given,
  // grads_done(l) is called as soon as layer l's gradients are final (l = L-1
  // down to 0, work queued on the backend), and grads_done(-1) at the end for
  // the other tensors (wte, wpe, the final LayerNorm): the hook for reducing
  // gradients while the backward goes on.
  void Backward(const std::function<void(int layer)>& grads_done = nullptr,
                ParamGrads grads = ParamGrads::kAccumulate);
  // The parts of the flat gradient buffer that grads_done(layer) announces,
  // as (offset, count) pairs.
  std::vector<std::pair<int64_t, int64_t>> GradRegions(int layer) const;
  void ZeroGrads();

  Tensor params() const { return params_.Slice(0, num_params_); }
  Tensor grads() const { return grads_.Slice(0, num_params_); }
  // The whole buffers, padding included.
  Tensor padded_params() const { return params_; }
  Tensor padded_grads() const { return grads_; }
  Tensor losses() const { return losses_.Slice(0, int64_t{last_B_} * last_T_); }
  // The device copy of SetInputs' tokens for a (B, T) batch: what the
  // encoder gathers wte's rows by.
  Tensor input_tokens(int B, int T) const {
    return tokens_.Slice(0, int64_t{B} * T);
  }
  Tensor logits()
      const;  // (B, T, Vp) of the last Forward (dlogits after training)
  // One parameter (or gradient) tensor, or its layer slice when layer >= 0.
  Tensor Param(int index, int layer = -1) const;
  Tensor Grad(int index, int layer = -1) const;

 private:
  struct LayerActs;  // views into the activations for one layer
  struct ActivationSizes {
    const ModelShape& shape;
    DType dtype, residual;
    int max_batch, max_seq;
    bool recompute_gelu, recompute_layernorm;
  };
  template <typename Visit>
  static void ForEachActivation(const ActivationSizes& sizes, Visit&& visit);
  LayerActs Layer(int l, int B, int T) const;
  Tensor ViewOf(Tensor buffer, int index, int layer) const;

  Backend* backend_;
  ModelShape shape_;
  DType dtype_;
  int max_batch_, max_seq_;
  std::vector<ParamSpec> param_list_;
  int64_t num_params_;
  int64_t activation_bytes_ = 0;
  bool recompute_gelu_ = false;
  bool recompute_layernorm_ = false;
  int64_t lm_head_rows_ = 0;  // 0: as LmHeadChunks decides
  DType residual_dtype_;
  int last_B_ = 0, last_T_ = 0;
  bool have_dlogits_ = false;

  Tensor params_, grads_;
  Tensor tokens_, targets_;           // i32 (maxB, maxT)
  std::vector<int32_t> host_tokens_;  // the last Forward's tokens, (B, T)
  // Activations; per-layer buffers hold L slices of maxB*maxT*X.
  Tensor encoded_, ln1_, ln1_mean_, ln1_rstd_, qkv_, atty_, att_lse_,
      residual2_, ln2_, ln2_mean_, ln2_rstd_, fch_, fch_gelu_, residual3_, lnf_,
      lnf_mean_, lnf_rstd_, logits_, losses_, branch_out_;
  // Backward scratch, reused by every layer. d_residual_cast_: the residual
  // gradient in dtype_ for the matmuls, when the stream is f32 (else empty).
  Tensor d_residual_, d_ln_, d_qkv_, d_atty_, d_fch_, d_fch_gelu_,
      d_residual_cast_;

  // The residual gradient as the matmuls' output gradient: itself, or cast to
  // the activations' type.
  Tensor ResidualGradForMatmul(Tensor d_res);
};

}  // namespace gpt2

#endif  // GPT2_MODEL_GPT2_H_
