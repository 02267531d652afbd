// Every CPU op's backward against central finite differences, in double, on
// random inputs. The scalar loss is sum(out * w) for a random w, so dout = w.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "src/ops/adamw.h"
#include "src/ops/attention.h"
#include "src/ops/classifier.h"
#include "src/ops/encoder.h"
#include "src/ops/gelu.h"
#include "src/ops/global_norm.h"
#include "src/ops/layernorm.h"
#include "src/ops/matmul.h"
#include "src/ops/residual.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

using testing::Dot;
using testing::ExpectClose;
using testing::NumericGradient;
using testing::RandomVector;

constexpr double kRtol = 1e-6, kAtol = 1e-8;

TEST(OpsGrad, Encoder) {
  const int B = 2, T = 3, C = 5, V = 7;
  std::vector<int32_t> tokens = {1, 4, 4, 0, 6, 1};
  auto wte = RandomVector(V * C, 1), wpe = RandomVector(T * C, 2);
  auto w = RandomVector(B * T * C, 3);
  std::vector<double> out(B * T * C);
  auto loss = [&] {
    cpu::EncoderForward<double>(out.data(), tokens.data(), wte.data(),
                                wpe.data(), B, T, C);
    return Dot(out, w);
  };
  loss();
  // Forward value: out = wte[token] + wpe[t].
  EXPECT_DOUBLE_EQ(out[(1 * T + 2) * C + 3], wte[1 * C + 3] + wpe[2 * C + 3]);
  std::vector<double> dwte(V * C, 0.0), dwpe(T * C, 0.0);
  cpu::EncoderBackward<double>(dwte.data(), dwpe.data(), w.data(),
                               tokens.data(), B, T, C);
  ExpectClose(dwte, NumericGradient(&wte, loss), kRtol, kAtol, "dwte");
  ExpectClose(dwpe, NumericGradient(&wpe, loss), kRtol, kAtol, "dwpe");
}

TEST(OpsGrad, LayerNorm) {
  const int N = 6, C = 11;
  auto inp = RandomVector(N * C, 4, 2.0), weight = RandomVector(C, 5),
       bias = RandomVector(C, 6), w = RandomVector(N * C, 7);
  std::vector<double> out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    cpu::LayerNormForward<double>(out.data(), mean.data(), rstd.data(),
                                  inp.data(), weight.data(), bias.data(), N, C);
    return Dot(out, w);
  };
  loss();
  // Forward against the definition, every row: (x - mean) / sqrt(var + eps)
  // * weight + bias, var the biased variance; mean and rstd kept.
  for (int n = 0; n < N; ++n) {
    const double* x = &inp[n * C];
    double m = 0.0, var = 0.0;
    for (int c = 0; c < C; ++c) m += x[c] / C;
    for (int c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m) / C;
    const double r = 1.0 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[n], m, 1e-12) << n;
    EXPECT_NEAR(rstd[n], r, 1e-12 * r) << n;
    for (int c = 0; c < C; ++c) {
      const double want = (x[c] - m) * r * weight[c] + bias[c];
      ASSERT_NEAR(out[n * C + c], want, 1e-12 * (1 + std::fabs(want)))
          << n << "," << c;
    }
  }
  std::vector<double> dinp(N * C, 0.0), dweight(C, 0.0), dbias(C, 0.0);
  cpu::LayerNormBackward<double>(dinp.data(), dweight.data(), dbias.data(),
                                 w.data(), inp.data(), weight.data(),
                                 mean.data(), rstd.data(), N, C);
  ExpectClose(dinp, NumericGradient(&inp, loss), kRtol, kAtol, "dinp");
  ExpectClose(dweight, NumericGradient(&weight, loss), kRtol, kAtol, "dweight");
  ExpectClose(dbias, NumericGradient(&bias, loss), kRtol, kAtol, "dbias");
}

// Odd sizes straddle the GEMM's register tiles and blocks.
class MatmulGrad : public ::testing::TestWithParam<std::tuple<int, int, int>> {
};

TEST_P(MatmulGrad, MatchesFiniteDifferences) {
  const auto [N, C, OC] = GetParam();
  auto inp = RandomVector(N * C, 8), weight = RandomVector(OC * C, 9),
       bias = RandomVector(OC, 10), w = RandomVector(N * OC, 11);
  std::vector<double> out(N * OC);
  auto loss = [&] {
    cpu::MatmulForward<double>(out.data(), inp.data(), weight.data(),
                               bias.data(), N, C, OC);
    return Dot(out, w);
  };
  loss();
  // Forward against the plain triple loop.
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      double ref = bias[o];
      for (int c = 0; c < C; ++c) ref += inp[n * C + c] * weight[o * C + c];
      ASSERT_NEAR(out[n * OC + o], ref, 1e-12 * (1 + std::fabs(ref)))
          << n << "," << o;
    }
  }
  std::vector<double> dinp(N * C, 0.0), dweight(OC * C, 0.0), dbias(OC, 0.0);
  cpu::MatmulBackward<double>(dinp.data(), dweight.data(), dbias.data(),
                              w.data(), inp.data(), weight.data(), N, C, OC);
  ExpectClose(dinp, NumericGradient(&inp, loss), kRtol, kAtol, "dinp");
  ExpectClose(dweight, NumericGradient(&weight, loss), kRtol, kAtol, "dweight");
  ExpectClose(dbias, NumericGradient(&bias, loss), kRtol, kAtol, "dbias");
}

INSTANTIATE_TEST_SUITE_P(Shapes, MatmulGrad,
                         ::testing::Values(std::make_tuple(1, 1, 1),
                                           std::make_tuple(5, 7, 3),
                                           std::make_tuple(13, 9, 17),
                                           std::make_tuple(7, 37, 21)));

TEST(OpsGrad, MatmulLargeForwardMatchesNaive) {
  // Sizes past the K, M and N blocks of the packed GEMM, in float.
  const int N = 131, C = 300, OC = 530;
  auto inp64 = RandomVector(N * C, 12), weight64 = RandomVector(OC * C, 13),
       bias64 = RandomVector(OC, 14);
  std::vector<float> inp(inp64.begin(), inp64.end()),
      weight(weight64.begin(), weight64.end()),
      bias(bias64.begin(), bias64.end()), out(N * OC);
  cpu::MatmulForward<float>(out.data(), inp.data(), weight.data(), bias.data(),
                            N, C, OC);
  int bad = 0;
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      double ref = bias[o];
      for (int c = 0; c < C; ++c)
        ref += double{inp[n * C + c]} * weight[o * C + c];
      if (std::fabs(out[n * OC + o] - ref) > 1e-4 * (1 + std::fabs(ref))) ++bad;
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(OpsGrad, Attention) {
  const int B = 2, T = 5, C = 6, NH = 2;
  auto qkv = RandomVector(B * T * 3 * C, 15), w = RandomVector(B * T * C, 16);
  std::vector<double> out(B * T * C), lse(B * NH * T);
  auto loss = [&] {
    cpu::AttentionForward<double>(out.data(), lse.data(), qkv.data(), B, T, C,
                                  NH);
    return Dot(out, w);
  };
  loss();
  // Forward against the definition, every position and head: softmax over the
  // positions up to it of q.k / sqrt(hs), weighting v; lse that softmax's
  // log-sum-exp. (Position 0 attends only to itself: its output is its v.)
  const int hs = C / NH;
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < T; ++t) {
        const double* q = &qkv[(b * T + t) * 3 * C + h * hs];
        std::vector<double> score(t + 1);
        double most = -1e300;
        for (int u = 0; u <= t; ++u) {
          const double* k = &qkv[(b * T + u) * 3 * C + C + h * hs];
          double dot = 0.0;
          for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
          score[u] = dot / std::sqrt(static_cast<double>(hs));
          most = std::max(most, score[u]);
        }
        double sum = 0.0;
        for (int u = 0; u <= t; ++u) sum += std::exp(score[u] - most);
        EXPECT_NEAR(lse[(b * NH + h) * T + t], most + std::log(sum), 1e-12)
            << b << "," << h << "," << t;
        for (int i = 0; i < hs; ++i) {
          double want = 0.0;
          for (int u = 0; u <= t; ++u) {
            want += std::exp(score[u] - most) / sum *
                    qkv[(b * T + u) * 3 * C + 2 * C + h * hs + i];
          }
          ASSERT_NEAR(out[(b * T + t) * C + h * hs + i], want, 1e-12)
              << b << "," << h << "," << t << "," << i;
        }
      }
    }
  }
  std::vector<double> dqkv(B * T * 3 * C, 0.0);
  cpu::AttentionBackward<double>(dqkv.data(), w.data(), qkv.data(), out.data(),
                                 lse.data(), B, T, C, NH);
  ExpectClose(dqkv, NumericGradient(&qkv, loss), kRtol, kAtol, "dqkv");
}

TEST(OpsGrad, Gelu) {
  const int n = 50;
  auto inp = RandomVector(n, 17, 3.0), w = RandomVector(n, 18);
  std::vector<double> out(n);
  auto loss = [&] {
    cpu::GeluForward<double>(out.data(), inp.data(), n);
    return Dot(out, w);
  };
  loss();
  const double x = inp[0];
  EXPECT_NEAR(
      out[0],
      0.5 * x *
          (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))),
      1e-14);
  std::vector<double> dinp(n, 0.0);
  cpu::GeluBackward<double>(dinp.data(), inp.data(), w.data(), n);
  ExpectClose(dinp, NumericGradient(&inp, loss), kRtol, kAtol, "dinp");
}

TEST(OpsGrad, Residual) {
  const int n = 20;
  auto a = RandomVector(n, 19), b = RandomVector(n, 20),
       w = RandomVector(n, 21);
  std::vector<double> out(n);
  auto loss = [&] {
    cpu::ResidualForward<double>(out.data(), a.data(), b.data(), n);
    return Dot(out, w);
  };
  loss();
  EXPECT_DOUBLE_EQ(out[3], a[3] + b[3]);
  // The backward of a residual add is dout into both inputs.
  std::vector<double> da(n, 0.0), db(n, 0.0);
  cpu::AddInPlace<double>(da.data(), w.data(), n);
  cpu::AddInPlace<double>(db.data(), w.data(), n);
  ExpectClose(da, NumericGradient(&a, loss), kRtol, kAtol, "da");
  ExpectClose(db, NumericGradient(&b, loss), kRtol, kAtol, "db");
}

TEST(OpsGrad, ClassifierMasksPaddedVocab) {
  const int N = 4, V = 9, Vp = 12;
  std::vector<int32_t> targets = {0, 8, 3, 3};
  auto logits = RandomVector(N * Vp, 22, 2.0);
  const double dloss = 1.0 / N;
  auto loss = [&] {
    std::vector<double> copy = logits, losses(N);
    cpu::ClassifierForward<double>(copy.data(), losses.data(), targets.data(),
                                   N, V, Vp, dloss, false);
    double mean = 0.0;
    for (double l : losses) mean += l * dloss;
    return mean;
  };
  // Loss of row 0 by hand, over the real vocab only.
  std::vector<double> copy = logits, losses(N);
  cpu::ClassifierForward<double>(copy.data(), losses.data(), targets.data(), N,
                                 V, Vp, dloss, true);
  double sum = 0.0;
  for (int v = 0; v < V; ++v) sum += std::exp(logits[v]);
  EXPECT_NEAR(losses[0], std::log(sum) - logits[0], 1e-12);
  // `copy` now holds dlogits; padded columns must be exactly zero.
  for (int n = 0; n < N; ++n) {
    for (int v = V; v < Vp; ++v) EXPECT_EQ(copy[n * Vp + v], 0.0);
  }
  ExpectClose(copy, NumericGradient(&logits, loss), kRtol, kAtol, "dlogits");
}

TEST(OpsGrad, SumSquaresAndAccumulate) {
  auto x = RandomVector(200003, 23);  // spans several chunks
  double expected = 0.0;
  for (double v : x) expected += v * v;
  double out = -1.0;
  cpu::SumSquares<double>(&out, x.data(), x.size());
  EXPECT_NEAR(out, expected, 1e-9 * expected);
  double acc = 1.0;
  cpu::AccumulateSum<double>(&acc, x.data(), 10, 0.5);
  double ten = 0.0;
  for (int i = 0; i < 10; ++i) ten += x[i];
  EXPECT_NEAR(acc, 1.0 + 0.5 * ten, 1e-12);
}

// AdamW against the update written out for one element, two steps, with
// clipping.
TEST(OpsGrad, AdamWMatchesTorchFormula) {
  std::vector<double> param = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  std::vector<double> grad = {0.3, -4.0, 0.0};
  double norm_sq = 0.0;
  for (double g : grad) norm_sq += g * g;
  AdamWArgs args;
  args.lr = 1e-2;
  args.beta1 = 0.9;
  args.beta2 = 0.95;
  args.eps = 1e-8;
  args.weight_decay = 0.1;
  args.grad_clip = 1.0;
  std::vector<double> ref_p = param, ref_m = m, ref_v = v;
  for (int step = 1; step <= 2; ++step) {
    args.step = step;
    cpu::AdamW<double>(param.data(), m.data(), v.data(), grad.data(), 3,
                       &norm_sq, args);
    const double scale = 1.0 / (std::sqrt(norm_sq) + 1e-6);
    for (int i = 0; i < 3; ++i) {
      const double g = grad[i] * scale;
      ref_p[i] *= 1 - args.lr * args.weight_decay;  // torch: decay first
      ref_m[i] = 0.9 * ref_m[i] + 0.1 * g;
      ref_v[i] = 0.95 * ref_v[i] + 0.05 * g * g;
      const double m_hat = ref_m[i] / (1 - std::pow(0.9, step));
      const double v_hat = ref_v[i] / (1 - std::pow(0.95, step));
      ref_p[i] -= args.lr * m_hat / (std::sqrt(v_hat) + 1e-8);
    }
  }
  ExpectClose(param, ref_p, 1e-12, 1e-15, "param");
  ExpectClose(m, ref_m, 1e-12, 1e-15, "m");
  ExpectClose(v, ref_v, 1e-12, 1e-15, "v");
  EXPECT_DOUBLE_EQ(ClipScale(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(ClipScale(4.0, 0.0), 1.0);
}

// One call over runs with and without decay is the calls run by run; runs
// with gaps leave the gaps as they are; runs that overlap, overrun, descend
// or are empty are refused.
TEST(OpsGrad, AdamWRunsDecayOnlyTheirElements) {
  const int n = 7;
  std::vector<double> grad = {0.3, -4.0, 0.0, 1.0, 2.0, -0.5, 0.25};
  double norm_sq = 0.0;
  for (double g : grad) norm_sq += g * g;
  AdamWArgs args;
  args.lr = 1e-2;
  args.weight_decay = 0.5;
  args.step = 2;
  args.runs = {{2, true}, {5, false}, {7, true}};
  std::vector<double> param(n, 1.5), m(n, 0.1), v(n, 0.2);
  std::vector<double> ref_p = param, ref_m = m, ref_v = v;
  cpu::AdamW<double>(param.data(), m.data(), v.data(), grad.data(), n, &norm_sq,
                     args);
  int64_t begin = 0;
  for (const AdamWRun& run : args.runs) {
    AdamWArgs a = args;
    a.runs.clear();
    a.weight_decay = run.decayed ? args.weight_decay : 0.0;
    cpu::AdamW<double>(ref_p.data() + begin, ref_m.data() + begin,
                       ref_v.data() + begin, grad.data() + begin,
                       run.end - begin, &norm_sq, a);
    begin = run.end;
  }
  EXPECT_EQ(param, ref_p);
  EXPECT_EQ(m, ref_m);
  // Against every element decaying: the undecayed run's elements, and only
  // they, come out otherwise.
  AdamWArgs all = args;
  all.runs.clear();
  std::vector<double> all_p(n, 1.5), all_m(n, 0.1), all_v(n, 0.2);
  cpu::AdamW<double>(all_p.data(), all_m.data(), all_v.data(), grad.data(), n,
                     &norm_sq, all);
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(param[i] != all_p[i], i >= 2 && i < 5) << i;
  const auto runs = AdamWDecayRuns(args, n);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[1].begin, 2);
  EXPECT_EQ(runs[1].end, 5);
  EXPECT_EQ(runs[1].weight_decay, 0.0);
  EXPECT_EQ(runs[2].weight_decay, 0.5);
  AdamWArgs whole;
  whole.weight_decay = 0.1;
  ASSERT_EQ(AdamWDecayRuns(whole, n).size(), 1u);
  EXPECT_EQ(AdamWDecayRuns(whole, n)[0].weight_decay, 0.1);
  // Gaps: runs [1, 3) (decayed) and [4, 5) (not) update exactly those
  // elements, as the calls above do.
  AdamWArgs gapped = args;
  gapped.runs = {{3, true, 1}, {5, false, 4}};
  std::vector<double> gap_p(n, 1.5), gap_m(n, 0.1), gap_v(n, 0.2);
  cpu::AdamW<double>(gap_p.data(), gap_m.data(), gap_v.data(), grad.data(), n,
                     &norm_sq, gapped);
  for (int i = 0; i < n; ++i) {
    const bool in_run = (i >= 1 && i < 3) || i == 4;
    EXPECT_EQ(gap_m[i] != 0.1, in_run) << i;
    if (in_run) {
      EXPECT_EQ(gap_p[i], i < 3 ? all_p[i] : param[i]) << i;
    } else {
      EXPECT_EQ(gap_p[i], 1.5) << i;
    }
  }
  for (std::vector<AdamWRun> bad :
       std::vector<std::vector<AdamWRun>>{{{5, true}, {3, false}, {7, true}},
                                          {{8, true}},
                                          {{4, true}, {6, false, 3}},
                                          {{4, true, 4}},
                                          {{4, true}, {8, false, 5}}}) {
    AdamWArgs a = args;
    a.runs = bad;
    EXPECT_DEATH(AdamWDecayRuns(a, n), "AdamW runs must");
  }
}

}  // namespace
}  // namespace gpt2
