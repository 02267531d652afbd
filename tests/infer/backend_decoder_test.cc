// The decoder written over the Backend interface, on the CPU backend, against
// the CPU decoder (which the decoder tests hold to the training model's full
// forward): the same logits after the prompt and after every step, for several
// rows with different tokens. And its use of graphs (recorded op sequences,
// CUDA graphs on a GPU), checked on a recording CPU backend.
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/backend.h"
#include "src/core/rng.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"
#include "src/ops/sample.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

// L, NH, C, maxT, V, Vp.
ModelShape SmallShape() { return ModelShape{2, 2, 16, 12, 50, 64}; }

std::vector<float> RandomParams(const ModelShape& shape, uint64_t seed) {
  std::vector<double> p =
      testing::RandomVector(TotalParams(BuildParamList(shape)), seed, 0.3);
  return std::vector<float>(p.begin(), p.end());
}

TEST(BackendDecoder, MatchesTheCpuDecoderStepByStep) {
  const ModelShape shape = SmallShape();
  const std::vector<float> params = RandomParams(shape, 3);
  auto backend = MakeCpuBackend();
  auto ours = MakeBackendDecoder(backend.get(), DType::kF32, shape, params, 4);
  auto reference = MakeCpuDecoder(shape, params, 4);
  const std::vector<int32_t> prompt = {7, 1, 33};
  ASSERT_TRUE(ours->Start(prompt, 3, 10).ok());
  ASSERT_TRUE(reference->Start(prompt, 3, 10).ok());
  Rng rng(9);
  for (int step = 0; step <= 6; ++step) {
    const int n = 3 * shape.padded_vocab_size;
    int bad = 0;
    for (int i = 0; i < n; ++i) {
      const float a = ours->logits()[i], b = reference->logits()[i];
      if (std::isinf(b)) {
        bad += !(std::isinf(a) && a < 0);  // padded entries
      } else {
        bad += !(std::fabs(a - b) <= 1e-4 * (1 + std::fabs(b)));
      }
    }
    ASSERT_EQ(bad, 0) << "step " << step;
    if (step == 6) break;
    std::vector<int32_t> next(3);
    for (auto& t : next)
      t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
    ASSERT_TRUE(ours->Step(next).ok());
    ASSERT_TRUE(reference->Step(next).ok());
  }
  EXPECT_EQ(ours->position(), 9);
  // The cache is full at capacity; bad input is an error, not a crash.
  ASSERT_TRUE(ours->Step(std::vector<int32_t>{1, 2, 3}).ok());
  EXPECT_FALSE(ours->Step(std::vector<int32_t>{1, 2, 3}).ok());
  EXPECT_FALSE(ours->Start(std::vector<int32_t>{}, 1, 5).ok());
  EXPECT_FALSE(ours->Start(std::vector<int32_t>{99}, 1, 5).ok());
  EXPECT_FALSE(ours->Start(prompt, 5, 5).ok());
}

// A backend with "graphs" in the CUDA sense, over the CPU backend: between
// BeginGraph and EndGraph ops are recorded (with the tensors they were given)
// instead of run, and ReplayGraph runs them again; a host copy or allocation
// while recording is an error, as it is during CUDA stream capture. It checks,
// without a GPU, that the decoder's graph use is right: everything that
// changes per position must already be in backend memory.
class RecordingBackend final : public Backend {
 public:
  explicit RecordingBackend(Backend* inner) : inner_(inner) {}
  std::string name() const override { return "recording cpu"; }
  bool SupportsDType(DType d) const override {
    return inner_->SupportsDType(d);
  }
  Tensor Alloc(DType dtype, int64_t numel) override {
    NotWhileRecording("Alloc");
    return inner_->Alloc(dtype, numel);
  }
  void Free(Tensor t) override { inner_->Free(t); }
  void Upload(Tensor dst, const void* src) override {
    NotWhileRecording("Upload");
    inner_->Upload(dst, src);
  }
  void Download(void* dst, Tensor src) override {
    NotWhileRecording("Download");
    inner_->Download(dst, src);
  }
  void Zero(Tensor t) override {
    Do([=] { inner_->Zero(t); });
  }
  void Copy(Tensor dst, Tensor src) override {
    Do([=] { inner_->Copy(dst, src); });
  }
  void Synchronize() override { NotWhileRecording("Synchronize"); }

  bool SupportsGraphs() const override { return true; }
  void BeginGraph() override {
    ASSERT_FALSE(recording_);
    recording_ = true;
    graphs_.emplace_back();
  }
  int EndGraph() override {
    recording_ = false;
    EXPECT_FALSE(graphs_.back().empty()) << "an empty graph";
    return static_cast<int>(graphs_.size()) - 1;
  }
  void ReplayGraph(int graph) override {
    ASSERT_GE(graph, 0);
    ASSERT_LT(graph, static_cast<int>(graphs_.size()));
    ++replays_;
    for (const auto& op : graphs_[graph]) op();
  }

  int graphs() const { return static_cast<int>(graphs_.size()); }
  int replays() const { return replays_; }

 protected:
  void RunEncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe,
                         int B, int T, int C) override {
    Do([=] { inner_->EncoderForward(out, tokens, wte, wpe, B, T, C); });
  }
  void RunEncoderBackward(Tensor, Tensor, Tensor, Tensor, const int32_t*, int,
                          int, int, ParamGrads) override {
    ADD_FAILURE() << "decoding ran a backward op";
  }
  void RunLayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                           Tensor w, Tensor b, int64_t N, int C) override {
    Do([=] { inner_->LayerNormForward(out, mean, rstd, inp, w, b, N, C); });
  }
  void RunLayerNormBackward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                            Tensor, Tensor, int64_t, int, ParamGrads) override {
    ADD_FAILURE() << "decoding ran a backward op";
  }
  void RunMatmulForward(Tensor out, Tensor inp, Tensor w, Tensor b, int64_t N,
                        int C, int OC) override {
    Do([=] { inner_->MatmulForward(out, inp, w, b, N, C, OC); });
  }
  void RunMatmulBackward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                         int64_t, int, int, bool, ParamGrads) override {
    ADD_FAILURE() << "decoding ran a backward op";
  }
  void RunAttentionForward(Tensor, Tensor, Tensor, int, int, int,
                           int) override {
    ADD_FAILURE() << "decoding ran the training attention";
  }
  void RunAttentionBackward(Tensor, Tensor, Tensor, Tensor, Tensor, int, int,
                            int, int) override {
    ADD_FAILURE() << "decoding ran a backward op";
  }
  void RunAttentionDecode(Tensor out, Tensor k, Tensor v, Tensor qkv, int B,
                          int max_T, Tensor pos, int C, int NH) override {
    Do([=] { inner_->AttentionDecode(out, k, v, qkv, B, max_T, pos, C, NH); });
  }
  void RunGeluForward(Tensor out, Tensor inp) override {
    Do([=] { inner_->GeluForward(out, inp); });
  }
  void RunGeluBackward(Tensor, Tensor, Tensor) override {
    ADD_FAILURE() << "decoding ran a backward op";
  }
  void RunResidualForward(Tensor out, Tensor a, Tensor b) override {
    Do([=] { inner_->ResidualForward(out, a, b); });
  }
  void RunAddInPlace(Tensor dst, Tensor src) override {
    Do([=] { inner_->AddInPlace(dst, src); });
  }
  void RunClassifierForward(Tensor, Tensor, Tensor, int64_t, int, int, double,
                            bool) override {
    ADD_FAILURE() << "decoding ran the loss";
  }
  void RunAccumulateSum(Tensor, Tensor, double) override {
    ADD_FAILURE() << "decoding ran a training op";
  }
  void RunSumSquares(Tensor, Tensor) override {
    ADD_FAILURE() << "decoding ran a training op";
  }
  void RunAdamW(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                const AdamWArgs&) override {
    ADD_FAILURE() << "decoding ran a training op";
  }
  void RunMarkAdamWRows(Tensor, Tensor, const AdamWArgs&) override {
    ADD_FAILURE() << "decoding ran a training op";
  }
  void RunCast(Tensor dst, Tensor src) override {
    Do([=] { inner_->Cast(dst, src); });
  }
  void RunSampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                     int rows, int V, int Vp, int top_k, double temperature,
                     double top_p) override {
    Do([=] {
      inner_->SampleTopK(tokens, logits, seeds, counter, rows, V, Vp, top_k,
                         temperature, top_p);
    });
  }

 private:
  void Do(std::function<void()> op) {
    if (recording_) {
      graphs_.back().push_back(std::move(op));
    } else {
      op();
    }
  }
  void NotWhileRecording(const char* what) {
    EXPECT_FALSE(recording_) << what << " while recording a graph";
  }

  Backend* inner_;
  bool recording_ = false;
  std::vector<std::vector<std::function<void()>>> graphs_;
  int replays_ = 0;
};

TEST(BackendDecoder, ReplayedGraphsMatchTheDirectRun) {
  const ModelShape shape = SmallShape();
  const std::vector<float> params = RandomParams(shape, 4);
  auto cpu = MakeCpuBackend();
  RecordingBackend recording(cpu.get());
  auto graphs = MakeBackendDecoder(&recording, DType::kF32, shape, params, 4);
  auto direct = MakeBackendDecoder(cpu.get(), DType::kF32, shape, params, 4);
  Rng rng(11);
  int positions = 0;
  // Two generations with different batch sizes: one graph each.
  for (int batch : {1, 3}) {
    const std::vector<int32_t> prompt = {5, 9, 2};
    ASSERT_TRUE(graphs->Start(prompt, batch, 10).ok());
    ASSERT_TRUE(direct->Start(prompt, batch, 10).ok());
    positions += 3;
    for (int step = 0; step < 5; ++step) {
      const int n = batch * shape.padded_vocab_size;
      int differ = 0;
      for (int i = 0; i < n; ++i) {
        const float a = graphs->logits()[i], b = direct->logits()[i];
        differ += !(a == b || (std::isinf(a) && std::isinf(b)));
      }
      ASSERT_EQ(differ, 0) << "batch " << batch << ", step " << step;
      std::vector<int32_t> next(batch);
      for (auto& t : next)
        t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
      ASSERT_TRUE(graphs->Step(next).ok());
      ASSERT_TRUE(direct->Step(next).ok());
      ++positions;
    }
  }
  // The prompt runs at batch 1 each time; steps at batch 1 and 3. The first
  // position of each batch size runs directly, every later one is a replay.
  EXPECT_EQ(recording.graphs(), 2);
  EXPECT_EQ(recording.replays(), positions - 2);
}

// Generate draws 16 tokens per wait: between the draws the positions run as
// replayed graphs (a recording backend, as CUDA graphs would), the draws and
// their copies outside them. The same tokens as one draw per wait on the plain
// backend, for rows that end at end-of-text at different steps.
TEST(BackendDecoder, DrawingAheadThroughGraphsGivesTheSameTokens) {
  ModelShape shape = SmallShape();
  shape.max_seq_len = 48;  // 45 new tokens: three batches of draws
  std::vector<float> params = RandomParams(shape, 6);
  for (float& p : params) p *= 8;  // peaked logits: tokens recur
  auto cpu = MakeCpuBackend();
  RecordingBackend recording(cpu.get());
  auto ahead = MakeBackendDecoder(&recording, DType::kF32, shape, params, 3);
  setenv("GPT2_DECODE_LOOKAHEAD", "1", 1);
  auto one = MakeBackendDecoder(cpu.get(), DType::kF32, shape, params, 3);
  unsetenv("GPT2_DECODE_LOOKAHEAD");
  ASSERT_EQ(ahead->lookahead(), 16);
  ASSERT_EQ(one->lookahead(), 1);
  GenerateRequest r;
  r.prompt = {5, 9, 2};
  r.num_samples = 3;
  r.max_new_tokens = shape.max_seq_len - 3;
  r.sampling = {10, 1.0};
  r.seed = 21;
  r.stop_at_end_of_text = false;
  auto free_run = Generate(one.get(), r);
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  r.stop_at_end_of_text = true;
  r.end_of_text = free_run->samples[2].tokens[20];  // row 2 ends by step 21
  auto a = Generate(ahead.get(), r), b = Generate(one.get(), r);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a->samples[i].tokens, b->samples[i].tokens) << i;
    EXPECT_EQ(a->samples[i].finish, b->samples[i].finish) << i;
  }
  EXPECT_EQ(a->samples[2].finish, FinishReason::kEndOfText);
  EXPECT_GT(recording.replays(), 0);
}

// SampleNext draws with the backend's op (on a GPU, on the device) what the
// reference draw makes of the decoder's own logits, row by row, at the right
// counter; StepSampled feeds exactly those tokens (also through replayed
// graphs, where they never leave backend memory); a new request's seeds are
// used, not the last ones'.
TEST(BackendDecoder, DrawsTheReferenceTokensAndFeedsThem) {
  const ModelShape shape = SmallShape();
  const std::vector<float> params = RandomParams(shape, 5);
  auto cpu = MakeCpuBackend();
  RecordingBackend recording(cpu.get());
  auto graphs = MakeBackendDecoder(&recording, DType::kF32, shape, params, 4);
  auto fed = MakeBackendDecoder(cpu.get(), DType::kF32, shape, params, 4);
  const std::vector<int32_t> prompt = {3, 8};
  for (uint64_t request = 0; request < 3; ++request) {
    const int batch = 3;
    const std::vector<uint64_t> seeds = {request * 10 + 1, request * 10 + 2,
                                         request * 10 + 3};
    const SamplingParams params_k{request == 2 ? 1 : 20, 0.9};
    ASSERT_TRUE(graphs->Start(prompt, batch, 10).ok());
    ASSERT_TRUE(fed->Start(prompt, batch, 10).ok());
    for (int step = 0; step < 6; ++step) {
      std::vector<int32_t> want(batch), got(batch);
      for (int b = 0; b < batch; ++b) {
        want[b] = cpu::SampleTopKRow(
            graphs->logits() + b * shape.padded_vocab_size, shape.vocab_size,
            params_k.top_k, params_k.temperature, params_k.top_p,
            SampleUniform(seeds[b], graphs->position() - 1));
      }
      ASSERT_TRUE(
          graphs->SampleNext(params_k, seeds, absl::MakeSpan(got)).ok());
      ASSERT_EQ(got, want) << "request " << request << ", step " << step;
      ASSERT_TRUE(graphs->StepSampled().ok());
      // The same tokens fed from the host give the same logits.
      ASSERT_TRUE(fed->Step(got).ok());
      for (int i = 0; i < batch * shape.padded_vocab_size; ++i) {
        const float a = graphs->logits()[i], b = fed->logits()[i];
        ASSERT_TRUE(a == b || (std::isinf(a) && std::isinf(b)))
            << "request " << request << ", step " << step << ", [" << i << "]";
      }
    }
  }
  EXPECT_GT(recording.replays(), 0);
  // StepSampled needs a SampleNext first; SampleNext checks its sizes.
  EXPECT_FALSE(graphs->StepSampled().ok());
  std::vector<int32_t> two(2);
  EXPECT_FALSE(graphs
                   ->SampleNext({50, 1.0}, std::vector<uint64_t>{1, 2},
                                absl::MakeSpan(two))
                   .ok());
}

// GPT2_DEVICE_SAMPLING=0 (the fallback) draws on the host from logits():
// the same tokens as the backend's op on the CPU backend, and the same run.
TEST(BackendDecoder, HostSamplingFallbackDrawsTheSameTokens) {
  const ModelShape shape = SmallShape();
  const std::vector<float> params = RandomParams(shape, 6);
  auto cpu = MakeCpuBackend();
  auto device = MakeBackendDecoder(cpu.get(), DType::kF32, shape, params, 3);
  setenv("GPT2_DEVICE_SAMPLING", "0", 1);
  auto host = MakeBackendDecoder(cpu.get(), DType::kF32, shape, params, 3);
  unsetenv("GPT2_DEVICE_SAMPLING");
  const std::vector<uint64_t> seeds = {4, 5, 6};
  ASSERT_TRUE(device->Start({2, 9}, 3, 10).ok());
  ASSERT_TRUE(host->Start({2, 9}, 3, 10).ok());
  for (int step = 0; step < 6; ++step) {
    std::vector<int32_t> a(3), b(3);
    ASSERT_TRUE(device->SampleNext({20, 0.9}, seeds, absl::MakeSpan(a)).ok());
    ASSERT_TRUE(host->SampleNext({20, 0.9}, seeds, absl::MakeSpan(b)).ok());
    ASSERT_EQ(a, b) << "step " << step;
    ASSERT_TRUE(device->StepSampled().ok());
    ASSERT_TRUE(host->StepSampled().ok());
  }
  EXPECT_FALSE(host->StepSampled().ok()) << "a second StepSampled";
}

}  // namespace
}  // namespace gpt2::infer
