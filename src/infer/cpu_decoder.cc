// The CPU decoder: the prompt runs through the training ops of src/ops (its
// matmuls have many rows, which the packed GEMM handles well); each later
// position runs through src/infer/cpu_kernels (a few rows against the cache).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/core/bf16.h"
#include "src/core/error.h"
#include "src/infer/cpu_kernels.h"
#include "src/infer/decoder.h"
#include "src/ops/attention.h"
#include "src/ops/encoder.h"
#include "src/ops/gelu.h"
#include "src/ops/layernorm.h"
#include "src/ops/matmul.h"

namespace gpt2::infer {
namespace {

namespace ops = ::gpt2::cpu;  // the training ops (infer::cpu is this folder's)

class CpuDecoder final : public Decoder {
 public:
  CpuDecoder(const ModelShape& shape, std::vector<float> params, int max_batch,
             DType weights)
      : shape_(shape),
        list_(BuildParamList(shape)),
        params_(std::move(params)),
        max_batch_(max_batch) {
    GPT2_CHECK(max_batch_ >= 1);
    GPT2_CHECK_MSG(list_.size() == kNumParamTensors, "param list has ",
                   list_.size(), " tensors");
    GPT2_CHECK_MSG(static_cast<int64_t>(params_.size()) == TotalParams(list_),
                   "got ", params_.size(), " parameters, the shape needs ",
                   TotalParams(list_));
    GPT2_CHECK(weights == DType::kF32 || weights == DType::kBF16);
    if (weights == DType::kBF16) {
      // Every weight rounded to bf16, as the GPU's bf16 decoder holds them;
      // the matmuls stream the bf16 bits (half the bytes), the rest reads
      // the same rounded values in fp32.
      bf16_.resize(params_.size());
      for (size_t i = 0; i < params_.size(); ++i) {
        bf16_[i] = FloatToBf16Bits(params_[i]);
        params_[i] = Bf16BitsToFloat(bf16_[i]);
      }
    }
  }

  std::string name() const override {
    return bf16_.empty() ? "cpu" : "cpu (bf16 weights)";
  }
  const ModelShape& shape() const override { return shape_; }
  int max_batch() const override { return max_batch_; }
  const float* logits() const override { return logits_.data(); }
  int batch() const override { return batch_; }
  int position() const override { return position_; }
  int capacity() const override { return capacity_; }

  absl::Status Start(absl::Span<const int32_t> prompt, int batch,
                     int capacity) override;
  absl::Status Step(absl::Span<const int32_t> tokens) override;

 private:
  const float* P(int index, int layer = -1) const {
    const ParamSpec& p = list_[index];
    return params_.data() + p.offset +
           (layer < 0 ? 0 : int64_t{layer} * p.layer_numel());
  }
  // out (N, OC) = inp (N, C) @ parameter `index` (layer `layer`)^T + bias,
  // from the bf16 weights where the decoder holds them.
  void Matmul(float* out, const float* inp, int index, int layer,
              const float* bias, int N, int C, int OC) const {
    if (bf16_.empty()) {
      cpu::SmallBatchMatmul(out, inp, P(index, layer), bias, N, C, OC);
      return;
    }
    const ParamSpec& p = list_[index];
    cpu::SmallBatchMatmul(
        out, inp,
        bf16_.data() + p.offset +
            (layer < 0 ? 0 : int64_t{layer} * p.layer_numel()),
        bias, N, C, OC);
  }
  // Layer l's cache for row b, head h: (capacity, hs).
  float* KCache(int l, int b, int h) {
    return k_cache_.data() + CacheOffset(l, b, h);
  }
  float* VCache(int l, int b, int h) {
    return v_cache_.data() + CacheOffset(l, b, h);
  }
  int64_t CacheOffset(int l, int b, int h) const {
    const int hs = shape_.channels / shape_.num_heads;
    return ((int64_t{l} * batch_ + b) * shape_.num_heads + h) * capacity_ * hs;
  }
  // Copies the k and v parts of `rows` rows of qkv (rows, 3C) into layer l's
  // cache: with per_row, row r goes to cache row r at position pos (a decode
  // step); without, row r is position pos + r of cache row 0 (the prompt).
  void StoreKv(int l, const float* qkv, int rows, int pos, bool per_row);
  void EnsureScratch(int rows);
  // logits_ rows [0, rows) from the final LayerNorm's output ln (rows, C).
  void Logits(const float* ln, int rows);

  ModelShape shape_;
  std::vector<ParamSpec> list_;
  std::vector<float> params_;
  std::vector<uint16_t> bf16_;  // the weights' bf16 bits; empty in fp32
  int max_batch_;
  int batch_ = 0, position_ = 0, capacity_ = 0;
  bool started_ = false;
  // (L, batch, NH, capacity, hs): one head's keys are contiguous, so the
  // attention of a new position reads them in one stream.
  std::vector<float> k_cache_, v_cache_;
  std::vector<float> logits_;  // (batch, Vp)
  // Activations of the rows in flight (the prompt's positions, or the batch).
  int scratch_rows_ = 0;
  std::vector<float> x_, ln_, mean_, rstd_, qkv_, atty_, lse_, branch_, fch_,
      fch_gelu_, scores_;
};

void CpuDecoder::EnsureScratch(int rows) {
  if (rows <= scratch_rows_) return;
  scratch_rows_ = rows;
  const int64_t n = rows, C = shape_.channels;
  x_.resize(n * C);
  ln_.resize(n * C);
  mean_.resize(n);
  rstd_.resize(n);
  qkv_.resize(n * 3 * C);
  atty_.resize(n * C);
  lse_.resize(n * shape_.num_heads);
  branch_.resize(n * C);
  fch_.resize(n * 4 * C);
  fch_gelu_.resize(n * 4 * C);
}

void CpuDecoder::StoreKv(int l, const float* qkv, int rows, int pos,
                         bool per_row) {
  const int C = shape_.channels, NH = shape_.num_heads, hs = C / NH;
  for (int r = 0; r < rows; ++r) {
    const int b = per_row ? r : 0;
    const int t = per_row ? pos : pos + r;
    const float* row = qkv + int64_t{r} * 3 * C;
    for (int h = 0; h < NH; ++h) {
      std::memcpy(KCache(l, b, h) + int64_t{t} * hs, row + C + h * hs,
                  sizeof(float) * hs);
      std::memcpy(VCache(l, b, h) + int64_t{t} * hs, row + 2 * C + h * hs,
                  sizeof(float) * hs);
    }
  }
}

void CpuDecoder::Logits(const float* ln, int rows) {
  const int V = shape_.vocab_size, Vp = shape_.padded_vocab_size;
  // The LM head is wte (tied). Its padded rows are computed with the rest and
  // then masked: cheaper than a strided output, and whatever a checkpoint
  // holds there can never be sampled.
  Matmul(logits_.data(), ln, kWte, -1, nullptr, rows, shape_.channels, Vp);
  for (int r = 0; r < rows; ++r) {
    std::fill(logits_.begin() + int64_t{r} * Vp + V,
              logits_.begin() + int64_t{r + 1} * Vp, -INFINITY);
  }
}

absl::Status CpuDecoder::Start(absl::Span<const int32_t> prompt, int batch,
                               int capacity) {
  started_ = false;
  GPT2_RETURN_IF_ERROR(
      CheckStartArgs(shape_, max_batch_, prompt, batch, capacity));
  const int T = static_cast<int>(prompt.size());

  const int L = shape_.num_layers, C = shape_.channels, NH = shape_.num_heads;
  const int hs = C / NH, Vp = shape_.padded_vocab_size;
  batch_ = batch;
  capacity_ = capacity;
  // Not zeroed: only positions already written are ever read.
  k_cache_.resize(int64_t{L} * batch * capacity * C);
  v_cache_.resize(k_cache_.size());
  logits_.resize(int64_t{batch} * Vp);
  EnsureScratch(std::max(T, batch));
  scores_.resize(
      std::max<size_t>(scores_.size(), size_t(batch) * NH * capacity));

  // The prompt once, as one sequence of T positions.
  float* x = x_.data();
  ops::EncoderForward<float>(x, prompt.data(), P(kWte), P(kWpe), 1, T, C);
  for (int l = 0; l < L; ++l) {
    ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(), x,
                                 P(kLn1w, l), P(kLn1b, l), T, C);
    ops::MatmulForward<float>(qkv_.data(), ln_.data(), P(kQkvw, l), P(kQkvb, l),
                              T, C, 3 * C);
    ops::AttentionForward<float>(atty_.data(), lse_.data(), qkv_.data(), 1, T,
                                 C, NH);
    StoreKv(l, qkv_.data(), T, 0, /*per_row=*/false);
    ops::MatmulForward<float>(branch_.data(), atty_.data(), P(kAttprojw, l),
                              P(kAttprojb, l), T, C, C);
    for (int64_t i = 0; i < int64_t{T} * C; ++i) x[i] += branch_[i];
    ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(), x,
                                 P(kLn2w, l), P(kLn2b, l), T, C);
    ops::MatmulForward<float>(fch_.data(), ln_.data(), P(kFcw, l), P(kFcb, l),
                              T, C, 4 * C);
    ops::GeluForward<float>(fch_gelu_.data(), fch_.data(), int64_t{T} * 4 * C);
    ops::MatmulForward<float>(branch_.data(), fch_gelu_.data(), P(kFcprojw, l),
                              P(kFcprojb, l), T, 4 * C, C);
    for (int64_t i = 0; i < int64_t{T} * C; ++i) x[i] += branch_[i];
  }
  // Only the last position's logits are wanted.
  ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(),
                               x + int64_t{T - 1} * C, P(kLnfw), P(kLnfb), 1,
                               C);
  Logits(ln_.data(), 1);

  // Every row starts from the same prompt: copy row 0's cache and logits.
  for (int l = 0; l < L; ++l) {
    for (int b = 1; b < batch; ++b) {
      for (int h = 0; h < NH; ++h) {
        std::memcpy(KCache(l, b, h), KCache(l, 0, h), sizeof(float) * T * hs);
        std::memcpy(VCache(l, b, h), VCache(l, 0, h), sizeof(float) * T * hs);
      }
    }
  }
  for (int b = 1; b < batch; ++b) {
    std::copy(logits_.begin(), logits_.begin() + Vp,
              logits_.begin() + int64_t{b} * Vp);
  }
  position_ = T;
  started_ = true;
  return absl::OkStatus();
}

absl::Status CpuDecoder::Step(absl::Span<const int32_t> tokens) {
  if (!started_) {
    return absl::FailedPreconditionError("Step before a successful Start");
  }
  if (static_cast<int>(tokens.size()) != batch_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Step got ", tokens.size(), " tokens for a batch of ", batch_));
  }
  if (position_ >= capacity_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the cache is full: ", capacity_, " positions (Start's capacity)"));
  }
  GPT2_RETURN_IF_ERROR(CheckTokens(shape_, tokens, "tokens"));

  const int B = batch_, t = position_;
  const int L = shape_.num_layers, C = shape_.channels, NH = shape_.num_heads;
  const int hs = C / NH;
  float* x = x_.data();
  const float* wte = P(kWte);
  const float* wpe = P(kWpe) + int64_t{t} * C;
  for (int b = 0; b < B; ++b) {
    const float* e = wte + int64_t{tokens[b]} * C;
    for (int c = 0; c < C; ++c) x[int64_t{b} * C + c] = e[c] + wpe[c];
  }
  for (int l = 0; l < L; ++l) {
    ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(), x,
                                 P(kLn1w, l), P(kLn1b, l), B, C);
    Matmul(qkv_.data(), ln_.data(), kQkvw, l, P(kQkvb, l), B, C, 3 * C);
    StoreKv(l, qkv_.data(), B, t, /*per_row=*/true);
    cpu::CachedAttention(atty_.data(), qkv_.data(), 3 * int64_t{C},
                         KCache(l, 0, 0), VCache(l, 0, 0), B, NH, hs, capacity_,
                         t + 1, scores_.data());
    Matmul(branch_.data(), atty_.data(), kAttprojw, l, P(kAttprojb, l), B, C,
           C);
    for (int64_t i = 0; i < int64_t{B} * C; ++i) x[i] += branch_[i];
    ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(), x,
                                 P(kLn2w, l), P(kLn2b, l), B, C);
    Matmul(fch_.data(), ln_.data(), kFcw, l, P(kFcb, l), B, C, 4 * C);
    ops::GeluForward<float>(fch_gelu_.data(), fch_.data(), int64_t{B} * 4 * C);
    Matmul(branch_.data(), fch_gelu_.data(), kFcprojw, l, P(kFcprojb, l), B,
           4 * C, C);
    for (int64_t i = 0; i < int64_t{B} * C; ++i) x[i] += branch_[i];
  }
  ops::LayerNormForward<float>(ln_.data(), mean_.data(), rstd_.data(), x,
                               P(kLnfw), P(kLnfb), B, C);
  Logits(ln_.data(), B);
  ++position_;
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Decoder> MakeCpuDecoder(const ModelShape& shape,
                                        std::vector<float> params,
                                        int max_batch, DType weights) {
  return std::make_unique<CpuDecoder>(shape, std::move(params), max_batch,
                                      weights);
}

}  // namespace gpt2::infer
