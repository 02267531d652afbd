// The KV-cache decoder against the training model: for every position, the
// logits a Step produces must equal those of a full Gpt2Model::Forward over
// the whole sequence (CPU backend, fp32). Random weights far larger than
// GPT-2's init make attention peaky and the logits large, so a wrong cache
// entry or position cannot hide in rounding.
#include "src/infer/decoder.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/backend.h"
#include "src/core/bf16.h"
#include "src/core/rng.h"
#include "src/infer/cpu_kernels.h"
#include "src/model/gpt2.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

constexpr double kTolerance = 1e-4;

// Random parameters around GPT-2's structure: LayerNorm weights near 1,
// everything else N(0, scale).
std::vector<double> RandomParams(const ModelShape& shape, uint64_t seed,
                                 double scale) {
  const auto list = BuildParamList(shape);
  std::vector<double> p = testing::RandomVector(TotalParams(list), seed, scale);
  for (const ParamSpec& spec : list) {
    if (spec.name == "ln1w" || spec.name == "ln2w" || spec.name == "lnfw") {
      for (int64_t i = 0; i < spec.numel; ++i) p[spec.offset + i] += 1.0;
    }
  }
  return p;
}

// Full forwards of the training model: logits (B, T, Vp) as doubles.
class Reference {
 public:
  Reference(const ModelShape& shape, const std::vector<double>& params,
            int max_batch)
      : backend_(MakeCpuBackend()),
        model_(backend_.get(), shape, DType::kF32, max_batch,
               shape.max_seq_len) {
    model_.SetParams(params);
  }
  std::vector<float> Logits(const std::vector<int32_t>& tokens, int B, int T) {
    model_.Forward(tokens.data(), nullptr, B, T, 0.0, false);
    std::vector<float> out(model_.logits().numel);
    backend_->Download(out.data(), model_.logits());
    return out;
  }

 private:
  std::unique_ptr<Backend> backend_;
  Gpt2Model model_;
};

// max |a - b| over the real vocab of one row; padded entries must be -inf.
double MaxDiffRow(const float* decoder_row, const float* reference_row,
                  const ModelShape& shape) {
  double worst = 0.0;
  for (int v = 0; v < shape.vocab_size; ++v) {
    worst =
        std::max<double>(worst, std::fabs(decoder_row[v] - reference_row[v]));
  }
  for (int v = shape.vocab_size; v < shape.padded_vocab_size; ++v) {
    EXPECT_EQ(decoder_row[v], -INFINITY) << "padded logit " << v;
  }
  return worst;
}

struct CacheCase {
  const char* name;
  ModelShape shape;
  int batch;
  int prompt_len;
};

void PrintTo(const CacheCase& c, std::ostream* os) { *os << c.name; }

class KvCacheTest : public ::testing::TestWithParam<CacheCase> {};

// Rows share the prompt, then each follows its own random tokens to the end
// of the context; every position of every row is checked.
TEST_P(KvCacheTest, MatchesFullForwardAtEveryPosition) {
  const CacheCase& c = GetParam();
  const ModelShape& shape = c.shape;
  const int B = c.batch, T = shape.max_seq_len;
  const std::vector<double> params = RandomParams(shape, 7, 0.3);
  Reference reference(shape, params, B);

  Rng rng(11);
  std::vector<int32_t> tokens(int64_t{B} * T);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      const int32_t tok =
          static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
      // The prompt is common to all rows: row 0's.
      const bool in_prompt = t < c.prompt_len && b > 0;
      tokens[int64_t{b} * T + t] = in_prompt ? tokens[t] : tok;
    }
  }
  const std::vector<float> expected = reference.Logits(tokens, B, T);

  std::unique_ptr<Decoder> decoder = MakeCpuDecoder(
      shape, std::vector<float>(params.begin(), params.end()), B);
  const int Vp = shape.padded_vocab_size;
  ASSERT_TRUE(
      decoder->Start(absl::MakeConstSpan(tokens.data(), c.prompt_len), B, T)
          .ok());
  double worst = 0.0;
  for (int t = c.prompt_len - 1; t < T; ++t) {
    if (t >= c.prompt_len) {
      std::vector<int32_t> step(B);
      for (int b = 0; b < B; ++b) step[b] = tokens[int64_t{b} * T + t];
      ASSERT_TRUE(decoder->Step(step).ok()) << "position " << t;
    }
    ASSERT_EQ(decoder->position(), t + 1);
    for (int b = 0; b < B; ++b) {
      const double diff =
          MaxDiffRow(decoder->logits() + int64_t{b} * Vp,
                     expected.data() + (int64_t{b} * T + t) * Vp, shape);
      EXPECT_LE(diff, kTolerance) << "row " << b << " position " << t;
      worst = std::max(worst, diff);
    }
  }
  // The cache holds the whole context now: one more position is refused.
  EXPECT_EQ(decoder->Step(std::vector<int32_t>(B, 0)).code(),
            absl::StatusCode::kFailedPrecondition);
  std::printf("%s: max |logit diff| = %.3g over %d positions\n", c.name, worst,
              T);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, KvCacheTest,
    ::testing::Values(
        // hs = 8 and C a multiple of 16: the vector paths.
        CacheCase{"L2_C32_prompt1", ModelShape{2, 4, 32, 12, 97, 128}, 3, 1},
        CacheCase{"L2_C32_prompt5", ModelShape{2, 4, 32, 12, 97, 128}, 3, 5},
        // C = 12, hs = 3: every scalar tail.
        CacheCase{"L3_C12_prompt4", ModelShape{3, 4, 12, 10, 50, 64}, 2, 4},
        // C = 24: one 16-wide and one 8-wide chunk; batch 5 splits 4 + 1.
        CacheCase{"L1_C24_prompt2", ModelShape{1, 3, 24, 9, 40, 40}, 5, 2}),
    [](const ::testing::TestParamInfo<CacheCase>& info) {
      return std::string(info.param.name);
    });

TEST(KvCache, RowsDoNotDependOnBatchSize) {
  const ModelShape shape{2, 4, 32, 12, 97, 128};
  const std::vector<double> params = RandomParams(shape, 3, 0.3);
  std::vector<float> fp(params.begin(), params.end());
  auto one = MakeCpuDecoder(shape, fp, 1);
  auto six = MakeCpuDecoder(shape, fp, 6);
  const std::vector<int32_t> prompt = {5, 9, 1};
  ASSERT_TRUE(one->Start(prompt, 1, 8).ok());
  ASSERT_TRUE(six->Start(prompt, 6, 8).ok());
  for (int step = 0; step < 4; ++step) {
    // Row 0 of the batch of six is fed the same tokens as the batch of one.
    ASSERT_TRUE(one->Step({static_cast<int32_t>(step + 10)}).ok());
    ASSERT_TRUE(
        six->Step({static_cast<int32_t>(step + 10), 1, 2, 3, 4, 5}).ok());
    for (int v = 0; v < shape.padded_vocab_size; ++v) {
      ASSERT_EQ(one->logits()[v], six->logits()[v]) << "step " << step;
    }
  }
}

// bf16 weights: every weight rounded to bf16, the matmuls reading the bits.
// Bit for bit the fp32 decoder given the rounded weights (the bits widen
// exactly and the sums keep their order), at C with and without vector tails.
TEST(KvCache, Bf16WeightsAreTheRoundedWeights) {
  for (const ModelShape& shape :
       {ModelShape{2, 4, 32, 12, 97, 128}, ModelShape{3, 4, 12, 10, 50, 64}}) {
    const std::vector<double> params = RandomParams(shape, 4, 0.3);
    std::vector<float> fp(params.begin(), params.end()), rounded = fp;
    for (float& x : rounded) x = Bf16BitsToFloat(FloatToBf16Bits(x));
    auto bf16 = MakeCpuDecoder(shape, fp, 2, DType::kBF16);
    auto reference = MakeCpuDecoder(shape, rounded, 2);
    auto unrounded = MakeCpuDecoder(shape, fp, 2);
    EXPECT_EQ(bf16->name(), "cpu (bf16 weights)");
    const std::vector<int32_t> prompt = {5, 9, 1};
    for (auto* d : {bf16.get(), reference.get(), unrounded.get()}) {
      ASSERT_TRUE(d->Start(prompt, 2, 8).ok());
    }
    int differ_from_fp32 = 0;
    for (int step = 0; step < 4; ++step) {
      for (int v = 0; v < 2 * shape.padded_vocab_size; ++v) {
        ASSERT_EQ(bf16->logits()[v], reference->logits()[v])
            << "C=" << shape.channels << " step " << step << " v " << v;
        differ_from_fp32 += bf16->logits()[v] != unrounded->logits()[v];
      }
      const std::vector<int32_t> next = {static_cast<int32_t>(step + 10),
                                         static_cast<int32_t>(step + 20)};
      for (auto* d : {bf16.get(), reference.get(), unrounded.get()}) {
        ASSERT_TRUE(d->Step(next).ok());
      }
    }
    EXPECT_GT(differ_from_fp32, 0);  // the rounding did happen
  }
}

TEST(KvCache, ArgumentErrors) {
  const ModelShape shape{1, 2, 8, 6, 20, 32};
  const std::vector<double> params = RandomParams(shape, 1, 0.1);
  auto decoder = MakeCpuDecoder(
      shape, std::vector<float>(params.begin(), params.end()), 4);
  const std::vector<int32_t> prompt = {1, 2};
  auto code = [](const absl::Status& s) { return s.code(); };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(decoder->Step({1})), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code(decoder->Start(prompt, 0, 4)), kInvalid);
  EXPECT_EQ(code(decoder->Start(prompt, 5, 4)), kInvalid);  // > max_batch
  EXPECT_EQ(code(decoder->Start(prompt, 1, 7)), kInvalid);  // > context
  EXPECT_EQ(code(decoder->Start(prompt, 1, 1)), kInvalid);  // prompt > cap
  EXPECT_EQ(code(decoder->Start({}, 1, 4)), kInvalid);
  EXPECT_EQ(code(decoder->Start({1, 20}, 1, 4)), kInvalid);  // id >= V
  EXPECT_EQ(code(decoder->Start({-1}, 1, 4)), kInvalid);
  ASSERT_TRUE(decoder->Start(prompt, 2, 3).ok());
  EXPECT_EQ(code(decoder->Step({1})), kInvalid);  // one token for two rows
  EXPECT_EQ(code(decoder->Step({1, 25})), kInvalid);
  EXPECT_TRUE(decoder->Step({1, 2}).ok());
  EXPECT_EQ(code(decoder->Step({1, 2})),
            absl::StatusCode::kFailedPrecondition);  // capacity 3 reached
}

// The decode matmul on its own, against a double-precision loop, for every
// batch-size remainder and a C with all tails.
TEST(CpuKernels, SmallBatchMatmulMatchesLoop) {
  for (int N : {1, 2, 3, 4, 5, 9}) {
    for (int C : {7, 24, 40}) {
      const int OC = 37;
      const auto inp = testing::RandomVector(int64_t{N} * C, N * 100 + C);
      const auto w = testing::RandomVector(int64_t{OC} * C, 5);
      const auto bias = testing::RandomVector(OC, 6);
      std::vector<float> fi(inp.begin(), inp.end()), fw(w.begin(), w.end()),
          fb(bias.begin(), bias.end()), out(int64_t{N} * OC);
      cpu::SmallBatchMatmul(out.data(), fi.data(), fw.data(), fb.data(), N, C,
                            OC);
      for (int n = 0; n < N; ++n) {
        for (int o = 0; o < OC; ++o) {
          double want = fb[o];
          for (int c = 0; c < C; ++c)
            want += double{fi[n * C + c]} * fw[o * C + c];
          ASSERT_NEAR(out[n * OC + o], want, 1e-4) << N << " " << C;
        }
      }
    }
  }
}

}  // namespace
}  // namespace gpt2::infer
