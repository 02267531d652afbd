#include "src/backend/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/backend/update_claims.h"
#include "src/core/env.h"
#include "src/cuda/check.h"
#include "src/cuda/mma_check.h"
#include "src/cuda/scratch.h"
#include "src/cuda/staging.h"
#include "src/ops/adamw.h"
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
#if !defined(GPT2_CUDA_EMULATED)
#include "src/cuda/cublaslt_api.h"
#include "src/ops/matmul_cublaslt.h"
#endif

namespace gpt2 {
namespace {

// Statistics, losses and optimizer state are f32 whatever the model's storage
// type.
void CheckF32(const Tensor& t, const char* what) {
  GPT2_CHECK_MSG(t.dtype == DType::kF32, what, " must be f32, is ",
                 DTypeName(t.dtype));
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    GPT2_CUDA_CHECK(cudaSetDevice(device_));
    // GPT2_STREAM_PRIORITY=1: the main stream at the device's greatest
    // priority, so that when an SM frees up the block scheduler places the
    // main stream's blocks (the step's critical path) before those of the
    // streams beside it (weight gradients, updates, the attention's dQ),
    // which then fill what is left. Opt-in until timed.
    int priority = 0;
    if (EnvIs("GPT2_STREAM_PRIORITY", "1")) {
      int least = 0, greatest = 0;
      GPT2_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      priority = greatest;
      high_priority_ = greatest != least;
    }
    GPT2_CUDA_CHECK(
        cudaStreamCreateWithPriority(&stream_, cudaStreamDefault, priority));
#if !defined(GPT2_CUDA_EMULATED)
    // GPT2_PORTABLE_MATMUL=1 runs the tiled kernels instead, for checking
    // cuBLASLt.
    if (!EnvIs("GPT2_PORTABLE_MATMUL", "1")) {
      // Loaded on a thread of its own beside the rest of start-up (data, the
      // initial weights); the first matmul waits for it.
      cuda::PreloadCublasLt();
      cublaslt_ = std::make_unique<cuda::CublasLtMatmul>(stream_, &scratch_);
    }
    // GPT2_GELU_EPILOGUES=0 keeps cuBLASLt but runs the GELU as its own
    // kernels, to isolate an epilogue problem.
    gelu_epilogues_ = !EnvIs("GPT2_GELU_EPILOGUES", "0");
#endif
    // Unless GPT2_WGRAD_BESIDE=0: each matmul backward's weight and bias
    // gradients on a second stream, beside its input gradient and the ops after
    // it (up to the model's next JoinWeightGradients), so that products whose
    // tiles leave SMs idle (768x768 attproj weight gradients are 36 tiles
    // of 128x128 on 132 SMs) share the card. The same products in the same
    // order: the same bits. Its own cuBLASLt workspace and scratch, made at
    // the first weight gradient (not at all for sampling and serving). The
    // default since the H100 run at 963fd27 (B=16: 29.4 against 30.4 ms).
    beside_ = !EnvIs("GPT2_WGRAD_BESIDE", "0");
    // GPT2_UPDATE_BESIDE=1: the optimizer's updates on a third stream, beside
    // the next step's forward (Backend::BeginUpdatesBeside). Opt-in until a
    // GPU run has timed it.
    updates_wanted_ = EnvIs("GPT2_UPDATE_BESIDE", "1");
  }
  ~CudaBackend() override {
    JoinWeightGradients(0);
    JoinUpdates();
    cudaStreamSynchronize(stream_);
    for (cudaGraphExec_t exec : graphs_) cudaGraphExecDestroy(exec);
    if (encoder_plan_.data != nullptr) cudaFree(encoder_plan_.data);
    if (queued_host_ != nullptr) cudaFreeHost(queued_host_);
    if (queued_done_ != nullptr) cudaEventDestroy(queued_done_);
    for (StepMark& mark : step_marks_) {
      if (mark.event != nullptr) cudaEventDestroy(mark.event);
    }
    if (wgrad_stream_ != nullptr) {
#if !defined(GPT2_CUDA_EMULATED)
      cublaslt_beside_.reset();
#endif
      cudaEventDestroy(wgrad_fork_);
      for (cudaEvent_t done : wgrad_done_) cudaEventDestroy(done);
      cudaStreamDestroy(wgrad_stream_);
    }
    if (update_stream_ != nullptr) {
      cudaEventDestroy(update_fork_);
      for (cudaEvent_t done : update_done_) cudaEventDestroy(done);
      cudaStreamDestroy(update_stream_);
    }
    cudaStreamDestroy(stream_);
  }

  std::string name() const override {
    return matmul_path() == "cublaslt" ? "cuda" : "cuda (portable matmuls)";
  }
  bool SupportsDType(DType dtype) const override {
    return dtype == DType::kF32 || dtype == DType::kBF16;
  }
  std::string KernelSummary(DType dtype, int head_size) const override {
    return "matmuls: " + matmul_path() +
           ", attention: " + cuda::AttentionKernelName(dtype, head_size) +
           (beside_ ? ", weight gradients: beside" : "") +
           (updates_wanted_ ? ", updates: beside the next forward" : "") +
           (high_priority_ ? ", main stream first" : "") +
           (cuda::ProgrammaticLaunchOn() ? ", launches: programmatic" : "");
  }

  std::string TunedKernels() const override {
    const std::string forward = cuda::AttentionForwardChoice(),
                      backward = cuda::AttentionBackwardChoice();
    std::string out;
    if (!forward.empty()) out = "attention forward " + forward;
    if (!backward.empty()) {
      out += (out.empty() ? "" : "; ") + std::string("attention backward ") +
             backward;
    }
    if (!out.empty()) {
      char text[64];
      std::snprintf(text, sizeof(text), " (the attention timing took %.2f s)",
                    cuda::AttentionChoiceSeconds());
      out += text;
    }
#if !defined(GPT2_CUDA_EMULATED)
    const std::string matmuls =
        cublaslt_ ? cublaslt_->AutotuneNote() : std::string();
    if (!matmuls.empty()) out += (out.empty() ? "" : "; ") + matmuls;
#endif
    return out;
  }

  std::string LibraryNote() const override {
#if !defined(GPT2_CUDA_EMULATED)
    return cuda::CublasLtLoadNote();
#else
    return "";
#endif
  }

  Tensor Alloc(DType dtype, int64_t numel) override {
    const size_t bytes = static_cast<size_t>(numel) * DTypeSize(dtype);
    void* data = nullptr;
    const cudaError_t err = cudaMalloc(&data, bytes == 0 ? 1 : bytes);
    if (err != cudaSuccess) {
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      FatalError(std::string("out of GPU memory allocating ") +
                     std::to_string(bytes) + " bytes (" +
                     std::to_string(free_bytes >> 20) + " MiB free of " +
                     std::to_string(total_bytes >> 20) +
                     " MiB): " + cudaGetErrorString(err),
                 __FILE__, __LINE__);
    }
    GPT2_CUDA_CHECK(cudaMemsetAsync(data, 0, bytes, stream_));
    return Tensor{data, dtype, numel};
  }
  std::optional<MemoryInfo> DeviceMemory() const override {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();  // not sticky; clear it
      return std::nullopt;
    }
    cudaDeviceProp prop;
    const bool named = cudaGetDeviceProperties(&prop, device_) == cudaSuccess;
    return MemoryInfo{static_cast<int64_t>(free_bytes),
                      static_cast<int64_t>(total_bytes),
                      absl::StrCat("GPU ", device_,
                                   named ? absl::StrCat(" (", prop.name, ")")
                                         : std::string())};
  }
  // The calls outside the op vocabulary (Free, Upload, Download,
  // QueueDownload, Zero, Copy, Synchronize) first join every weight gradient
  // queued beside (JoinWeightGradients(0)): a caller that reads or rewrites a
  // gradient, or a buffer one still reads, through them needs no join of its
  // own. (In a training step they come before the backward or after its
  // final join: no overlap is lost.) They wait for the updates beside whose
  // memory they touch, as ops do; Free and Synchronize for all.
  void Free(Tensor t) override {
    if (t.data == nullptr) return;
    JoinWeightGradients(0);
    JoinUpdates();
    GPT2_CUDA_CHECK(cudaStreamSynchronize(stream_));
    GPT2_CUDA_CHECK(cudaFree(t.data));
  }
  void Upload(Tensor dst, const void* host_src) override {
    // Per-step inputs (tokens, targets) go through pinned staging without
    // stalling the host; big one-off uploads (weights) copy synchronously.
    // Either way host_src may be reused when this returns.
    JoinWeightGradients(0);
    AwaitUpdatesTouching({dst}, {});
    constexpr size_t kStagedMax = size_t{16} << 20;
    if (dst.bytes() <= kStagedMax) {
      staging_.CopyToDevice(dst.data, host_src, dst.bytes(), stream_);
      return;
    }
    GPT2_CUDA_CHECK(cudaMemcpyAsync(dst.data, host_src, dst.bytes(),
                                    cudaMemcpyHostToDevice, stream_));
    GPT2_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void Download(void* host_dst, Tensor src) override {
    JoinWeightGradients(0);
    AwaitUpdatesTouching({}, {src});
    GPT2_CUDA_CHECK(cudaMemcpyAsync(host_dst, src.data, src.bytes(),
                                    cudaMemcpyDeviceToHost, stream_));
    GPT2_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void QueueDownload(void* host_dst, Tensor src) override {
    GPT2_CHECK_MSG(queued_bytes_ + src.bytes() <= kQueuedDownloadBytes,
                   "queued downloads are for a few scalars");
    JoinWeightGradients(0);
    AwaitUpdatesTouching({}, {src});
    if (queued_host_ == nullptr) {
      GPT2_CUDA_CHECK(cudaMallocHost(&queued_host_, kQueuedDownloadBytes));
      GPT2_CUDA_CHECK(
          cudaEventCreateWithFlags(&queued_done_, cudaEventDisableTiming));
    }
    char* pinned = static_cast<char*>(queued_host_) + queued_bytes_;
    GPT2_CUDA_CHECK(cudaMemcpyAsync(pinned, src.data, src.bytes(),
                                    cudaMemcpyDeviceToHost, stream_));
    GPT2_CUDA_CHECK(cudaEventRecord(queued_done_, stream_));
    queued_.push_back({host_dst, pinned, src.bytes()});
    queued_bytes_ += src.bytes();
  }
  void WaitQueuedDownloads() override {
    if (queued_.empty()) return;
    GPT2_CUDA_CHECK(cudaEventSynchronize(queued_done_));
    for (const QueuedDownload& q : queued_)
      std::memcpy(q.host_dst, q.pinned, q.bytes);
    queued_.clear();
    queued_bytes_ = 0;
  }
  void MarkStepEnd(int64_t step) override {
    StepMark& mark = step_marks_[step % kStepMarks];
    if (mark.event == nullptr) GPT2_CUDA_CHECK(cudaEventCreate(&mark.event));
    GPT2_CUDA_CHECK(cudaEventRecord(mark.event, stream_));
    mark.step = step;
  }
  double DeviceStepMs(int64_t step) override {
    if (step < 1) return -1.0;
    const StepMark& from = step_marks_[(step - 1) % kStepMarks];
    const StepMark& to = step_marks_[step % kStepMarks];
    if (from.step != step - 1 || to.step != step) return -1.0;
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, from.event, to.event) != cudaSuccess) {
      cudaGetLastError();  // not recorded or not done: no figure, no error
      return -1.0;
    }
    return ms;
  }
  void Zero(Tensor t) override {
    JoinWeightGradients(0);
    if (updating_beside_) {
      // Beside: after the updates queued before it (which read what it
      // zeroes: the gradients), claimed until waited for.
      GPT2_CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.bytes(), update_stream_));
      claims_.Add(QueuedBeside(), t.data, t.bytes(), true);
      return;
    }
    AwaitUpdatesTouching({t}, {});
    GPT2_CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.bytes(), stream_));
  }
  void Copy(Tensor dst, Tensor src) override {
    GPT2_CHECK(dst.bytes() == src.bytes());
    JoinWeightGradients(0);
    AwaitUpdatesTouching({dst}, {src});
    GPT2_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.bytes(),
                                    cudaMemcpyDeviceToDevice, stream_));
  }
  void Synchronize() override {
    JoinWeightGradients(0);
    JoinUpdates();
    GPT2_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void JoinWeightGradients(int keep_last) override {
    if (wgrad_unjoined_ <= keep_last) return;
    // The weight-gradient stream runs in order: waiting for the event after
    // the newest one to wait for waits for all before it.
    const int newest =
        (wgrad_next_ - 1 - keep_last + 2 * kWgradEvents) % kWgradEvents;
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(stream_, wgrad_done_[newest], 0));
    wgrad_unjoined_ = keep_last;
  }
  void RunCast(Tensor dst, Tensor src) override {
    OpTimer timer(this, "cast", Traffic(dst, src));
    cuda::Cast(dst, src, stream_);
  }
  void RunSampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                     int rows, int V, int Vp, int top_k, double temperature,
                     double top_p) override {
    OpTimer timer(this, "sample", Traffic(tokens, logits));
    cuda::SampleTopK(tokens, logits, seeds, counter, rows, V, Vp, top_k,
                     temperature, top_p, stream_);
  }

  void RunEncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe,
                         int B, int T, int C) override {
    // wte's rows for the tokens, wpe's first T rows.
    OpTimer timer(this, "encoder_fwd",
                  Traffic(tokens, out, out) +
                      static_cast<double>(T) * C * DTypeSize(wpe.dtype));
    cuda::EncoderForward(out, tokens, wte, wpe, B, T, C, stream_);
  }
  void RunEncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens,
                          const int32_t* host_tokens, int B, int T, int C,
                          ParamGrads dwpe_grads) override {
    // wte's rows for the tokens updated in place; wpe's first T rows too, or
    // all of it written.
    OpTimer timer(this, "encoder_bwd",
                  Traffic(dout, dout, dout, tokens) +
                      (dwpe_grads == ParamGrads::kOverwrite
                           ? static_cast<double>(dwpe.bytes())
                           : 2.0 * T * C * DTypeSize(dwpe.dtype)));
    if (recording_) {
      GPT2_CHECK_MSG(staged_bt_ == int64_t{B} * T,
                     "EncoderBackward while recording a graph needs "
                     "StageEncoderBackward for its (B, T) first");
      cuda::EncoderBackwardStaged(dwte, dwpe, dout, encoder_plan_, B, T, C,
                                  stream_, dwpe_grads);
      return;
    }
    GPT2_CHECK_MSG(host_tokens != nullptr,
                   "the CUDA encoder backward needs host tokens");
    cuda::EncoderBackward(dwte, dwpe, dout, host_tokens, B, T, C, &scratch_,
                          &staging_, stream_, dwpe_grads);
  }
  void RunLayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                           Tensor weight, Tensor bias, int64_t N,
                           int C) override {
    OpTimer timer(this, "layernorm_fwd",
                  Traffic(out, mean, rstd, inp, weight, bias));
    CheckF32(mean, "layernorm mean");
    CheckF32(rstd, "layernorm rstd");
    cuda::LayerNormForward(out, mean, rstd, inp, weight, bias, N, C, stream_);
  }
  void RunLayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias,
                            Tensor dout, Tensor inp, Tensor weight, Tensor mean,
                            Tensor rstd, int64_t N, int C,
                            ParamGrads dparams) override {
    // dinp accumulates; dweight and dbias as dparams says.
    OpTimer timer(
        this, "layernorm_bwd",
        Traffic(dinp, dinp, dweight, dbias, dout, inp, weight, mean, rstd) +
            GradReads(dparams, dweight, dbias));
    cuda::LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd,
                            N, C, &scratch_, stream_, dparams);
  }
  void RunMatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                        int64_t N, int C, int OC) override {
    OpTimer timer(this, "matmul_fwd", Traffic(out, inp, weight, bias),
                  2.0 * N * C * OC);
    timer.Shape(N, C, OC);
    // A few rows (decoding): the weights once, read at full bandwidth.
    if (cuda::SkinnyMatmulForward(out, Tensor{}, inp, weight, bias, N, C, OC,
                                  stream_))
      return;
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_) return cublaslt_->Forward(out, inp, weight, bias, N, C, OC);
#endif
    cuda::MatmulForward(out, inp, weight, bias, N, C, OC, stream_);
  }
  void RunResidualLayerNormMatmul(Tensor residual_out, Tensor out,
                                  Tensor gelu_out, Tensor ln, Tensor mean,
                                  Tensor rstd, Tensor a, Tensor b, Tensor ln_w,
                                  Tensor ln_b, Tensor weight, Tensor bias,
                                  int64_t N, int C, int OC) override {
    // GPT2_DECODE_FUSION=0 runs the steps one by one (a fallback).
    static const bool fuse = !EnvIs("GPT2_DECODE_FUSION", "0");
    if (fuse && N <= cuda::kSkinnyMaxRows) {  // decoding: one launch
      const cuda::SkinnyLayerNorm fused{residual_out, a, b, ln_w, ln_b};
      OpTimer timer(
          this, "residual_ln_matmul",
          Traffic(residual_out, out, gelu_out, a, b, ln_w, ln_b, weight, bias),
          2.0 * N * C * OC);
      if (cuda::SkinnyMatmulForward(out, gelu_out, Tensor{}, weight, bias, N, C,
                                    OC, stream_, &fused))
        return;
      timer.Cancel();  // the steps below time themselves
    }
    Backend::RunResidualLayerNormMatmul(residual_out, out, gelu_out, ln, mean,
                                        rstd, a, b, ln_w, ln_b, weight, bias, N,
                                        C, OC);
  }
  void RunMatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                         Tensor inp, Tensor weight, int64_t N, int C, int OC,
                         bool accumulate_dinp, ParamGrads dparams) override {
    // dweight and dbias as dparams says; dinp accumulates unless
    // !accumulate_dinp.
    OpTimer timer(this, "matmul_bwd",
                  Traffic(dweight, dbias, dout, inp, weight, dinp) +
                      GradReads(dparams, dweight, dbias) +
                      (accumulate_dinp ? dinp.bytes() : 0),
                  (dinp.data != nullptr ? 4.0 : 2.0) * N * C * OC);
    timer.Shape(N, C, OC);
    if (WeightGradientsBeside()) {
      // The weight gradients first, on the second stream once dout and inp
      // are ready; then the input gradient here.
      ForkWeightGradients();
      WeightAndBiasBeside(dweight, dbias, dout, inp, N, C, OC, dparams);
      dweight = dbias = Tensor{};
    }
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_)
      return cublaslt_->Backward(dinp, dweight, dbias, dout, inp, weight, N, C,
                                 OC, accumulate_dinp, dparams);
#endif
    if (!accumulate_dinp && dinp.data != nullptr) Zero(dinp);
    cuda::MatmulBackward(dinp, dweight, dbias, dout, inp, weight, N, C, OC,
                         &scratch_, stream_, dparams);
  }
  // Whether this matmul backward queues its weight gradients beside: not
  // while ops are timed (each op's events on stream_ would time its input
  // gradient alone, and the join's wait would land on the next op), so a
  // profiled step's rows time whole ops; the same products either way.
  bool WeightGradientsBeside() const { return beside_ && !timing_; }
  // Weight gradients beside: marks the work queued here so far, which the next
  // WeightAndBiasBeside waits for (the first makes the stream, its events
  // and its cuBLASLt instance).
  void ForkWeightGradients() {
    if (wgrad_stream_ == nullptr) {
      GPT2_CUDA_CHECK(
          cudaStreamCreateWithFlags(&wgrad_stream_, cudaStreamNonBlocking));
      GPT2_CUDA_CHECK(
          cudaEventCreateWithFlags(&wgrad_fork_, cudaEventDisableTiming));
      for (cudaEvent_t& done : wgrad_done_) {
        GPT2_CUDA_CHECK(
            cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      }
#if !defined(GPT2_CUDA_EMULATED)
      if (cublaslt_) {
        cublaslt_beside_ = std::make_unique<cuda::CublasLtMatmul>(
            wgrad_stream_, &wgrad_scratch_);
      }
#endif
    }
    GPT2_CUDA_CHECK(cudaEventRecord(wgrad_fork_, stream_));
  }
  // Queues dweight (+)= dout^T @ inp and dbias (+)= column sums of dout (as
  // dparams says) on the weight-gradient stream, after the last
  // ForkWeightGradients' mark; JoinWeightGradients waits for them.
  void WeightAndBiasBeside(Tensor dweight, Tensor dbias, Tensor dout,
                           Tensor inp, int64_t N, int C, int OC,
                           ParamGrads dparams) {
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(wgrad_stream_, wgrad_fork_, 0));
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_beside_) {
      cublaslt_beside_->WeightAndBiasBackward(dweight, dbias, dout, inp, N, C,
                                              OC, dparams);
    } else
#endif
    {
      cuda::MatmulBackward(Tensor{}, dweight, dbias, dout, inp, Tensor{}, N, C,
                           OC, &wgrad_scratch_, wgrad_stream_, dparams);
    }
    // Over kWgradEvents unjoined, the ring's oldest event is recorded again,
    // later: a wait for it then waits for more (still correct).
    GPT2_CUDA_CHECK(cudaEventRecord(wgrad_done_[wgrad_next_], wgrad_stream_));
    wgrad_next_ = (wgrad_next_ + 1) % kWgradEvents;
    wgrad_unjoined_ = std::min(wgrad_unjoined_ + 1, kWgradEvents);
  }
  // GELU fused into cuBLASLt epilogues in bf16 (fp32 keeps the separate
  // kernels, bit-for-bit the parity path); the unfused sequence elsewhere or
  // where cuBLASLt offers no algorithm for the epilogue.
  void RunMatmulGeluForward(Tensor pre, Tensor out, Tensor inp, Tensor weight,
                            Tensor bias, int64_t N, int C, int OC) override {
    const double gelu_fwd_bytes = Traffic(pre, out, inp, weight, bias);
    const double gelu_fwd_flops = 2.0 * N * C * OC;
    if (N <= cuda::kSkinnyMaxRows) {  // decoding
      OpTimer timer(this, "matmul_gelu_fwd", gelu_fwd_bytes, gelu_fwd_flops);
      if (cuda::SkinnyMatmulForward(pre, out, inp, weight, bias, N, C, OC,
                                    stream_))
        return;
      timer.Cancel();
    }
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_ && gelu_epilogues_ && out.dtype == DType::kBF16) {
      OpTimer timer(this, "matmul_gelu_fwd", gelu_fwd_bytes, gelu_fwd_flops);
      timer.Shape(N, C, OC);
      if (cublaslt_->ForwardGelu(pre, out, inp, weight, bias, N, C, OC)) return;
      timer.Cancel();
    }
#endif
    Backend::RunMatmulGeluForward(pre, out, inp, weight, bias, N, C, OC);
  }
  void RunMatmulBackwardGelu(Tensor dpre, Tensor dweight, Tensor dbias,
                             Tensor dout, Tensor inp, Tensor weight, Tensor pre,
                             Tensor scratch, int64_t N, int C, int OC,
                             ParamGrads dparams) override {
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_ && gelu_epilogues_ && dout.dtype == DType::kBF16) {
      OpTimer timer(this, "matmul_gelu_bwd",
                    Traffic(dpre, dweight, dbias, dout, inp, weight, pre) +
                        GradReads(dparams, dweight, dbias),
                    4.0 * N * C * OC);
      timer.Shape(N, C, OC);
      // Beside: the fused input gradient alone here (dweight empty), then
      // the weight gradients on their stream from the mark before it; where
      // the epilogue has no algorithm, nothing was queued and the unfused
      // sequence below does both.
      const bool beside = WeightGradientsBeside();
      if (beside) ForkWeightGradients();
      if (cublaslt_->BackwardGelu(dpre, beside ? Tensor{} : dweight, dbias,
                                  dout, inp, weight, pre, N, C, OC, dparams)) {
        if (beside) {
          WeightAndBiasBeside(dweight, dbias, dout, inp, N, C, OC, dparams);
        }
        return;
      }
      timer.Cancel();
    }
#endif
    Backend::RunMatmulBackwardGelu(dpre, dweight, dbias, dout, inp, weight, pre,
                                   scratch, N, C, OC, dparams);
  }
  void RunResidualLayerNormForward(Tensor residual_out, Tensor out, Tensor mean,
                                   Tensor rstd, Tensor a, Tensor b,
                                   Tensor weight, Tensor bias, int64_t N,
                                   int C) override {
    OpTimer timer(this, "residual_layernorm_fwd",
                  Traffic(residual_out, out, mean, rstd, a, b, weight, bias));
    CheckF32(mean, "layernorm mean");
    CheckF32(rstd, "layernorm rstd");
    cuda::ResidualLayerNormForward(residual_out, out, mean, rstd, a, b, weight,
                                   bias, N, C, stream_);
  }
  void RunAttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T,
                           int C, int NH) override {
    OpTimer timer(this, "attention_fwd", Traffic(out, lse, qkv),
                  AttentionForwardFlops(B, T, C));
    CheckF32(lse, "attention lse");
    cuda::AttentionForward(out, lse, qkv, B, T, C, NH, stream_);
  }
  void RunAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                            Tensor lse, int B, int T, int C, int NH) override {
    // The backward counted as 2.5 forwards (FlashAttention's convention; the
    // kernels recompute more than that).
    OpTimer timer(this, "attention_bwd", Traffic(dqkv, dout, qkv, out, lse),
                  2.5 * AttentionForwardFlops(B, T, C));
    cuda::AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH, &scratch_,
                            stream_);
  }
  void RunAttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache,
                          Tensor qkv, int B, int max_T, Tensor pos, int C,
                          int NH) override {
    OpTimer timer(this, "attention_decode",
                  Traffic(out, k_cache, v_cache, qkv));
    cuda::AttentionDecode(out, k_cache, v_cache, qkv, B, max_T, pos, C, NH,
                          stream_);
  }
  void RunGeluForward(Tensor out, Tensor inp) override {
    OpTimer timer(this, "gelu_fwd", Traffic(out, inp));
    cuda::GeluForward(out, inp, stream_);
  }
  void RunGeluBackward(Tensor dinp, Tensor inp, Tensor dout) override {
    OpTimer timer(this, "gelu_bwd", Traffic(dinp, inp, dout));
    cuda::GeluBackward(dinp, inp, dout, stream_);
  }
  void RunResidualForward(Tensor out, Tensor a, Tensor b) override {
    OpTimer timer(this, "residual_fwd", Traffic(out, a, b));
    cuda::ResidualForward(out, a, b, stream_);
  }
  void RunAddInPlace(Tensor dst, Tensor src) override {
    OpTimer timer(this, "add_in_place", Traffic(dst, dst, src));
    cuda::AddInPlace(dst, src, stream_);
  }
  void RunClassifierForward(Tensor logits, Tensor losses, Tensor targets,
                            int64_t N, int V, int Vp, double dloss,
                            bool write_grad) override {
    // Over the real vocab: the padded columns need not be read.
    OpTimer timer(
        this, "classifier",
        double(N) * V * DTypeSize(logits.dtype) * (write_grad ? 2 : 1) +
            Traffic(losses, targets));
    CheckF32(losses, "classifier losses");
    cuda::ClassifierForward(logits, losses, targets, N, V, Vp, dloss,
                            write_grad, stream_);
  }
  void RunAccumulateSum(Tensor acc, Tensor x, double scale) override {
    OpTimer timer(this, "loss_sum", Traffic(acc, acc, x));
    CheckF32(acc, "sum accumulator");
    cuda::AccumulateSum(acc, x, scale, stream_);
  }
  void RunSumSquares(Tensor out, Tensor x) override {
    OpTimer timer(this, "grad_norm", Traffic(out, x));
    CheckF32(out, "sum-of-squares out");
    cuda::SumSquares(out, x, &scratch_, stream_);
  }
  void RunAdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
                Tensor norm_squared, const AdamWArgs& args) override {
    OpTimer timer(this, "adamw",
                  Traffic(param, master, master, m, m, v, v, grad));
    // f32 moments (bf16 params with f32 masters, or f32 params), or the
    // whole state in bf16: bf16 params and moments, no masters, rounded
    // stochastically (optim.bf16_state).
    GPT2_CHECK_MSG(m.dtype == v.dtype, "adamw m and v of one type");
    if (m.dtype == DType::kBF16) {
      GPT2_CHECK_MSG(param.dtype == DType::kBF16 && master.data == nullptr &&
                         args.rounding_seed != 0,
                     "bf16 moments go with bf16 params, no master weights "
                     "and stochastic rounding");
    } else {
      CheckF32(m, "adamw m");
      if (master.data != nullptr) {
        CheckF32(master, "adamw master");
      } else {
        GPT2_CHECK_MSG(param.dtype == DType::kF32,
                       "bf16 params need fp32 master weights or bf16 moments");
      }
    }
    if (!updating_beside_) {
      AwaitUpdatesTouching(
          {param, master, m, v},
          {grad, norm_squared, args.step_values, args.row_marks});
      cuda::AdamW(param, master, m, v, grad, norm_squared, args, stream_);
      return;
    }
    // Beside: after the updates queued before it on the update stream, then
    // an event, and its runs' elements claimed until waited for. A call
    // updating the rows a batch does not gather claims them as such (the
    // batch's gather need not wait for it).
    cuda::AdamW(param, master, m, v, grad, norm_squared, args, update_stream_);
    const int update = QueuedBeside();
    const bool outside_gather =
        args.row_marks.data != nullptr && !args.marked_rows;
    for (const AdamWDecayRun& run : AdamWDecayRuns(args, param.numel)) {
      const auto claim = [&](const Tensor& t, bool written) {
        if (t.data == nullptr) return;
        const size_t size = DTypeSize(t.dtype);
        claims_.Add(update, static_cast<const char*>(t.data) + run.begin * size,
                    (run.end - run.begin) * size, written,
                    written && outside_gather);
      };
      for (const Tensor& t : {param, master, m, v}) claim(t, true);
      claim(grad, false);
    }
    for (const Tensor& t : {norm_squared, args.step_values, args.row_marks})
      claims_.Add(update, t.data, t.bytes(), false);
  }
  void RunMarkAdamWRows(Tensor marks, Tensor tokens,
                        const AdamWArgs& args) override {
    OpTimer timer(this, "adamw", Traffic(marks, tokens));
    if (!updating_beside_) {
      AwaitUpdatesTouching({marks}, {tokens, args.step_values});
      cuda::MarkAdamWRows(marks, tokens, args, stream_);
      return;
    }
    cuda::MarkAdamWRows(marks, tokens, args, update_stream_);
    const int update = QueuedBeside();
    claims_.Add(update, marks.data, marks.bytes(), true);
    for (const Tensor& t : {tokens, args.step_values})
      claims_.Add(update, t.data, t.bytes(), false);
  }
  // Numbers the work just queued on the update stream as the next update,
  // with its event recorded after it.
  int QueuedBeside() {
    const int update = updates_queued_++;
    if (update == static_cast<int>(update_done_.size())) MakeUpdateEvents(1);
    GPT2_CUDA_CHECK(cudaEventRecord(update_done_[update], update_stream_));
    return update;
  }

  // Updates beside (see Backend::BeginUpdatesBeside).
  bool UpdatesBeside() const override { return updates_wanted_ && !timing_; }
  void BeginUpdatesBeside() override {
    if (!UpdatesBeside()) return;
    JoinUpdates();
    // The updates read the gradients: the weight-gradient stream's too.
    JoinWeightGradients(0);
    MakeUpdateStream();
    GPT2_CUDA_CHECK(cudaEventRecord(update_fork_, stream_));
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(update_stream_, update_fork_, 0));
    updating_beside_ = true;
    updates_queued_ = 0;
  }
  void EndUpdatesBeside() override { updating_beside_ = false; }
  void AwaitUpdatesTouching(
      std::initializer_list<Tensor> writes, std::initializer_list<Tensor> reads,
      std::initializer_list<Tensor> gathered = {}) override {
    if (claims_.empty()) return;
    const int need = claims_.Needed(writes, reads, gathered);
    if (need < 0) return;
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(stream_, update_done_[need], 0));
    claims_.Joined(need);
  }
  // The update stream and its fork mark, made at the first use (before a
  // recording that may queue updates: not made while capturing).
  void MakeUpdateStream() {
    if (update_stream_ != nullptr) return;
    GPT2_CUDA_CHECK(
        cudaStreamCreateWithFlags(&update_stream_, cudaStreamNonBlocking));
    GPT2_CUDA_CHECK(
        cudaEventCreateWithFlags(&update_fork_, cudaEventDisableTiming));
  }
  // `count` more events for updates beside (none when count <= 0).
  void MakeUpdateEvents(int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      update_done_.emplace_back();
      GPT2_CUDA_CHECK(cudaEventCreateWithFlags(&update_done_.back(),
                                               cudaEventDisableTiming));
    }
  }
  static constexpr int64_t kRecordedUpdateEvents = 256;
  // The main stream waits for every update beside still pending.
  void JoinUpdates() {
    if (claims_.empty()) return;
    GPT2_CUDA_CHECK(
        cudaStreamWaitEvent(stream_, update_done_[claims_.newest()], 0));
    claims_.Clear();
  }

  void EnableOpTiming(bool on) override { timing_ = on; }
  void TimeHostCalls(bool on) override { host_timing_ = on; }
  std::vector<OpTiming> TakeHostCallTimes() override {
    std::vector<OpTiming> out;
    for (auto& [op, t] : host_calls_) {
      out.push_back(t);
      out.back().op = op;
    }
    host_calls_.clear();
    SlowestFirst(out);
    return out;
  }
  CUstream_st* cuda_stream() const override { return stream_; }
  bool asynchronous() const override { return true; }
  std::vector<OpTiming> TakeOpTimings() override {
    GPT2_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const auto add = [](OpTiming& t, const std::string& op, float ms,
                        const TimedCall& call) {
      t.op = op;
      t.ms += ms;
      ++t.calls;
      t.bytes += call.bytes;
      t.flops += call.flops;
    };
    std::map<std::string, OpTiming> by_op;
    std::map<std::string, std::map<std::string, OpTiming>> by_shape;
    for (const TimedCall& call : timed_) {
      float ms = 0.0f;
      GPT2_CUDA_CHECK(cudaEventElapsedTime(&ms, call.start, call.end));
      add(by_op[call.op], call.op, ms, call);
      if (!call.shape.empty())
        add(by_shape[call.op][call.shape], call.shape, ms, call);
      cudaEventDestroy(call.start);
      cudaEventDestroy(call.end);
    }
    timed_.clear();
    std::vector<OpTiming> out;
    for (auto& [op, t] : by_op) {
      for (auto& [shape, s] : by_shape[op]) t.shapes.push_back(s);
      SlowestFirst(t.shapes);
      out.push_back(t);
    }
    SlowestFirst(out);
    return out;
  }

 private:
  static void SlowestFirst(std::vector<OpTiming>& v) {
    std::sort(v.begin(), v.end(),
              [](const OpTiming& a, const OpTiming& b) { return a.ms > b.ms; });
  }
  struct TimedCall {
    const char* op;
    cudaEvent_t start, end;
    double bytes, flops;
    std::string shape;  // "" where the op names none
  };
  // The least traffic of an op: each tensor named read or written once.
  template <typename... Tensors>
  static double Traffic(const Tensors&... t) {
    return (0.0 + ... + static_cast<double>(t.bytes()));
  }
  // Parameter gradients that are read as well as written when they
  // accumulate.
  template <typename... Tensors>
  static double GradReads(ParamGrads dparams, const Tensors&... t) {
    return dparams == ParamGrads::kAccumulate ? Traffic(t...) : 0.0;
  }
  // The causal score and value products: 2 x 2 x T(T+1)/2 x C flops a
  // sequence (every head's share of C).
  static double AttentionForwardFlops(int B, int T, int C) {
    return 4.0 * B * (T * (T + 1.0) / 2.0) * C;
  }
  // Brackets one op with events on the stream while timing is on; free
  // otherwise.
  class OpTimer {
   public:
    OpTimer(CudaBackend* backend, const char* op, double bytes = 0.0,
            double flops = 0.0)
        : backend_(backend->timing_ ? backend : nullptr),
          host_(backend->host_timing_ ? backend : nullptr),
          op_(op),
          bytes_(bytes),
          flops_(flops) {
      if (host_ != nullptr) began_ = std::chrono::steady_clock::now();
      if (backend_ == nullptr) return;
      GPT2_CUDA_CHECK(cudaEventCreate(&start_));
      GPT2_CUDA_CHECK(cudaEventCreate(&end_));
      GPT2_CUDA_CHECK(cudaEventRecord(start_, backend_->stream_));
    }
    // The matmul's shape in the forward's terms, for the per-shape figures.
    void Shape(int64_t N, int C, int OC) {
      if (backend_ == nullptr) return;
      shape_ = std::to_string(N) + " x " + std::to_string(C) + " -> " +
               std::to_string(OC);
    }
    // The op took another path, which times itself: record nothing.
    void Cancel() {
      host_ = nullptr;
      if (backend_ == nullptr) return;
      cudaEventDestroy(start_);
      cudaEventDestroy(end_);
      backend_ = nullptr;
    }
    ~OpTimer() {
      if (host_ != nullptr) {
        OpTiming& t = host_->host_calls_[op_];
        t.ms += 1e3 * std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - began_)
                          .count();
        ++t.calls;
      }
      if (backend_ == nullptr) return;
      GPT2_CUDA_CHECK(cudaEventRecord(end_, backend_->stream_));
      backend_->timed_.push_back({op_, start_, end_, bytes_, flops_, shape_});
    }

   private:
    CudaBackend* backend_;
    CudaBackend* host_;  // while host calls are timed
    std::chrono::steady_clock::time_point began_;
    const char* op_;
    double bytes_, flops_;
    std::string shape_;
    cudaEvent_t start_ = nullptr, end_ = nullptr;
  };

  // Graphs: stream capture into a cudaGraph, instantiated once, replayed with
  // one launch (the emulator records and replays them too, refusing what a
  // capture does not allow).
  bool SupportsGraphs() const override { return true; }
  void BeginGraph() override {
    GPT2_CHECK_MSG(!timing_, "op timing cannot be recorded into a graph");
    JoinUpdates();
    if (UpdatesBeside()) {
      // Made before the capture, not during it: the stream and enough events
      // for the updates a recorded step may queue (one a group: 14 for
      // GPT-2 124M, L + 2).
      MakeUpdateStream();
      MakeUpdateEvents(kRecordedUpdateEvents -
                       static_cast<int64_t>(update_done_.size()));
    }
    GPT2_CUDA_CHECK(
        cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    recording_ = true;
  }
  int EndGraph() override {
    // Updates recorded beside end in the graph: its last node waits for them.
    JoinUpdates();
    recording_ = false;
    cudaGraph_t graph = nullptr;
    GPT2_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    GPT2_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    GPT2_CUDA_CHECK(cudaGraphDestroy(graph));
    graphs_.push_back(exec);
    return static_cast<int>(graphs_.size()) - 1;
  }
  void ReplayGraph(int graph) override {
    GPT2_CHECK(graph >= 0 && graph < static_cast<int>(graphs_.size()));
    // A recorded op waits for no update queued outside the recording.
    JoinUpdates();
    GPT2_CUDA_CHECK(cudaGraphLaunch(graphs_[graph], stream_));
  }
  void StageEncoderBackward(const int32_t* host_tokens, int B, int T,
                            int C) override {
    GPT2_CHECK_MSG(!recording_, "StageEncoderBackward while recording");
    const int64_t need = cuda::EncoderPlanSize(int64_t{B} * T, C);
    if (encoder_plan_.numel < need) {
      Free(encoder_plan_);
      encoder_plan_ = Alloc(DType::kI32, need);
    }
    cuda::StageEncoderPlan(encoder_plan_, host_tokens, B, T, C, &staging_,
                           stream_);
    staged_bt_ = int64_t{B} * T;
  }

  std::string matmul_path() const {
#if !defined(GPT2_CUDA_EMULATED)
    if (cublaslt_) return "cublaslt";
#endif
    return "portable";
  }

  int device_;
  std::vector<cudaGraphExec_t> graphs_;
  // Recording a graph (BeginGraph to EndGraph); the encoder backward's token
  // grouping staged for it, and for how many positions.
  bool recording_ = false;
  Tensor encoder_plan_;
  int64_t staged_bt_ = 0;
  bool gelu_epilogues_ = true;
  bool timing_ = false;
  std::vector<TimedCall> timed_;
  bool host_timing_ = false;
  std::map<std::string, OpTiming> host_calls_;  // TimeHostCalls' sums by op
  cudaStream_t stream_ = nullptr;
  cuda::Scratch scratch_;
  cuda::PinnedStaging
      staging_;  // host-to-device copies that do not stall the host
  // QueueDownload's pinned landing area and the event after the last queued
  // copy.
  struct QueuedDownload {
    void* host_dst;
    const void* pinned;
    size_t bytes;
  };
  static constexpr size_t kQueuedDownloadBytes = 4096;
  void* queued_host_ = nullptr;
  cudaEvent_t queued_done_ = nullptr;
  // MarkStepEnd's events, a ring over the last kStepMarks steps.
  static constexpr int kStepMarks = 4;
  struct StepMark {
    cudaEvent_t event = nullptr;
    int64_t step = -1;
  };
  StepMark step_marks_[kStepMarks];
  size_t queued_bytes_ = 0;
  std::vector<QueuedDownload> queued_;
  // Weight gradients beside: whether wanted (not GPT2_WGRAD_BESIDE=0), the
  // weight-gradient stream (null until the first weight gradient), the mark
  // it waits for, a ring of events recorded
  // after each weight gradient (wgrad_next_ the next to record; the last
  // wgrad_unjoined_ not yet waited for by stream_), and its own scratch.
  static constexpr int kWgradEvents = 8;
  bool beside_ = false;
  cudaStream_t wgrad_stream_ = nullptr;
  cudaEvent_t wgrad_fork_ = nullptr;
  cudaEvent_t wgrad_done_[kWgradEvents] = {};
  int wgrad_next_ = 0;
  int wgrad_unjoined_ = 0;
  cuda::Scratch wgrad_scratch_;
  // Updates beside: whether wanted (GPT2_UPDATE_BESIDE=1), whether AdamW calls
  // now go beside (between Begin- and EndUpdatesBeside), the update stream and
  // the mark it waits for (made at the first BeginUpdatesBeside), an event
  // after each update of the current step (grown as needed), how many are
  // queued this step, and what those not yet waited for claim.
  bool updates_wanted_ = false;
  bool updating_beside_ = false;
  // GPT2_STREAM_PRIORITY=1 took effect: the main stream above the others.
  bool high_priority_ = false;
  cudaStream_t update_stream_ = nullptr;
  cudaEvent_t update_fork_ = nullptr;
  std::vector<cudaEvent_t> update_done_;
  int updates_queued_ = 0;
  UpdateClaims claims_;
#if !defined(GPT2_CUDA_EMULATED)
  std::unique_ptr<cuda::CublasLtMatmul> cublaslt_;
  std::unique_ptr<cuda::CublasLtMatmul> cublaslt_beside_;  // on wgrad_stream_
#endif
};

}  // namespace

std::unique_ptr<Backend> MakeCudaBackend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace gpt2
