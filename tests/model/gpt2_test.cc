// The whole GPT-2 model on the CPU backend: parameter list, init, gradients
// against finite differences in double, the initial loss of the 124M init, and
// overfitting.
#include "src/model/gpt2.h"

#include <cmath>
#include <cstdlib>
#include <numeric>

#include "gtest/gtest.h"
#include "src/optim/adamw_optimizer.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

// L, NH, C, maxT, V, Vp.
ModelShape TinyShape() { return ModelShape{2, 2, 8, 8, 11, 16}; }

TEST(ParamList, Gpt2SmallCounts) {
  const ModelShape shape = ModelShape::Gpt2Small();
  const auto list = BuildParamList(shape);
  ASSERT_EQ(list.size(), 16u);
  EXPECT_EQ(TotalParams(list), 124475904);
  // The groups the original PyTorch run prints.
  const ParamGroupCounts g = CountParamGroups(list, shape.num_layers);
  EXPECT_EQ(g.decayed_tensors, 50);
  EXPECT_EQ(g.decayed_params, 124354560);
  EXPECT_EQ(g.other_tensors, 98);
  EXPECT_EQ(g.other_params, 121344);
  // Offsets tile the flat buffer with no gaps.
  int64_t offset = 0;
  for (const ParamSpec& p : list) {
    EXPECT_EQ(p.offset, offset) << p.name;
    offset += p.numel;
  }
}

// ParamIndex names the list's places; each tensor carries its Hugging Face
// name (GPT2LMHeadModel's), which Conv1D weights are stored transposed, and
// wte's rows that hold the model (V of Vp, the rest padding).
TEST(ParamList, IndexNamesAndHuggingFaceNames) {
  const ModelShape shape = ModelShape::Gpt2Small();
  const auto list = BuildParamList(shape);
  ASSERT_EQ(list.size(), static_cast<size_t>(kNumParamTensors));
  const std::vector<std::pair<int, std::string>> places = {
      {kWte, "wte"},           {kWpe, "wpe"},           {kLn1w, "ln1w"},
      {kLn1b, "ln1b"},         {kQkvw, "qkvw"},         {kQkvb, "qkvb"},
      {kAttprojw, "attprojw"}, {kAttprojb, "attprojb"}, {kLn2w, "ln2w"},
      {kLn2b, "ln2b"},         {kFcw, "fcw"},           {kFcb, "fcb"},
      {kFcprojw, "fcprojw"},   {kFcprojb, "fcprojb"},   {kLnfw, "lnfw"},
      {kLnfb, "lnfb"}};
  for (const auto& [index, name] : places) EXPECT_EQ(list[index].name, name);
  EXPECT_EQ(list[kWte].hf_name, "transformer.wte.weight");
  EXPECT_EQ(list[kQkvw].hf_name, "attn.c_attn.weight");
  EXPECT_EQ(list[kFcprojb].hf_name, "mlp.c_proj.bias");
  EXPECT_EQ(list[kLnfw].hf_name, "transformer.ln_f.weight");
  for (const ParamSpec& p : list) {
    EXPECT_FALSE(p.hf_name.empty()) << p.name;
    // Conv1D's weights: the per-layer 2-D ones.
    EXPECT_EQ(p.hf_transposed, p.per_layer && p.shape.size() == 3) << p.name;
    EXPECT_EQ(p.model_rows, p.name == "wte" ? shape.vocab_size : 0) << p.name;
  }
  EXPECT_EQ(list[kWte].model_numel(), int64_t{50257} * 768);
  EXPECT_EQ(list[kWpe].model_numel(), list[kWpe].numel);
  EXPECT_EQ(list[kQkvw].slice_shape(), (std::vector<int64_t>{2304, 768}));
}

// The forward's update groups: embeddings, the first layer's slice of each
// tensor on its own, each later layer's slices, the final LayerNorm; every
// element once, each slice of one decay, in the order the forward reads them.
TEST(ParamList, ForwardUpdateGroupsCoverTheBufferInForwardOrder) {
  const ModelShape shape = ModelShape::Gpt2Small();
  const auto list = BuildParamList(shape);
  const auto groups = ForwardUpdateGroups(list, shape.num_layers);
  constexpr int kPerLayer = 12;                             // per-layer tensors
  const int last = 1 + kPerLayer + (shape.num_layers - 1);  // lnfw, lnfb
  ASSERT_EQ(static_cast<int>(groups.size()), last + 1);
  // wte and wpe: adjacent, both decayed: one slice.
  ASSERT_EQ(groups[0].size(), 1u);
  EXPECT_EQ(groups[0][0].offset, 0);
  EXPECT_EQ(groups[0][0].numel, list[kWte].numel + list[kWpe].numel);
  EXPECT_TRUE(groups[0][0].decayed);
  // lnfw and lnfb: adjacent, neither decayed: one slice.
  ASSERT_EQ(groups[last].size(), 1u);
  EXPECT_EQ(groups[last][0].offset, list[kLnfw].offset);
  EXPECT_FALSE(groups[last][0].decayed);
  std::vector<int> owner(TotalParams(list), -1);
  for (size_t g = 0; g < groups.size(); ++g) {
    int64_t prev_end = -1;
    for (const ParamSlice& s : groups[g]) {
      EXPECT_GT(s.offset, prev_end) << g;  // ascending, adjacent ones merged
      prev_end = s.offset + s.numel;
      for (int64_t i = s.offset; i < s.offset + s.numel; ++i) {
        ASSERT_EQ(owner[i], -1) << i;
        owner[i] = static_cast<int>(g);
      }
    }
  }
  int per_layer_index = 0;  // of p among the per-layer tensors
  for (const ParamSpec& p : list) {
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      const int l =
          p.per_layer ? static_cast<int>((i - p.offset) / p.layer_numel()) : -1;
      const int want = l == 0  ? 1 + per_layer_index
                       : l > 0 ? kPerLayer + l
                       : (p.offset == 0 || p.name == "wpe") ? 0
                                                            : last;
      ASSERT_EQ(owner[i], want) << p.name << " " << i;
    }
    per_layer_index += p.per_layer;
  }
  // Layer 0: one slice a group, in the list's order (qkvw third).
  ASSERT_EQ(groups[3].size(), 1u);
  EXPECT_EQ(groups[3][0].offset, list[kQkvw].offset);
  EXPECT_EQ(groups[3][0].numel, list[kQkvw].layer_numel());
  // Layer 3's slices: 12 tensors, decay as their tensors'.
  const auto& layer3 = groups[kPerLayer + 3];
  ASSERT_EQ(layer3.size(), 12u);
  EXPECT_EQ(layer3[0].offset, list[kLn1w].offset + 3 * shape.channels);
  EXPECT_FALSE(layer3[0].decayed);
  EXPECT_EQ(layer3[2].offset,
            list[kQkvw].offset + 3 * list[kQkvw].layer_numel());
  EXPECT_TRUE(layer3[2].decayed);
}

TEST(ParamList, InitStatistics) {
  ModelShape shape = TinyShape();
  shape.channels = 64;
  shape.num_heads = 4;
  shape.vocab_size = 500;
  shape.padded_vocab_size = 512;
  const auto list = BuildParamList(shape);
  std::vector<double> params;
  InitParams(shape, list, 1337, &params);
  auto stats = [&](const ParamSpec& p, int64_t count) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < count; ++i) {
      sum += params[p.offset + i];
      sq += params[p.offset + i] * params[p.offset + i];
    }
    const double mean = sum / count;
    return std::make_pair(mean, std::sqrt(sq / count - mean * mean));
  };
  for (const ParamSpec& p : list) {
    if (p.name == "wte") {
      const int64_t real = int64_t{shape.vocab_size} * shape.channels;
      EXPECT_NEAR(stats(p, real).second, 0.02, 0.001);
      for (int64_t i = real; i < p.numel; ++i)
        ASSERT_EQ(params[p.offset + i], 0.0);
    } else if (p.name == "fcprojw" || p.name == "attprojw") {
      EXPECT_NEAR(stats(p, p.numel).second,
                  0.02 / std::sqrt(2.0 * shape.num_layers), 0.001)
          << p.name;
    } else if (p.name == "qkvw" || p.name == "fcw") {
      EXPECT_NEAR(stats(p, p.numel).second, 0.02, 0.001) << p.name;
    } else if (p.name == "ln1w" || p.name == "ln2w" || p.name == "lnfw") {
      EXPECT_EQ(stats(p, p.numel).first, 1.0) << p.name;
    } else if (p.name != "wpe") {
      EXPECT_EQ(stats(p, p.numel).second, 0.0) << p.name;  // biases: all zero
    }
  }
  std::vector<double> again;
  InitParams(shape, list, 1337, &again);
  EXPECT_EQ(params, again);  // same seed, same init
}

// Start-up writes the init straight into the parameters' dtype: every byte
// must be what encoding the double init gives (padded rows and constant
// tensors included: the buffer starts as garbage), over several chunks.
TEST(ParamList, EncodedInitIsTheEncodedDoubleInit) {
  ModelShape shape = TinyShape();
  shape.channels = 64;
  shape.num_heads = 4;
  shape.vocab_size = 3001;  // wte: 3 chunks of 2^16 values, and a part
  shape.padded_vocab_size = 3008;
  const auto list = BuildParamList(shape);
  std::vector<double> doubles;
  InitParams(shape, list, 99, &doubles);
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16}) {
    const std::vector<char> want = EncodeHost(doubles, dtype);
    std::vector<char> got(want.size(), static_cast<char>(0xAB));
    InitParamsEncoded(shape, list, 99, dtype, got.data());
    EXPECT_TRUE(got == want) << DTypeName(dtype);
  }
}

TEST(Gpt2Model, GradientMatchesFiniteDifferences) {
  auto backend = MakeCpuBackend();
  const ModelShape shape = TinyShape();
  const int B = 2, T = 5;
  Gpt2Model model(backend.get(), shape, DType::kF64, B, T);
  // Random params everywhere (not GPT-2's init) so every path carries signal.
  std::vector<double> params =
      testing::RandomVector(model.num_params(), 7, 0.3);
  model.SetParams(params);
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 2, 0, 10, 3, 7, 4};
  const std::vector<int32_t> targets = {5, 9, 2, 2, 8, 10, 3, 7, 4, 6};
  const double dloss = 1.0 / (B * T);
  auto loss = [&] {
    model.SetParams(params);
    model.Forward(tokens.data(), targets.data(), B, T, dloss, false);
    std::vector<double> losses(B * T);
    backend->Download(losses.data(), model.losses());
    return std::accumulate(losses.begin(), losses.end(), 0.0) * dloss;
  };
  model.ZeroGrads();
  model.Forward(tokens.data(), targets.data(), B, T, dloss, true);
  model.Backward();
  const std::vector<double> grads = model.GetGrads();
  const std::vector<double> numeric =
      testing::NumericGradient(&params, loss, 1e-5);
  // Padded wte rows get no gradient from the loss (masked) nor from the
  // encoder.
  testing::ExpectClose(grads, numeric, 1e-5, 1e-9, "model grads");
  double norm = 0;
  for (double g : grads) norm += g * g;
  EXPECT_GT(norm, 1e-6);  // the check is not vacuous
}

// The reference's overwriting backward (a step's first micro-step): the
// gradients of zeroing and adding, bit for bit, over a buffer of NaNs, with
// T short of max_seq_len (wpe's last rows zero).
TEST(Gpt2Model, OverwritingBackwardMatchesZeroThenAdd) {
  auto backend = MakeCpuBackend();
  const ModelShape shape = TinyShape();
  const int B = 2, T = 5;
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 2, 0, 10, 3, 7, 4};
  const std::vector<int32_t> targets = {5, 9, 2, 2, 8, 10, 3, 7, 4, 6};
  for (const DType dtype : {DType::kF32, DType::kF64}) {
    Gpt2Model model(backend.get(), shape, dtype, B, shape.max_seq_len);
    model.SetParams(testing::RandomVector(model.num_params(), 7, 0.3));
    const auto backward = [&](ParamGrads mode) {
      model.Forward(tokens.data(), targets.data(), B, T, 1.0 / (B * T), true);
      model.Backward(nullptr, mode);
      return model.GetGrads();
    };
    // Two micro-steps each way: zeros, then adding twice; NaNs, then
    // overwriting and adding.
    model.ZeroGrads();
    const std::vector<double> want = backward(ParamGrads::kAccumulate);
    const std::vector<double> want2 = backward(ParamGrads::kAccumulate);
    const std::vector<char> nans(model.grads().bytes(),
                                 static_cast<char>(0xFF));
    backend->Upload(model.grads(), nans.data());
    const std::vector<double> got = backward(ParamGrads::kOverwrite);
    const std::vector<double> got2 = backward(ParamGrads::kAccumulate);
    EXPECT_EQ(got, want) << DTypeName(dtype);
    EXPECT_EQ(got2, want2) << DTypeName(dtype);
    EXPECT_NE(want2, want);
    const ParamSpec& wpe = model.param_list()[kWpe];
    for (int64_t i = int64_t{T} * shape.channels; i < wpe.numel; ++i)
      ASSERT_EQ(got[wpe.offset + i], 0.0) << "wpe element " << i;
    // The fallback (GPT2_GRADS_OVERWRITE=0: zeroing, then adding) alike.
    setenv("GPT2_GRADS_OVERWRITE", "0", 1);
    backend->Upload(model.grads(), nans.data());
    EXPECT_EQ(backward(ParamGrads::kOverwrite), want) << DTypeName(dtype);
    unsetenv("GPT2_GRADS_OVERWRITE");
  }
}

TEST(Gpt2Model, RecomputingActivationsGivesTheSameGradients) {
  auto backend = MakeCpuBackend();
  ModelShape shape = TinyShape();
  const int B = 2, T = 5;
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 2, 0, 10, 3, 7, 4};
  const std::vector<int32_t> targets = {5, 9, 2, 2, 8, 10, 3, 7, 4, 6};
  // [gelu][layernorm]
  std::vector<double> grads[2][2];
  int64_t activation_bytes[2][2];
  for (bool gelu : {false, true}) {
    for (bool layernorm : {false, true}) {
      Gpt2Model model(backend.get(), shape, DType::kF32, B, T, 0, gelu,
                      layernorm);
      model.SetParams(testing::RandomVector(model.num_params(), 7, 0.3));
      model.ZeroGrads();
      model.Forward(tokens.data(), targets.data(), B, T, 1.0 / (B * T), true);
      model.Backward();
      grads[gelu][layernorm] = model.GetGrads();
      activation_bytes[gelu][layernorm] = model.activation_bytes();
    }
  }
  // Bitwise: the recomputed activations are the same ops on the same inputs.
  EXPECT_EQ(grads[0][0], grads[1][0]);
  EXPECT_EQ(grads[0][0], grads[0][1]);
  EXPECT_EQ(grads[0][0], grads[1][1]);
  const int64_t L = shape.num_layers, C = shape.channels;
  // One layer's GELU buffer instead of L; one of each LayerNorm output.
  EXPECT_EQ(activation_bytes[0][0] - activation_bytes[1][0],
            (L - 1) * B * T * 4 * C * 4);
  EXPECT_EQ(activation_bytes[0][0] - activation_bytes[0][1],
            2 * (L - 1) * B * T * C * 4);
}

// The LM head's products in row chunks: each operand under 2^31 elements
// (GPT-2 124M at B=64, T=1024: two chunks of 32,768 rows), and a cap for
// tests; the same logits, loss and gradients as one product, wte's gradient
// added up over the chunks (overwritten by the first where the step says so).
TEST(Gpt2Model, LmHeadInRowChunksIsTheSameModel) {
  using Chunks = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(Gpt2Model::LmHeadChunks(65536, 50304),
            (Chunks{{0, 32768}, {32768, 32768}}));
  EXPECT_EQ(Gpt2Model::LmHeadChunks(16384, 50304), (Chunks{{0, 16384}}));
  // 42,690 x 50,304 = 2,147,477,760 < 2^31; one row more is past it.
  EXPECT_EQ(Gpt2Model::LmHeadChunks(42690, 50304).size(), 1u);
  EXPECT_EQ(Gpt2Model::LmHeadChunks(42691, 50304).size(), 2u);
  EXPECT_EQ(Gpt2Model::LmHeadChunks(10, 16, 3),
            (Chunks{{0, 3}, {3, 3}, {6, 3}, {9, 1}}));
  for (const auto& [rows, vp] : std::vector<std::pair<int64_t, int>>{
           {65536, 50304}, {262144, 50304}, {100001, 50304}, {7, 64}}) {
    int64_t next = 0;
    for (const auto& [row, n] : Gpt2Model::LmHeadChunks(rows, vp)) {
      EXPECT_EQ(row, next);
      EXPECT_LT(n * vp, int64_t{1} << 31);
      next = row + n;
    }
    EXPECT_EQ(next, rows);
  }

  auto backend = MakeCpuBackend();
  const ModelShape shape = TinyShape();
  const int B = 2, T = 5;
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 2, 0, 10, 3, 7, 4};
  const std::vector<int32_t> targets = {5, 9, 2, 2, 8, 10, 3, 7, 4, 6};
  struct Result {
    std::vector<double> logits, losses, grads;
  };
  const auto run = [&](int64_t max_rows) {
    Gpt2Model model(backend.get(), shape, DType::kF64, B, T);
    model.set_lm_head_rows(max_rows);
    model.SetParams(testing::RandomVector(model.num_params(), 7, 0.3));
    // Over NaNs: the first chunk overwrites wte's gradient, the rest add.
    const std::vector<char> nans(model.grads().bytes(),
                                 static_cast<char>(0xFF));
    backend->Upload(model.grads(), nans.data());
    model.Forward(tokens.data(), targets.data(), B, T, 1.0 / (B * T), true);
    Result r;
    r.losses.resize(B * T);
    backend->Download(r.losses.data(), model.losses());
    model.Backward(nullptr, ParamGrads::kOverwrite);
    r.grads = model.GetGrads();
    // The logits again (the backward overwrote them with their gradient).
    model.Forward(tokens.data(), nullptr, B, T, 0.0, false);
    r.logits.resize(B * T * shape.padded_vocab_size);
    backend->Download(r.logits.data(), model.logits());
    return r;
  };
  const Result whole = run(0), chunked = run(3);  // 10 rows: 3 + 3 + 3 + 1
  ASSERT_EQ(chunked.grads.size(), whole.grads.size());
  for (size_t i = 0; i < whole.grads.size(); ++i) {
    ASSERT_NEAR(chunked.grads[i], whole.grads[i],
                1e-12 * (1 + std::fabs(whole.grads[i])))
        << "grad " << i;
  }
  for (size_t i = 0; i < whole.logits.size(); ++i) {
    ASSERT_NEAR(chunked.logits[i], whole.logits[i], 1e-12) << "logit " << i;
  }
  for (size_t i = 0; i < whole.losses.size(); ++i) {
    ASSERT_NEAR(chunked.losses[i], whole.losses[i], 1e-12) << "loss " << i;
  }
}

TEST(Gpt2Model, InitialLossIsLnVocab) {
  auto backend = MakeCpuBackend();
  const ModelShape shape = ModelShape::Gpt2Small();
  const int B = 1, T = 64;
  Gpt2Model model(backend.get(), shape, DType::kF32, B, T);
  model.InitParams(1337);
  Rng rng(42);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (auto& t : tokens)
    t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
  for (auto& t : targets)
    t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
  model.Forward(tokens.data(), targets.data(), B, T, 0.0, false);
  std::vector<float> losses(B * T);
  backend->Download(losses.data(), model.losses());
  const double mean =
      std::accumulate(losses.begin(), losses.end(), 0.0) / (B * T);
  // Near ln V, above it by about half the logits' variance: for logits of
  // spread s around their mean, E[logsumexp] ~ mean + ln V + s^2 / 2.
  const int Vp = shape.padded_vocab_size, V = shape.vocab_size;
  std::vector<float> logits(int64_t{B} * T * Vp);
  backend->Download(logits.data(), model.logits());
  double expected = 0.0;
  for (int i = 0; i < B * T; ++i) {
    double sum = 0.0, sq = 0.0;
    for (int v = 0; v < V; ++v) {
      sum += logits[int64_t{i} * Vp + v];
      sq += double{logits[int64_t{i} * Vp + v]} * logits[int64_t{i} * Vp + v];
    }
    const double m = sum / V;
    expected += std::log(static_cast<double>(V)) + (sq / V - m * m) / 2;
  }
  expected /= B * T;
  EXPECT_NEAR(mean, std::log(50257.0), 0.25);
  EXPECT_NEAR(mean, expected, 0.03);
}

TEST(Gpt2Model, OverfitsOneBatch) {
  auto backend = MakeCpuBackend();
  ModelShape shape = TinyShape();
  shape.channels = 32;
  shape.num_heads = 4;
  shape.max_seq_len = 16;
  shape.vocab_size = 64;
  shape.padded_vocab_size = 64;
  const int B = 4, T = 16;
  Gpt2Model model(backend.get(), shape, DType::kF32, B, T);
  model.InitParams(1);
  AdamWHyper hyper;
  hyper.weight_decay = 0.0;
  AdamWOptimizer opt(backend.get(), model.param_list(), DType::kF32, hyper);
  Rng rng(3);
  std::vector<int32_t> tokens(B * T + 1);
  for (auto& t : tokens)
    t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
  std::vector<int32_t> inputs(tokens.begin(), tokens.end() - 1),
      targets(tokens.begin() + 1, tokens.end());
  Tensor norm_sq = backend->Alloc(DType::kF32, 1);
  double loss = 0.0;
  for (int step = 1; step <= 300 && !(loss > 0 && loss < 0.05); ++step) {
    model.ZeroGrads();
    model.Forward(inputs.data(), targets.data(), B, T, 1.0 / (B * T), true);
    std::vector<float> losses(B * T);
    backend->Download(losses.data(), model.losses());
    loss = std::accumulate(losses.begin(), losses.end(), 0.0) / (B * T);
    model.Backward();
    backend->SumSquares(norm_sq, model.grads());
    opt.Step(model.params(), model.grads(), norm_sq, 3e-3, step);
  }
  backend->Free(norm_sq);
  EXPECT_LT(loss, 0.05);
}

}  // namespace
}  // namespace gpt2
