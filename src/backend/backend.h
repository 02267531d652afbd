// The backend interface: memory and every op the model runs, on flat Tensor
// views. The CPU backend (cpu_backend.cc) is the reference; the CUDA backend
// implements the same calls with its own kernels. Shapes are explicit
// arguments; each op's header in src/ops documents them. Gradients of
// parameters are accumulated (+=), activations written (=), except where an
// op's header says otherwise.
#ifndef GPT2_BACKEND_BACKEND_H_
#define GPT2_BACKEND_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/core/tensor.h"
#include "src/ops/adamw.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2 {

// GPU time spent in one kind of op, summed over calls (see EnableOpTiming).
struct OpTiming {
  std::string op;
  double ms = 0.0;
  int64_t calls = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  // The float types this backend can train in.
  virtual bool SupportsDType(DType dtype) const = 0;

  // ---- Memory: zero-filled allocations, host <-> backend copies. ----
  virtual Tensor Alloc(DType dtype, int64_t numel) = 0;
  virtual void Free(Tensor t) = 0;
  virtual void Upload(Tensor dst, const void* host_src) = 0;
  virtual void Download(void* host_dst, Tensor src) = 0;
  virtual void Zero(Tensor t) = 0;
  virtual void Copy(Tensor dst, Tensor src) = 0;
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

  // dst = src in dst's element type (see src/ops/cast.h for the pairs each
  // backend has).
  virtual void Cast(Tensor dst, Tensor src) = 0;

  // ---- Ops (see src/ops/<op>.h for shapes). ----
  virtual void EncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe,
                              int B, int T, int C) = 0;
  // host_tokens: the same (B,T) tokens in host memory, so a backend can plan a
  // deterministic scatter of the wte gradient without reading them back.
  virtual void EncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout,
                               Tensor tokens, const int32_t* host_tokens, int B,
                               int T, int C) = 0;
  virtual void LayerNormForward(Tensor out, Tensor mean, Tensor rstd,
                                Tensor inp, Tensor weight, Tensor bias,
                                int64_t N, int C) = 0;
  virtual void LayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                                 Tensor dout, Tensor inp, Tensor weight,
                                 Tensor mean, Tensor rstd, int64_t N,
                                 int C) = 0;
  // bias / dbias / dinp may be empty tensors (data == nullptr).
  virtual void MatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                             int64_t N, int C, int OC) = 0;
  virtual void MatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                              Tensor dout, Tensor inp, Tensor weight, int64_t N,
                              int C, int OC) = 0;
  virtual void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B,
                                int T, int C, int NH) = 0;
  virtual void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                                 Tensor out, Tensor lse, int B, int T, int C,
                                 int NH) = 0;
  virtual void GeluForward(Tensor out, Tensor inp) = 0;
  virtual void GeluBackward(Tensor dinp, Tensor inp, Tensor dout) = 0;
  virtual void ResidualForward(Tensor out, Tensor a, Tensor b) = 0;
  virtual void AddInPlace(Tensor dst, Tensor src) = 0;
  virtual void ClassifierForward(Tensor logits, Tensor losses, Tensor targets,
                                 int64_t N, int V, int Vp, double dloss,
                                 bool write_grad) = 0;
  virtual void AccumulateSum(Tensor acc, Tensor x, double scale) = 0;
  virtual void SumSquares(Tensor out, Tensor x) = 0;
  // master: fp32 master weights when param is bf16 (updated, then rounded into
  // param); an empty tensor when param is itself the master. m, v match the
  // master.
  virtual void AdamW(Tensor param, Tensor master, Tensor m, Tensor v,
                     Tensor grad, Tensor norm_squared,
                     const AdamWArgs& args) = 0;
};

std::unique_ptr<Backend> MakeCpuBackend();

}  // namespace gpt2

#endif  // GPT2_BACKEND_BACKEND_H_
