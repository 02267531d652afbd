// Sampling and generation: the reference top-k draw (src/ops/sample.h) is the
// argmax at k = 1, never draws padded vocab entries or NaN, follows the top-k
// softmax; the same seed gives the same tokens (and a different seed
// different ones), and requests are validated.
#include "src/infer/generate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <vector>

#include "gtest/gtest.h"
#include "src/core/rng.h"
#include "src/infer/decoder.h"
#include "src/infer/model_source.h"
#include "src/infer/sampler.h"
#include "src/ops/sample.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

std::vector<float> RandomLogits(int n, uint64_t seed, double scale = 3.0) {
  const auto d = testing::RandomVector(n, seed, scale);
  return std::vector<float>(d.begin(), d.end());
}

// The reference draw (src/ops/sample.h) with a uniform from its hash.
int Draw(const std::vector<float>& logits, int V, SamplingParams params,
         uint64_t seed, int64_t counter) {
  return cpu::SampleTopKRow(logits.data(), V, params.top_k, params.temperature,
                            params.top_p, SampleUniform(seed, counter));
}

TEST(Sampler, TopKOneIsArgmax) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const std::vector<float> logits = RandomLogits(1000, seed);
    const int argmax = static_cast<int>(
        std::max_element(logits.begin(), logits.end()) - logits.begin());
    for (double temperature : {0.01, 1.0, 100.0}) {
      EXPECT_EQ(Draw(logits, 1000, {1, temperature}, seed, 7), argmax);
    }
  }
}

TEST(Sampler, TiesGoToTheLowerIdAndNanNeverWins) {
  const std::vector<float> logits = {1.0f, 5.0f, 5.0f, NAN, 5.0f};
  EXPECT_EQ(Draw(logits, 5, {1, 1.0}, 1, 0), 1);
  // Top-2 among three equal values keeps ids 1 and 2 only; both come out.
  std::map<int, int> counts;
  for (int i = 0; i < 400; ++i) ++counts[Draw(logits, 5, {2, 1.0}, 1, i)];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[2], 0);
  // All of them: NaN and the rest keep no weight but 1.0's.
  for (int i = 0; i < 400; ++i) {
    const int t = Draw(logits, 5, {5, 1.0}, 2, i);
    ASSERT_NE(t, 3) << "NaN drawn";
  }
  // Nothing but -inf and NaN: token 0.
  const std::vector<float> dead = {-INFINITY, NAN, -INFINITY};
  EXPECT_EQ(Draw(dead, 3, {50, 1.0}, 3, 0), 0);
  // +inf wins outright.
  const std::vector<float> inf = {0.0f, INFINITY, 3.0f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Draw(inf, 3, {3, 1.0}, 4, i), 1);
}

TEST(Sampler, PaddedVocabIsNeverSampled) {
  // The padded tail holds the largest logits by far; only ids < V may come
  // out, whatever k.
  const int V = 100, Vp = 128;
  std::vector<float> logits = RandomLogits(Vp, 3, 1.0);
  for (int i = V; i < Vp; ++i) logits[i] = 1000.0f;
  for (int k : {1, 5, 100, 128, 100000}) {
    for (int i = 0; i < 300; ++i) {
      const int t = Draw(logits, V, {k, 2.0}, 5, i);
      ASSERT_GE(t, 0);
      ASSERT_LT(t, V) << "k = " << k;
    }
  }
}

TEST(Sampler, FollowsTheTopKSoftmax) {
  // Top-2 of {log 1, log 3, -5, ...}: ids 0 and 1 with p = 1/4 and 3/4; at
  // temperature 2 the odds become 1 : sqrt(3). Draws over counters of one
  // seed, and over seeds at one counter.
  std::vector<float> logits(10, -5.0f);
  logits[0] = 0.0f;
  logits[1] = static_cast<float>(std::log(3.0));
  for (double temperature : {1.0, 2.0}) {
    for (bool over_counters : {true, false}) {
      std::map<int, int> counts;
      const int n = 20000;
      for (int i = 0; i < n; ++i) {
        ++counts[over_counters ? Draw(logits, 10, {2, temperature}, 42, i)
                               : Draw(logits, 10, {2, temperature}, i, 9)];
      }
      ASSERT_EQ(counts.size(), 2u);
      const double p1 = std::pow(3.0, 1.0 / temperature) /
                        (1 + std::pow(3.0, 1.0 / temperature));
      // 5 standard deviations of a binomial proportion.
      EXPECT_NEAR(counts[1] / double(n), p1, 5 * std::sqrt(p1 * (1 - p1) / n));
    }
  }
}

// Nucleus sampling: probabilities 0.5, 0.25, 0.125, 0.0625, ... (logits
// -i log 2, ids shuffled so that rank and id order differ). top_p 0.5 keeps the
// first alone; 0.6 the first two (0.75 >= 0.6), drawn 2 : 1; 0.75 exactly the
// same two; 0.76 three. With top-k 2 first, top_p 0.9 of the two kept (0.75 /
// 0.75) still keeps both.
TEST(Sampler, TopPKeepsTheShortestPrefixHoldingP) {
  const int V = 12;
  const int order[V] = {7, 2, 11, 0, 5, 9, 1, 4, 10, 3, 8, 6};  // id of rank r
  std::vector<float> logits(V);
  for (int r = 0; r < V; ++r) {
    logits[order[r]] = static_cast<float>(-r * std::log(2.0));
  }
  auto counts_of = [&](SamplingParams params) {
    std::map<int, int> counts;
    for (int i = 0; i < 20000; ++i) ++counts[Draw(logits, V, params, 5, i)];
    return counts;
  };
  const auto half = counts_of({V, 1.0, 0.5});
  ASSERT_EQ(half.size(), 1u);
  EXPECT_EQ(half.begin()->first, order[0]);
  for (double p : {0.6, 0.75}) {
    auto two = counts_of({V, 1.0, p});
    ASSERT_EQ(two.size(), 2u) << p;
    ASSERT_TRUE(two.count(order[0]) && two.count(order[1])) << p;
    const double share = two[order[0]] / 20000.0;  // 2/3
    EXPECT_NEAR(share, 2.0 / 3, 5 * std::sqrt(2.0 / 9 / 20000)) << p;
  }
  EXPECT_EQ(counts_of({V, 1.0, 0.76}).size(), 3u);
  EXPECT_EQ(counts_of({2, 1.0, 0.9}).size(), 2u);
  EXPECT_EQ(counts_of({V, 1.0, 1.0}).size(), static_cast<size_t>(V));
  // Temperature first: at T = 0.5 the probabilities are 4^-r (normalised:
  // 0.75, 0.1875, ...), so 0.7 keeps the first alone.
  EXPECT_EQ(counts_of({V, 0.5, 0.7}).size(), 1u);
  // Ties: four ids share the top logit (0.25 each of the top four's mass);
  // 0.3 of the whole takes two of them, the two lower ids.
  std::vector<float> tied(8, -50.0f);
  for (int id : {6, 1, 4, 3}) tied[id] = 1.0f;
  std::map<int, int> tie_counts;
  for (int i = 0; i < 4000; ++i) {
    ++tie_counts[Draw(tied, 8, {8, 1.0, 0.3}, 9, i)];
  }
  ASSERT_EQ(tie_counts.size(), 2u);
  EXPECT_TRUE(tie_counts.count(1) && tie_counts.count(3));
  // top_p = 1 draws exactly what the draw without nucleus did: same tokens.
  const std::vector<float> random = RandomLogits(500, 3);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(Draw(random, 500, {40, 0.8, 1.0}, 11, i),
              Draw(random, 500, {40, 0.8}, 11, i));
  }
}

// top_k >= V skips the heap and ranks the whole row by a radix sort; it must
// draw what the heap and comparison sort draw. Logits on a coarse grid (ties
// everywhere, at every nucleus edge) and one -inf, their unique minimum: top_k
// V - 1 drops exactly that id, whose weight is 0, so the draws are the same.
TEST(Sampler, WholeVocabTopPDrawsAsTheHeapDoes) {
  const int V = 3000;
  std::vector<float> logits = RandomLogits(V, 17);
  for (float& x : logits) x = std::floor(x * 2.0f) / 2.0f;
  logits[1234] = -INFINITY;
  for (double p : {0.3, 0.7, 0.95}) {
    for (int i = 0; i < 300; ++i) {
      ASSERT_EQ(Draw(logits, V, {V, 1.0, p}, 13, i),
                Draw(logits, V, {V - 1, 1.0, p}, 13, i))
          << "top_p " << p << " draw " << i;
    }
  }
}

TEST(Sampler, UniformsAreUniformAndDistinct) {
  // The counter hash: mean 1/2, variance 1/12, and neighbouring counters and
  // seeds give different values.
  const int n = 100000;
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < n; ++i) {
    const double u = SampleUniform(1234, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(sum_sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  EXPECT_NE(SampleUniform(1, 0), SampleUniform(1, 1));
  EXPECT_NE(SampleUniform(1, 0), SampleUniform(2, 0));
  EXPECT_EQ(JoinSeed(std::vector<int32_t>{-5, 77}.data()),
            (uint64_t{77} << 32) | 0xFFFFFFFBull);
  int32_t words[2];
  SplitSeed(0xDEADBEEF12345678ull, words);
  EXPECT_EQ(JoinSeed(words), 0xDEADBEEF12345678ull);
}

TEST(Sampler, Validation) {
  EXPECT_TRUE(ValidateSamplingParams({1, 1.0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({0, 1.0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({-3, 1.0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({50, 0.0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({50, -1.0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({50, NAN}).ok());
  EXPECT_FALSE(ValidateSamplingParams({50, INFINITY}).ok());
  EXPECT_NE(ValidateSamplingParams({0, 1.0}).message().find("top_k"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({5, 0.0}).message().find("temperature"),
            std::string::npos);
  EXPECT_TRUE(ValidateSamplingParams({5, 1.0, 1.0}).ok());
  EXPECT_TRUE(ValidateSamplingParams({5, 1.0, 1e-9}).ok());
  for (double top_p : {0.0, -0.5, 1.0000001, double(NAN), double(INFINITY)}) {
    const absl::Status s = ValidateSamplingParams({5, 1.0, top_p});
    EXPECT_FALSE(s.ok()) << top_p;
    EXPECT_NE(s.message().find("top_p"), std::string::npos) << s;
  }
}

// A small random model with a vocab that includes GPT-2's end-of-text id is
// too big for a quick test; this one uses V = 300 and its own end id.
class GenerateTest : public ::testing::Test {
 protected:
  GenerateTest()
      : model_(RandomInferenceModel(ModelShape{2, 2, 16, 24, 300, 320}, 9)) {
    // GPT-2's init makes near-uniform logits; scale up for peaked ones.
    for (float& p : model_.params) p *= 8.0f;
    decoder_ = MakeCpuDecoder(model_.shape, model_.params, 8);
  }
  GenerateRequest Request() const {
    GenerateRequest r;
    r.prompt = {1, 2, 3};
    r.num_samples = 4;
    r.max_new_tokens = 10;
    r.sampling = {50, 1.0};
    r.seed = 1234;
    r.end_of_text = 299;
    return r;
  }
  std::vector<std::vector<int32_t>> Run(const GenerateRequest& r) {
    auto result = Generate(decoder_.get(), r);
    EXPECT_TRUE(result.ok()) << result.status();
    std::vector<std::vector<int32_t>> out;
    if (result.ok()) {
      for (const auto& s : result->samples) out.push_back(s.tokens);
    }
    return out;
  }
  InferenceModel model_;
  std::unique_ptr<Decoder> decoder_;
};

TEST_F(GenerateTest, SameSeedSameTokensOtherSeedOtherTokens) {
  GenerateRequest r = Request();
  r.stop_at_end_of_text = false;
  const auto a = Run(r), b = Run(r);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 4u);
  for (const auto& s : a) EXPECT_EQ(s.size(), 10u);
  EXPECT_NE(a[0], a[1]) << "samples of one request share a stream";
  r.seed = 1235;
  EXPECT_NE(Run(r), a);
  // Sample i does not depend on how many samples run beside it.
  r.seed = 1234;
  r.num_samples = 1;
  const auto single = Run(r);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0], a[0]);
}

// The progress hook sees the samples grow, batch of draws by batch (one
// token at a time on the CPU decoder), ending as the result does; returning
// false stops the generation there.
TEST_F(GenerateTest, ProgressSeesTheSamplesGrowAndCanStopThem) {
  GenerateRequest r = Request();
  r.stop_at_end_of_text = false;
  std::vector<std::vector<GeneratedSample>> seen;
  auto result = Generate(decoder_.get(), r,
                         [&](const std::vector<GeneratedSample>& samples) {
                           seen.push_back(samples);
                           return true;
                         });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(seen.size(), 10u);  // lookahead 1: one call per token
  for (size_t call = 0; call < seen.size(); ++call) {
    ASSERT_EQ(seen[call].size(), 4u);
    for (int i = 0; i < 4; ++i) {
      const auto& tokens = seen[call][i].tokens;
      ASSERT_EQ(tokens.size(), call + 1);
      const auto& final_tokens = result->samples[i].tokens;
      EXPECT_TRUE(
          std::equal(tokens.begin(), tokens.end(), final_tokens.begin()));
    }
  }
  int calls = 0;
  auto stopped = Generate(
      decoder_.get(), r,
      [&](const std::vector<GeneratedSample>& samples) { return ++calls < 3; });
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
  // The decoder is fine for the next request.
  EXPECT_EQ(Run(r)[0], result->samples[0].tokens);
}

TEST_F(GenerateTest, TopKOneIsGreedyDecoding) {
  GenerateRequest r = Request();
  r.sampling.top_k = 1;
  r.stop_at_end_of_text = false;
  const auto samples = Run(r);
  // Every sample is the same greedy path, whatever the seed.
  for (const auto& s : samples) EXPECT_EQ(s, samples[0]);
  r.seed = 99;
  EXPECT_EQ(Run(r)[0], samples[0]);
  // And it is the argmax at each step.
  std::vector<int32_t> seq = r.prompt;
  for (int32_t expected : samples[0]) {
    auto d = MakeCpuDecoder(model_.shape, model_.params, 1);
    ASSERT_TRUE(d->Start(seq, 1, static_cast<int>(seq.size())).ok());
    const float* l = d->logits();
    EXPECT_EQ(std::max_element(l, l + model_.shape.vocab_size) - l, expected);
    seq.push_back(expected);
  }
}

TEST_F(GenerateTest, StopsAtTheContextAndAtEndOfText) {
  GenerateRequest r = Request();
  r.max_new_tokens = 1000;
  r.stop_at_end_of_text = false;
  auto result = Generate(decoder_.get(), r);
  ASSERT_TRUE(result.ok());
  for (const auto& s : result->samples) {
    EXPECT_EQ(s.tokens.size(), 21u);  // 24 - 3 prompt tokens
    EXPECT_EQ(s.finish, FinishReason::kContext);
  }
  EXPECT_EQ(result->new_tokens, 4 * 21);
  EXPECT_EQ(result->decode_steps, 20);

  // Make the end id the greedy choice after the prompt: every sample stops
  // at once with no tokens.
  const auto first = Run([&] {
    GenerateRequest g = Request();
    g.sampling.top_k = 1;
    g.max_new_tokens = 1;
    return g;
  }());
  r = Request();
  r.end_of_text = first[0][0];
  r.sampling.top_k = 1;
  result = Generate(decoder_.get(), r);
  ASSERT_TRUE(result.ok());
  for (const auto& s : result->samples) {
    EXPECT_TRUE(s.tokens.empty());
    EXPECT_EQ(s.finish, FinishReason::kEndOfText);
  }
  EXPECT_EQ(result->decode_steps, 0);
}

// Stop sequences, on a GPT-2-vocabulary model and tokenizer: a sample whose
// text reaches one ends there (its tokens those of the run without stops up to
// the one that completed it; its text cut before the sequence); the others
// are as they were; a request with stops needs the tokenizer.
TEST(GenerateStop, EndsTheSampleBeforeTheSequence) {
  auto tokenizer = testing::TestTokenizer();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  InferenceModel model =
      RandomInferenceModel(ModelShape{1, 2, 16, 64, 50257, 50304}, 3);
  auto decoder = MakeCpuDecoder(model.shape, model.params, 4);
  GenerateRequest r;
  r.prompt = {464, 3290};
  r.num_samples = 3;
  r.max_new_tokens = 30;
  r.sampling = {200, 1.0};
  r.stop_at_end_of_text = false;
  auto plain = Generate(decoder.get(), r, nullptr, &*tokenizer);
  ASSERT_TRUE(plain.ok()) << plain.status();
  std::vector<std::string> texts;
  for (const auto& s : plain->samples) {
    texts.push_back(*SampleText(*tokenizer, s));
    EXPECT_EQ(s.text_bytes, -1);
  }
  // Sample 1's bytes 20..23 (four bytes ending inside its text), where they
  // first appear in it.
  ASSERT_GT(texts[1].size(), 30u);
  const std::string stop = texts[1].substr(20, 4);
  const size_t at = texts[1].find(stop);
  r.stop = {"\x01never", stop};
  auto stopped = Generate(decoder.get(), r, nullptr, &*tokenizer);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  for (int b = 0; b < 3; ++b) {
    const GeneratedSample& s = stopped->samples[b];
    const size_t first = texts[b].find(stop);
    if (first == std::string::npos) {
      EXPECT_EQ(s.tokens, plain->samples[b].tokens) << b;
      EXPECT_EQ(s.finish, FinishReason::kLength) << b;
      continue;
    }
    EXPECT_EQ(s.finish, FinishReason::kStop) << b;
    EXPECT_EQ(s.text_bytes, static_cast<int64_t>(first)) << b;
    EXPECT_EQ(*SampleText(*tokenizer, s), texts[b].substr(0, first)) << b;
    // Its tokens: the plain run's, up to the first whose text holds the stop.
    ASSERT_LE(s.tokens.size(), plain->samples[b].tokens.size()) << b;
    EXPECT_TRUE(std::equal(s.tokens.begin(), s.tokens.end(),
                           plain->samples[b].tokens.begin()))
        << b;
    const std::string upto =
        tokenizer->Decode(std::vector<int>(s.tokens.begin(), s.tokens.end()));
    const std::string before = tokenizer->Decode(
        std::vector<int>(s.tokens.begin(), s.tokens.end() - 1));
    EXPECT_NE(upto.find(stop), std::string::npos) << b;
    EXPECT_EQ(before.find(stop), std::string::npos) << b;
  }
  EXPECT_EQ(stopped->samples[1].text_bytes, static_cast<int64_t>(at));
  EXPECT_EQ(std::string(FinishReasonName(FinishReason::kStop)), "stop");
  // Stops need the tokenizer; an empty one is refused.
  EXPECT_FALSE(Generate(decoder.get(), r).ok());
  r.stop = {""};
  EXPECT_FALSE(Generate(decoder.get(), r, nullptr, &*tokenizer).ok());
}

TEST_F(GenerateTest, NeverSamplesPaddedIds) {
  // Give the padded rows of wte huge weights, so their logits would win if
  // they were not masked.
  InferenceModel m = model_;
  const int C = m.shape.channels;
  for (int v = m.shape.vocab_size; v < m.shape.padded_vocab_size; ++v) {
    for (int c = 0; c < C; ++c) m.params[int64_t{v} * C + c] = 50.0f;
  }
  auto d = MakeCpuDecoder(m.shape, m.params, 8);
  GenerateRequest r = Request();
  r.num_samples = 8;
  r.max_new_tokens = 20;
  r.sampling = {1000, 5.0};
  r.stop_at_end_of_text = false;
  auto result = Generate(d.get(), r);
  ASSERT_TRUE(result.ok());
  for (const auto& s : result->samples) {
    for (int32_t t : s.tokens) ASSERT_LT(t, m.shape.vocab_size);
  }
}

TEST_F(GenerateTest, RequestValidation) {
  const ModelShape& shape = model_.shape;
  auto check = [&](auto mutate, const char* field) {
    GenerateRequest r = Request();
    mutate(r);
    const absl::Status s = ValidateGenerateRequest(shape, 8, r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
    // Generate itself refuses the same request.
    EXPECT_EQ(Generate(decoder_.get(), r).status().code(),
              absl::StatusCode::kInvalidArgument);
  };
  EXPECT_TRUE(ValidateGenerateRequest(shape, 8, Request()).ok());
  check([](GenerateRequest& r) { r.prompt.clear(); }, "prompt");
  check([](GenerateRequest& r) { r.prompt.assign(24, 1); }, "prompt");
  check([](GenerateRequest& r) { r.prompt = {1, 300}; }, "prompt");
  check([](GenerateRequest& r) { r.num_samples = 0; }, "num_samples");
  check([](GenerateRequest& r) { r.num_samples = 9; }, "num_samples");
  check([](GenerateRequest& r) { r.max_new_tokens = 0; }, "max_new_tokens");
  check([](GenerateRequest& r) { r.sampling.top_k = 0; }, "top_k");
  check([](GenerateRequest& r) { r.sampling.temperature = 0; }, "temperature");
  // A prompt of max_seq_len - 1 tokens leaves room for exactly one.
  GenerateRequest r = Request();
  r.prompt.assign(23, 1);
  EXPECT_EQ(NewTokenLimit(shape, r), 1);
  auto result = Generate(decoder_.get(), r);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->samples[0].tokens.size() +
                (result->samples[0].finish == FinishReason::kEndOfText),
            1u);
}

}  // namespace
}  // namespace gpt2::infer
