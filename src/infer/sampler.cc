// Top-k sampling with a bounded heap (one pass over the vocabulary) and a
// softmax over the survivors in double.
#include "src/infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2::infer {
namespace {

// Higher logit first, then lower id: a strict total order on (value, id).
bool Before(const std::pair<float, int>& a, const std::pair<float, int>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  if (params.top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top_k = ", params.top_k, " must be at least 1 (1 is greedy)"));
  }
  if (!(params.temperature > 0.0) || !std::isfinite(params.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature = ", params.temperature,
                     " must be a finite number above 0"));
  }
  return absl::OkStatus();
}

int Sampler::Sample(const float* logits, int vocab_size,
                    const SamplingParams& params, Rng* rng) {
  GPT2_CHECK(vocab_size >= 1 && params.top_k >= 1);
  if (params.top_k == 1) {
    int best = 0;
    float best_value = -INFINITY;
    for (int i = 0; i < vocab_size; ++i) {
      if (logits[i] > best_value) {  // NaN never compares greater
        best_value = logits[i];
        best = i;
      }
    }
    return best;
  }
  const int k = std::min(params.top_k, vocab_size);
  // One pass with a heap of the k best so far, its worst on top: most logits
  // lose a single comparison with that worst (k << V in practice).
  candidates_.clear();
  for (int i = 0; i < vocab_size; ++i) {
    const std::pair<float, int> c{std::isnan(logits[i]) ? -INFINITY : logits[i],
                                  i};
    if (static_cast<int>(candidates_.size()) < k) {
      candidates_.push_back(c);
      if (static_cast<int>(candidates_.size()) == k) {
        std::make_heap(candidates_.begin(), candidates_.end(), Before);
      }
    } else if (Before(c, candidates_.front())) {
      std::pop_heap(candidates_.begin(), candidates_.end(), Before);
      candidates_.back() = c;
      std::push_heap(candidates_.begin(), candidates_.end(), Before);
    }
  }
  std::sort(candidates_.begin(), candidates_.end(), Before);

  // Softmax over the k survivors, in double, relative to the largest.
  const double top = candidates_[0].first;
  if (!std::isfinite(top)) return candidates_[0].second;  // all -inf
  double weights_sum = 0.0;
  std::vector<double>& weights = weights_;
  weights.resize(k);
  for (int i = 0; i < k; ++i) {
    weights[i] = std::exp((candidates_[i].first - top) / params.temperature);
    weights_sum += weights[i];
  }
  const double u = rng->Uniform() * weights_sum;
  double cumulative = 0.0;
  for (int i = 0; i < k; ++i) {
    cumulative += weights[i];
    if (u < cumulative) return candidates_[i].second;
  }
  // Rounding left u at the very top: the last token with any weight.
  for (int i = k - 1; i >= 0; --i) {
    if (weights[i] > 0.0) return candidates_[i].second;
  }
  return candidates_[0].second;
}

void SampleRows(const float* logits, int rows, int64_t stride, int vocab_size,
                const SamplingParams& params, Rng* rngs, int32_t* tokens,
                const bool* active) {
#pragma omp parallel if (rows > 1)
  {
    // One per thread, kept between calls (decoding calls this every token):
    // its buffers are allocated once.
    static thread_local Sampler sampler;
#pragma omp for schedule(static)
    for (int b = 0; b < rows; ++b) {
      if (active != nullptr && !active[b]) continue;
      tokens[b] =
          sampler.Sample(logits + b * stride, vocab_size, params, &rngs[b]);
    }
  }
}

}  // namespace gpt2::infer
