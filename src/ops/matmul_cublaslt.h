// Matmuls through cuBLASLt, the GPU build's fast path, with the same contract
// as src/ops/matmul.h (nn.Linear layout, accumulate into gradients).
// Descriptors, layouts and the chosen algorithm are cached per shape; one
// workspace is allocated once. Not built in the emulated build (the emulator
// has no cuBLASLt).
#ifndef GPT2_OPS_MATMUL_CUBLASLT_H_
#define GPT2_OPS_MATMUL_CUBLASLT_H_

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "src/core/tensor.h"
#include "src/ops/matmul_algo_cache.h"

struct CUstream_st;

namespace gpt2::cuda {

class Scratch;

class CublasLtMatmul {
 public:
  // `scratch` holds the bias gradient's partial sums.
  CublasLtMatmul(CUstream_st* stream, Scratch* scratch);
  ~CublasLtMatmul();
  CublasLtMatmul(const CublasLtMatmul&) = delete;
  CublasLtMatmul& operator=(const CublasLtMatmul&) = delete;

  // out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC; may be empty), bias
  // fused as an epilogue.
  void Forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, int64_t N,
               int C, int OC);
  // The same with bias and GELU fused: pre = the biased product, out =
  // gelu(pre) (Backend::MatmulGeluForward). False, having done nothing, where
  // cuBLASLt has no algorithm for the epilogue.
  bool ForwardGelu(Tensor pre, Tensor out, Tensor inp, Tensor weight,
                   Tensor bias, int64_t N, int C, int OC);
  // dinp (N,C) += (or = when !accumulate_dinp) dout @ weight; dweight (OC,C)
  // (+)= dout^T @ inp; dbias (OC) (+)= column sums of dout (our deterministic
  // kernel with GPT2_BIAS_EPILOGUE=0; by default cuBLASLt's BGRADB epilogue
  // of the dweight product, where it has an algorithm), added or written as
  // `dparams` says. dinp / dbias may be empty; an empty dweight leaves the
  // weight and bias gradients out (WeightAndBiasBackward, on another stream's
  // instance, does them).
  void Backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                Tensor inp, Tensor weight, int64_t N, int C, int OC,
                bool accumulate_dinp, ParamGrads dparams);
  // Backward with the GELU gradient fused into dinp's epilogue: dpre =
  // (dout @ weight) * gelu'(pre) (Backend::MatmulBackwardGelu). False, having
  // done nothing, where cuBLASLt has no algorithm for the epilogue. An empty
  // dweight as in Backward.
  bool BackwardGelu(Tensor dpre, Tensor dweight, Tensor dbias, Tensor dout,
                    Tensor inp, Tensor weight, Tensor pre, int64_t N, int C,
                    int OC, ParamGrads dparams);
  // dweight (+)= dout^T @ inp; dbias (may be empty) (+)= column sums of dout.
  void WeightAndBiasBackward(Tensor dweight, Tensor dbias, Tensor dout,
                             Tensor inp, int64_t N, int C, int OC,
                             ParamGrads dparams);
  // With GPT2_MATMUL_AUTOTUNE=1 (plans time cuBLASLt's first 8 algorithms on
  // their first call and keep the fastest): how many shapes were timed, how
  // many changed algorithm, and the time that saved; "" otherwise.
  std::string AutotuneNote() const;

 private:
  struct Plan;  // descriptors + algorithm for one shape and epilogue
  // Column-major D (m,n) = op(A) (m,k) op(B) (k,n) + beta * D, A/B/D as stored.
  using Key =
      std::tuple<int, int64_t, int64_t, int64_t, bool, bool, int, bool, int>;
  // The cached plan for pointers aligned to `alignment` bytes; nullptr (also
  // cached) when cuBLASLt has no algorithm and !required, a fatal error when
  // required.
  Plan* GetPlan(DType dtype, int64_t m, int64_t n, int64_t k, bool trans_a,
                bool trans_b, int epilogue, bool accumulate, int alignment,
                bool required);
  // The matmul with the plan's epilogue; Run makes a failure fatal, RunFused
  // (fused GELU epilogues, never accumulating) reports it and forgets the
  // plan so the caller falls back.
  cublasStatus_t TryRun(Plan* plan, const void* a, const void* b, void* d,
                        const void* bias, const void* aux, bool accumulate);
  void Run(Plan* plan, const void* a, const void* b, void* d, const void* bias,
           const void* aux, bool accumulate);
  bool RunFused(Plan* plan, const void* a, const void* b, void* d,
                const void* bias, const void* aux, bool accumulate = false);
  // Times the plan's candidates on these operands (D saved and restored when
  // accumulating) and keeps the fastest (and writes it to the cache).
  void Autotune(Plan* plan, const void* a, const void* b, void* d,
                bool accumulate);
  // The plan's algorithm from the cache, if it has one that cuBLASLt accepts
  // for the plan within the workspace.
  bool UseCachedAlgo(Plan* plan);
  // The handle, made at the first call.
  cublasLtHandle_t handle();

  CUstream_st* stream_;
  Scratch* scratch_;
  void* handle_ = nullptr;     // cublasLtHandle_t
  void* workspace_ = nullptr;  // device
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::unique_ptr<MatmulAlgoCache> cache_;  // GPT2_MATMUL_ALGO_CACHE
  int tuned_plans_ = 0, changed_plans_ = 0, cached_plans_ = 0;
  // GPT2_BIAS_EPILOGUE not 0 when this was made (read once, off the step's
  // path).
  bool bias_epilogue_ = true;
  double saved_ms_ = 0.0;
  double timing_s_ = 0.0;  // host seconds searching and timing candidates
};

}  // namespace gpt2::cuda

#endif  // GPT2_OPS_MATMUL_CUBLASLT_H_
