// The CPU backend: host memory and the reference ops of src/ops/*_cpu.cc, in
// f32 or f64.
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "src/backend/backend.h"
#include "src/core/host_memory.h"
#include "src/ops/attention.h"
#include "src/ops/cast.h"
#include "src/ops/classifier.h"
#include "src/ops/encoder.h"
#include "src/ops/gelu.h"
#include "src/ops/global_norm.h"
#include "src/ops/layernorm.h"
#include "src/ops/matmul.h"
#include "src/ops/residual.h"
#include "src/ops/sample.h"

namespace gpt2 {
namespace {

// Optional tensors (bias, dinp) arrive as empty views.
template <typename T>
T* OrNull(const Tensor& t) {
  return t.data == nullptr ? nullptr : t.as<T>();
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool SupportsDType(DType dtype) const override {
    return dtype == DType::kF32 || dtype == DType::kF64;
  }

  Tensor Alloc(DType dtype, int64_t numel) override {
    const size_t bytes = static_cast<size_t>(numel) * DTypeSize(dtype);
    // 64-byte alignment for the vector kernels; calloc-like zero fill.
    void* data = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    GPT2_CHECK_MSG(data != nullptr, "out of host memory allocating ", bytes,
                   " bytes");
    std::memset(data, 0, bytes);
    return Tensor{data, dtype, numel};
  }
  void Free(Tensor t) override { std::free(t.data); }  // free(nullptr) is fine
  std::optional<MemoryInfo> DeviceMemory() const override {
    const std::optional<HostMemory> host = ReadHostMemory();
    if (!host) return std::nullopt;
    return MemoryInfo{host->available_bytes, host->total_bytes, "the host"};
  }
  void Upload(Tensor dst, const void* host_src) override {
    std::memcpy(dst.data, host_src, dst.bytes());
  }
  void Download(void* host_dst, Tensor src) override {
    std::memcpy(host_dst, src.data, src.bytes());
  }
  void Zero(Tensor t) override { std::memset(t.data, 0, t.bytes()); }
  // The reference's overwrite of parameter gradients: zeros, then the sums
  // added to them (empty tensors skipped).
  void ZeroToOverwrite(ParamGrads dparams,
                       std::initializer_list<Tensor> grads) {
    if (dparams != ParamGrads::kOverwrite) return;
    for (const Tensor& t : grads) {
      if (t.data != nullptr) Zero(t);
    }
  }
  void Copy(Tensor dst, Tensor src) override {
    GPT2_CHECK(dst.bytes() == src.bytes());
    std::memcpy(dst.data, src.data, dst.bytes());
  }
  void Synchronize() override {}
  void RunCast(Tensor dst, Tensor src) override {
    Dispatch(dst.dtype, [&](auto to) {
      using To = decltype(to);
      Dispatch(src.dtype, [&](auto from) {
        using From = decltype(from);
        cpu::Cast<To, From>(dst.as<To>(), src.as<From>(), dst.numel);
      });
    });
  }
  void RunSampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                     int rows, int V, int Vp, int top_k, double temperature,
                     double top_p) override {
    Dispatch(logits.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::SampleTopK<F>(tokens.as<int32_t>(), logits.as<F>(),
                         seeds.as<int32_t>(), *counter.as<int32_t>(), rows, V,
                         Vp, top_k, temperature, top_p);
    });
  }

  void RunEncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe,
                         int B, int T, int C) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::EncoderForward<F>(out.as<F>(), tokens.as<int32_t>(), wte.as<F>(),
                             wpe.as<F>(), B, T, C);
    });
  }
  void RunEncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens,
                          const int32_t* /*host_tokens*/, int B, int T, int C,
                          ParamGrads dwpe_grads) override {
    ZeroToOverwrite(dwpe_grads, {dwpe});
    Dispatch(dout.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::EncoderBackward<F>(dwte.as<F>(), dwpe.as<F>(), dout.as<F>(),
                              tokens.as<int32_t>(), B, T, C);
    });
  }
  void RunLayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                           Tensor weight, Tensor bias, int64_t N,
                           int C) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::LayerNormForward<F>(out.as<F>(), mean.as<F>(), rstd.as<F>(),
                               inp.as<F>(), weight.as<F>(), bias.as<F>(), N, C);
    });
  }
  void RunLayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                            Tensor dout, Tensor inp, Tensor weight, Tensor mean,
                            Tensor rstd, int64_t N, int C,
                            ParamGrads dparams) override {
    ZeroToOverwrite(dparams, {dweight, dbias});
    Dispatch(dout.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::LayerNormBackward<F>(dinp.as<F>(), dweight.as<F>(), dbias.as<F>(),
                                dout.as<F>(), inp.as<F>(), weight.as<F>(),
                                mean.as<F>(), rstd.as<F>(), N, C);
    });
  }
  void RunMatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                        int64_t N, int C, int OC) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::MatmulForward<F>(out.as<F>(), inp.as<F>(), weight.as<F>(),
                            OrNull<F>(bias), N, C, OC);
    });
  }
  void RunMatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                         Tensor inp, Tensor weight, int64_t N, int C, int OC,
                         bool accumulate_dinp, ParamGrads dparams) override {
    if (!accumulate_dinp && dinp.data != nullptr) Zero(dinp);
    ZeroToOverwrite(dparams, {dweight, dbias});
    Dispatch(dout.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::MatmulBackward<F>(OrNull<F>(dinp), dweight.as<F>(), OrNull<F>(dbias),
                             dout.as<F>(), inp.as<F>(), weight.as<F>(), N, C,
                             OC);
    });
  }
  void RunAttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T,
                           int C, int NH) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AttentionForward<F>(out.as<F>(), lse.as<F>(), qkv.as<F>(), B, T, C,
                               NH);
    });
  }
  void RunAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                            Tensor lse, int B, int T, int C, int NH) override {
    Dispatch(dout.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AttentionBackward<F>(dqkv.as<F>(), dout.as<F>(), qkv.as<F>(),
                                out.as<F>(), lse.as<F>(), B, T, C, NH);
    });
  }
  void RunAttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache,
                          Tensor qkv, int B, int max_T, Tensor pos_tensor,
                          int C, int NH) override {
    const int pos = *pos_tensor.as<int32_t>();
    GPT2_CHECK_MSG(pos >= 0 && pos < max_T, "decode position ", pos,
                   " outside the cache (", max_T, ")");
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AttentionDecode<F>(out.as<F>(), k_cache.as<F>(), v_cache.as<F>(),
                              qkv.as<F>(), B, max_T, pos, C, NH);
    });
  }
  void RunGeluForward(Tensor out, Tensor inp) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::GeluForward<F>(out.as<F>(), inp.as<F>(), inp.numel);
    });
  }
  void RunGeluBackward(Tensor dinp, Tensor inp, Tensor dout) override {
    Dispatch(dinp.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::GeluBackward<F>(dinp.as<F>(), inp.as<F>(), dout.as<F>(), inp.numel);
    });
  }
  void RunResidualForward(Tensor out, Tensor a, Tensor b) override {
    Dispatch(out.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::ResidualForward<F>(out.as<F>(), a.as<F>(), b.as<F>(), out.numel);
    });
  }
  void RunAddInPlace(Tensor dst, Tensor src) override {
    Dispatch(dst.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AddInPlace<F>(dst.as<F>(), src.as<F>(), dst.numel);
    });
  }
  void RunClassifierForward(Tensor logits, Tensor losses, Tensor targets,
                            int64_t N, int V, int Vp, double dloss,
                            bool write_grad) override {
    const int32_t* t = targets.as<int32_t>();
    for (int64_t i = 0; i < N; ++i) {
      GPT2_CHECK_MSG(t[i] >= 0 && t[i] < V, "target ", t[i], " at ", i,
                     " outside the vocab [0, ", V, ")");
    }
    Dispatch(logits.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::ClassifierForward<F>(logits.as<F>(), losses.as<F>(), t, N, V, Vp,
                                dloss, write_grad);
    });
  }
  void RunAccumulateSum(Tensor acc, Tensor x, double scale) override {
    Dispatch(x.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AccumulateSum<F>(acc.as<F>(), x.as<F>(), x.numel, scale);
    });
  }
  void RunSumSquares(Tensor out, Tensor x) override {
    Dispatch(x.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::SumSquares<F>(out.as<F>(), x.as<F>(), x.numel);
    });
  }
  void RunAdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                Tensor norm_squared, const AdamWArgs& args) override {
    GPT2_CHECK_MSG(master.data == nullptr,
                   "the CPU backend keeps no separate master weights");
    AdamWArgs now = args;
    if (args.step_values.data != nullptr) {
      // The rate and step as the update runs (the float lr the values hold).
      const auto& values =
          *static_cast<const AdamWStepValues*>(args.step_values.data);
      now.lr = values.lr;
      now.step = values.step;
    }
    Dispatch(param.dtype, [&](auto zero) {
      using F = decltype(zero);
      cpu::AdamW<F>(param.as<F>(), m.as<F>(), v.as<F>(), grad.as<F>(),
                    param.numel, norm_squared.as<F>(), now);
    });
  }
  void RunMarkAdamWRows(Tensor marks, Tensor tokens,
                        const AdamWArgs& args) override {
    const int64_t step =
        args.step_values.data != nullptr
            ? static_cast<const AdamWStepValues*>(args.step_values.data)->step
            : args.step;
    cpu::MarkAdamWRows(marks.as<int32_t>(), marks.numel, tokens.as<int32_t>(),
                       tokens.numel, AdamWRowStamp(step));
  }

 private:
  // Calls fn(float{}) or fn(double{}) for the tensor's float type.
  template <typename Fn>
  static void Dispatch(DType dtype, Fn&& fn) {
    switch (dtype) {
      case DType::kF32:
        fn(float{});
        return;
      case DType::kF64:
        fn(double{});
        return;
      default:
        GPT2_CHECK_MSG(false, "the CPU backend has no ", DTypeName(dtype),
                       " ops");
    }
  }
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace gpt2
