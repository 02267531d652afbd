// The KV-cache decoder written once over the Backend interface, so the CUDA
// backend decodes with the same code as the CPU. Buffers are sized at
// construction for max_batch rows and the model's full context; nothing is
// allocated per step.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/core/bf16.h"
#include "src/core/env.h"
#include "src/core/error.h"
#include "src/infer/decoder.h"
#include "src/ops/sample.h"

namespace gpt2::infer {
namespace {

class BackendDecoder final : public Decoder {
 public:
  BackendDecoder(Backend* backend, DType dtype, const ModelShape& shape,
                 const std::vector<float>& params, int max_batch)
      : backend_(backend),
        dtype_(dtype),
        stats_dtype_(dtype == DType::kBF16 ? DType::kF32 : dtype),
        shape_(shape),
        list_(BuildParamList(shape)),
        max_batch_(max_batch) {
    GPT2_CHECK(max_batch_ >= 1);
    GPT2_CHECK_MSG(static_cast<int64_t>(params.size()) == TotalParams(list_),
                   "got ", params.size(), " parameters, the shape needs ",
                   TotalParams(list_));
    params_ = backend_->Alloc(dtype_, TotalParams(list_));
    const std::vector<char> bytes =
        EncodeHost(std::vector<double>(params.begin(), params.end()), dtype_);
    backend_->Upload(params_, bytes.data());
    const int64_t B = max_batch_, C = shape_.channels, T = shape_.max_seq_len;
    const int64_t L = shape_.num_layers;
    auto alloc = [&](DType t, int64_t n) {
      buffers_.push_back(backend_->Alloc(t, n));
      return buffers_.back();
    };
    tokens_ = alloc(DType::kI32, B);
    seeds_ = alloc(DType::kI32, 2 * B);
    seed_words_.resize(2 * B);
    position_dev_ = alloc(DType::kI32, 1);
    wpe_row_ = alloc(dtype_, C);
    // GPT2_DECODE_GRAPHS=0 runs every op directly even where graphs exist.
    use_graphs_ =
        backend_->SupportsGraphs() && !EnvIs("GPT2_DECODE_GRAPHS", "0");
    // GPT2_DEVICE_SAMPLING=0 draws on the host from logits() instead (the
    // reference; a fallback should the device's draw be suspect).
    device_sampling_ = !EnvIs("GPT2_DEVICE_SAMPLING", "0");
    // GPT2_DECODE_LOOKAHEAD=N (1..kMaxLookahead) sets how many draws one
    // SampleAhead queues before it waits.
    if (const char* ahead = std::getenv("GPT2_DECODE_LOOKAHEAD")) {
      lookahead_ = std::clamp(std::atoi(ahead), 1, kMaxLookahead);
    }
    drawn_ = alloc(DType::kI32, kMaxLookahead * B);
    x_ = alloc(dtype_, B * C);
    x2_ = alloc(dtype_, B * C);
    ln_ = alloc(dtype_, B * C);
    mean_ = alloc(stats_dtype_, B);
    rstd_ = alloc(stats_dtype_, B);
    qkv_ = alloc(dtype_, B * 3 * C);
    atty_ = alloc(dtype_, B * C);
    branch_ = alloc(dtype_, B * C);
    fch_ = alloc(dtype_, B * 4 * C);
    fch_gelu_ = alloc(dtype_, B * 4 * C);
    logits_dev_ = alloc(dtype_, B * shape_.padded_vocab_size);
    k_cache_ = alloc(dtype_, L * B * T * C);
    v_cache_ = alloc(dtype_, L * B * T * C);
  }
  ~BackendDecoder() override {
    backend_->Free(params_);
    for (Tensor t : buffers_) backend_->Free(t);
  }

  std::string name() const override {
    return absl::StrCat(backend_->name(), " (", DTypeName(dtype_), ")");
  }
  const ModelShape& shape() const override { return shape_; }
  int max_batch() const override { return max_batch_; }
  const float* logits() const override {
    if (!host_logits_valid_) ReadLogits();
    return logits_.data();
  }
  int batch() const override { return batch_; }
  int position() const override { return position_; }
  int capacity() const override { return capacity_; }

  absl::Status Start(absl::Span<const int32_t> prompt, int batch,
                     int capacity) override {
    GPT2_RETURN_IF_ERROR(
        CheckStartArgs(shape_, max_batch_, prompt, batch, capacity));
    capacity_ = capacity;
    position_ = 0;
    // The prompt runs once, as row 0; the other rows get copies of its cache.
    batch_ = 1;
    for (int32_t token : prompt) RunPosition(&token);
    const int64_t C = shape_.channels, T = shape_.max_seq_len;
    for (int l = 0; l < shape_.num_layers; ++l) {
      for (Tensor cache : {k_cache_, v_cache_}) {
        const Tensor row0 = cache.Slice(l * max_batch_ * T * C, position_ * C);
        for (int b = 1; b < batch; ++b) {
          backend_->Copy(
              cache.Slice((l * max_batch_ + b) * T * C, position_ * C), row0);
        }
      }
    }
    // Row 0's logits for every row, on the device (where they are sampled).
    const int64_t Vp = shape_.padded_vocab_size;
    for (int b = 1; b < batch; ++b) {
      backend_->Copy(logits_dev_.Slice(b * Vp, Vp), logits_dev_.Slice(0, Vp));
    }
    batch_ = batch;
    host_logits_valid_ = false;
    drawn_on_device_ = false;
    return absl::OkStatus();
  }

  absl::Status SampleNext(const SamplingParams& params,
                          absl::Span<const uint64_t> seeds,
                          absl::Span<int32_t> tokens) override {
    if (!device_sampling_) return Decoder::SampleNext(params, seeds, tokens);
    GPT2_RETURN_IF_ERROR(CheckSampleArgs(seeds, tokens));
    GPT2_RETURN_IF_ERROR(ValidateSamplingParams(params));
    QueueDraw(params, seeds);
    backend_->Download(tokens.data(), tokens_.Slice(0, batch_));
    drawn_on_device_ = true;
    return absl::OkStatus();
  }

  // Every draw and feed queued on the device, then one download of them all:
  // the host waits once for n tokens instead of once per token.
  absl::Status SampleAhead(const SamplingParams& params,
                           absl::Span<const uint64_t> seeds, int n,
                           absl::Span<int32_t> tokens) override {
    if (!device_sampling_ || n > kMaxLookahead) {
      return Decoder::SampleAhead(params, seeds, n, tokens);
    }
    GPT2_RETURN_IF_ERROR(CheckAheadArgs(seeds, n, tokens));
    GPT2_RETURN_IF_ERROR(ValidateSamplingParams(params));
    const int64_t B = batch_;
    for (int k = 0; k < n; ++k) {
      QueueDraw(params, seeds);
      backend_->Copy(drawn_.Slice(k * B, B), tokens_.Slice(0, B));
      if (k + 1 < n) RunPosition(nullptr);  // the draw, fed where it is
    }
    backend_->Download(tokens.data(), drawn_.Slice(0, n * B));
    host_logits_valid_ = false;
    drawn_on_device_ = true;  // tokens_ holds the last draw
    return absl::OkStatus();
  }
  int lookahead() const override { return device_sampling_ ? lookahead_ : 1; }

  absl::Status StepSampled() override {
    if (!device_sampling_) return Decoder::StepSampled();
    if (!drawn_on_device_) {
      return absl::FailedPreconditionError("StepSampled without a SampleNext");
    }
    if (position_ >= capacity_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the cache is full (", capacity_, " positions)"));
    }
    RunPosition(nullptr);  // the tokens are in tokens_ already
    host_logits_valid_ = false;
    drawn_on_device_ = false;
    return absl::OkStatus();
  }

  absl::Status Step(absl::Span<const int32_t> tokens) override {
    if (batch_ == 0) return absl::FailedPreconditionError("Step before Start");
    if (position_ >= capacity_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the cache is full (", capacity_, " positions)"));
    }
    if (static_cast<int>(tokens.size()) != batch_) {
      return absl::InvalidArgumentError(
          absl::StrCat("got ", tokens.size(), " tokens for ", batch_, " rows"));
    }
    GPT2_RETURN_IF_ERROR(CheckTokens(shape_, tokens, "tokens"));
    RunPosition(tokens.data());
    host_logits_valid_ = false;
    drawn_on_device_ = false;
    return absl::OkStatus();
  }

 private:
  static constexpr int kMaxLookahead = 16;

  // Queues the draw of each row's next token into tokens_ (top-k on the
  // device), sending the seeds first if they changed (they stay the same over
  // a request).
  void QueueDraw(const SamplingParams& params,
                 absl::Span<const uint64_t> seeds) {
    const int B = batch_, Vp = shape_.padded_vocab_size;
    if (!std::equal(seeds.begin(), seeds.end(), uploaded_seeds_.begin(),
                    uploaded_seeds_.end())) {
      for (int b = 0; b < B; ++b) SplitSeed(seeds[b], &seed_words_[2 * b]);
      backend_->Upload(seeds_.Slice(0, 2 * int64_t{B}), seed_words_.data());
      uploaded_seeds_.assign(seeds.begin(), seeds.end());
    }
    // position_dev_ holds the last position fed: position() - 1.
    backend_->SampleTopK(
        tokens_.Slice(0, B), logits_dev_.Slice(0, int64_t{B} * Vp),
        seeds_.Slice(0, 2 * int64_t{B}), position_dev_, B, shape_.vocab_size,
        Vp, params.top_k, params.temperature, params.top_p);
  }

  Tensor Param(int index, int layer = -1) const {
    const ParamSpec& p = list_[index];
    if (layer < 0) return params_.Slice(p.offset, p.numel);
    return params_.Slice(p.offset + layer * p.layer_numel(), p.layer_numel());
  }

  // One position for batch_ rows: tokens (batch_) in host memory, or null
  // where tokens_ holds them already (drawn on the device). What
  // changes from position to position (tokens, the position, wpe's row) is
  // copied into fixed device buffers first, so the ops themselves are the
  // same every time: on CUDA they are recorded once per batch size as a graph
  // and replayed with one launch.
  void RunPosition(const int32_t* tokens) {
    const int B = batch_, C = shape_.channels;
    const int32_t pos = position_;
    if (tokens != nullptr) backend_->Upload(tokens_.Slice(0, B), tokens);
    backend_->Upload(position_dev_, &pos);
    backend_->Copy(wpe_row_, Param(kWpe).Slice(int64_t{pos} * C, C));
    auto it = graph_of_batch_.find(B);
    if (!use_graphs_ || it == graph_of_batch_.end()) {
      // The first position of a batch size runs directly, so that lazy set-up
      // (cuBLASLt plans, module loading) happens outside any recording.
      QueueForward(B);
      if (use_graphs_) graph_of_batch_.emplace(B, -1);
    } else {
      if (it->second < 0) {
        backend_->BeginGraph();
        QueueForward(B);
        it->second = backend_->EndGraph();
      }
      backend_->ReplayGraph(it->second);
    }
    ++position_;
  }

  // The forward pass of one position for B rows, from tokens_, position_dev_
  // and wpe_row_ to logits_dev_.
  void QueueForward(int B) {
    const int C = shape_.channels, NH = shape_.num_heads;
    const int64_t T = shape_.max_seq_len;
    Tensor tok = tokens_.Slice(0, B), x = x_.Slice(0, int64_t{B} * C),
           x2 = x2_.Slice(0, int64_t{B} * C), ln = ln_.Slice(0, int64_t{B} * C),
           mean = mean_.Slice(0, B), rstd = rstd_.Slice(0, B),
           qkv = qkv_.Slice(0, int64_t{B} * 3 * C),
           atty = atty_.Slice(0, int64_t{B} * C),
           branch = branch_.Slice(0, int64_t{B} * C),
           fch = fch_.Slice(0, int64_t{B} * 4 * C),
           fch_gelu = fch_gelu_.Slice(0, int64_t{B} * 4 * C);
    // wpe's row for this position, as a one-row table with T = 1.
    backend_->EncoderForward(x, tok, Param(kWte), wpe_row_, B, 1, C);
    // The fused ops (the same as training's): each residual add with the
    // LayerNorm after it, the MLP's GELU with its matmul. Fewer launches per
    // token matter at batch 1.
    // Each residual add's LayerNorm is fused, in turn, into the matmul that
    // reads it (ResidualLayerNormMatmul): 5 launches per layer.
    const int L = shape_.num_layers;
    backend_->LayerNormForward(ln, mean, rstd, x, Param(kLn1w, 0),
                               Param(kLn1b, 0), B, C);
    backend_->MatmulForward(qkv, ln, Param(kQkvw, 0), Param(kQkvb, 0), B, C,
                            3 * C);
    const Tensor logits =
        logits_dev_.Slice(0, int64_t{B} * shape_.padded_vocab_size);
    for (int l = 0; l < L; ++l) {
      const int64_t layer_cache = l * max_batch_ * T * C;
      backend_->AttentionDecode(atty, k_cache_.Slice(layer_cache, B * T * C),
                                v_cache_.Slice(layer_cache, B * T * C), qkv, B,
                                static_cast<int>(T), position_dev_, C, NH);
      backend_->MatmulForward(branch, atty, Param(kAttprojw, l),
                              Param(kAttprojb, l), B, C, C);
      // x2 = x + branch, LayerNorm 2, the MLP's first matmul and GELU.
      backend_->ResidualLayerNormMatmul(
          x2, fch, fch_gelu, ln, mean, rstd, x, branch, Param(kLn2w, l),
          Param(kLn2b, l), Param(kFcw, l), Param(kFcb, l), B, C, 4 * C);
      backend_->MatmulForward(branch, fch_gelu, Param(kFcprojw, l),
                              Param(kFcprojb, l), B, 4 * C, C);
      // x = x2 + branch, then the next layer's LayerNorm 1 and qkv matmul;
      // after the last layer, the final LayerNorm and the logits.
      if (l + 1 < L) {
        backend_->ResidualLayerNormMatmul(
            x, qkv, Tensor{}, ln, mean, rstd, x2, branch, Param(kLn1w, l + 1),
            Param(kLn1b, l + 1), Param(kQkvw, l + 1), Param(kQkvb, l + 1), B, C,
            3 * C);
      } else {
        backend_->ResidualLayerNormMatmul(x, logits, Tensor{}, ln, mean, rstd,
                                          x2, branch, Param(kLnfw),
                                          Param(kLnfb), Param(kWte), Tensor{},
                                          B, C, shape_.padded_vocab_size);
      }
    }
  }

  // Logits to the host as floats, padded entries -inf, converted straight
  // from the storage type, rows in parallel (at batch 8, 400K values).
  void ReadLogits() const {
    const int Vp = shape_.padded_vocab_size, V = shape_.vocab_size;
    const int rows = batch_;
    const size_t elem = DTypeSize(dtype_);
    logits_bytes_.resize(size_t{static_cast<size_t>(rows)} * Vp * elem);
    backend_->Download(logits_bytes_.data(),
                       logits_dev_.Slice(0, int64_t{rows} * Vp));
    logits_.resize(int64_t{batch_} * Vp);
    const bool bf16 = dtype_ == DType::kBF16;
    GPT2_CHECK(bf16 || dtype_ == DType::kF32);
#pragma omp parallel for if (batch_ > 1) schedule(static)
    for (int b = 0; b < batch_; ++b) {
      const char* src =
          logits_bytes_.data() + size_t{static_cast<size_t>(b)} * Vp * elem;
      float* dst = logits_.data() + int64_t{b} * Vp;
      if (bf16) {
        const auto* bits = reinterpret_cast<const uint16_t*>(src);
        for (int v = 0; v < V; ++v) dst[v] = Bf16BitsToFloat(bits[v]);
      } else {
        std::memcpy(dst, src, sizeof(float) * V);
      }
      std::fill(dst + V, dst + Vp, -std::numeric_limits<float>::infinity());
    }
    host_logits_valid_ = true;
  }

  Backend* backend_;
  DType dtype_, stats_dtype_;
  ModelShape shape_;
  std::vector<ParamSpec> list_;
  int max_batch_;
  int batch_ = 0, position_ = 0, capacity_ = 0;
  Tensor params_;
  std::vector<Tensor> buffers_;
  Tensor tokens_, seeds_, position_dev_, wpe_row_, x_, x2_, ln_, mean_, rstd_,
      qkv_, atty_, branch_, fch_, fch_gelu_, logits_dev_;
  bool use_graphs_ = false;
  bool device_sampling_ = true;
  int lookahead_ = kMaxLookahead;
  Tensor drawn_;  // SampleAhead's draws, (kMaxLookahead, max_batch)
  // Batch size -> recorded graph; -1 after the first, direct, run.
  std::map<int, int> graph_of_batch_;
  Tensor k_cache_, v_cache_;              // (L, max_batch, max_seq_len, C)
  std::vector<int32_t> seed_words_;       // SampleNext's seeds, as uploaded
  std::vector<uint64_t> uploaded_seeds_;  // what seeds_ holds
  bool drawn_on_device_ = false;          // tokens_ holds SampleNext's draw
  // The host copy of the logits, made when logits() asks (decoding with
  // SampleNext never does).
  mutable bool host_logits_valid_ = false;
  mutable std::vector<float> logits_;       // (batch, Vp) host
  mutable std::vector<char> logits_bytes_;  // their download, storage type
};

}  // namespace

std::unique_ptr<Decoder> MakeBackendDecoder(Backend* backend, DType dtype,
                                            const ModelShape& shape,
                                            const std::vector<float>& params,
                                            int max_batch) {
  return std::make_unique<BackendDecoder>(backend, dtype, shape, params,
                                          max_batch);
}

}  // namespace gpt2::infer
