// HellaSwag during training: the training model's forward (rows padded, in
// chunks of the micro-batch) picks the same endings as the KV-cache decoder,
// examples too long are left out and counted, and a model without GPT-2's
// vocabulary is refused.
#include "src/train/hellaswag_eval.h"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/comm/communicator.h"
#include "src/core/stop_signal.h"
#include "src/infer/decoder.h"
#include "src/infer/model_source.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

constexpr char kExamples[] =
    R"({"ctx": "A man is sitting on a roof. he", "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], "label": 3}
{"ctx": "ROMEO: What light", "endings": ["through yonder window breaks?", "is that?", "goes there.", "and so on."], "label": 0}
{"ctx": "The cook", "endings": [" cracks an egg.", " sings.", " runs away from the kitchen in a hurry.", " eats"], "label": 0}
{"ctx": "A long one, a long one, a long one, a long one, a long one, a long one, a long one, a long one, a long one.", "endings": ["a", "b", "c", "d"], "label": 1}
)";

TEST(HellaSwagEval, TrainingForwardPicksAsTheDecoder) {
  auto tokenizer = testing::TestTokenizer();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::filesystem::path dir = testing::MakeTestDir("gpt2_hs_eval_test");
  const std::string path = (dir / "hs.jsonl").string();
  std::ofstream(path) << kExamples;

  // max_seq 24: the fourth example's rows do not fit.
  infer::InferenceModel m =
      infer::RandomInferenceModel(ModelShape{2, 2, 32, 24, 50257, 50304}, 3);
  for (float& p : m.params) p *= 4.0f;
  auto eval = HellaSwagEval::Load(path, *tokenizer, 0, 24, 50257);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->size(), 3);
  EXPECT_EQ(eval->left_out(), 1);

  // The decoder's picks, example by example.
  auto examples = infer::ReadHellaSwag(path);
  ASSERT_TRUE(examples.ok());
  auto decoder = infer::MakeCpuDecoder(m.shape, m.params, 4, DType::kF32);
  std::vector<infer::HellaSwagScore> by_decoder;
  int64_t right = 0, right_norm = 0;
  for (int e = 0; e < 3; ++e) {
    auto score =
        infer::ScoreHellaSwag(decoder.get(), *tokenizer, (*examples)[e]);
    ASSERT_TRUE(score.ok()) << score.status();
    by_decoder.push_back(*score);
    right += score->pick == (*examples)[e].label;
    right_norm += score->pick_norm == (*examples)[e].label;
  }

  std::unique_ptr<Backend> backend = MakeCpuBackend();
  std::unique_ptr<Communicator> comm = MakeSingleRankCommunicator();
  Tensor sums = backend->Alloc(DType::kF32, 3);
  for (const int max_batch : {4, 3, 1}) {  // rows in chunks
    Gpt2Model model(backend.get(), m.shape, DType::kF32, max_batch, 23);
    model.SetParams(std::vector<double>(m.params.begin(), m.params.end()));
    // Each ending's loss, and so each pick, as the decoder's.
    for (size_t e = 0; e < 3; ++e) {
      const infer::HellaSwagScore s =
          eval->Score(e, &model, backend.get(), max_batch);
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(s.endings[i].tokens, by_decoder[e].endings[i].tokens);
        EXPECT_NEAR(s.endings[i].loss_sum, by_decoder[e].endings[i].loss_sum,
                    1e-4 * by_decoder[e].endings[i].loss_sum)
            << "example " << e << " ending " << i << " batch " << max_batch;
      }
      EXPECT_EQ(s.pick, by_decoder[e].pick);
      EXPECT_EQ(s.pick_norm, by_decoder[e].pick_norm);
    }
    const HellaSwagEval::Result r =
        eval->Run(&model, backend.get(), comm.get(), 0, 1, max_batch, sums);
    EXPECT_EQ(r.examples, 3) << max_batch;
    EXPECT_EQ(r.right, right) << max_batch;
    EXPECT_EQ(r.right_norm, right_norm) << max_batch;
  }
  // Shares of two ranks cover the examples once (each rank alone).
  Gpt2Model model(backend.get(), m.shape, DType::kF32, 4, 23);
  model.SetParams(std::vector<double>(m.params.begin(), m.params.end()));
  const auto share0 =
      eval->Run(&model, backend.get(), comm.get(), 0, 2, 4, sums);
  const auto share1 =
      eval->Run(&model, backend.get(), comm.get(), 1, 2, 4, sums);
  EXPECT_EQ(share0.examples, 2);
  EXPECT_EQ(share1.examples, 1);
  EXPECT_EQ(share0.right_norm + share1.right_norm, right_norm);
  // A stop signal (Ctrl-C) ends the pass: nothing more is scored.
  InstallStopSignals("");
  std::raise(SIGINT);
  EXPECT_EQ(
      eval->Run(&model, backend.get(), comm.get(), 0, 1, 4, sums).examples, 0);
  InstallStopSignals("");  // no flag left for later tests
  backend->Free(sums);
  // Not GPT-2's vocabulary: refused.
  EXPECT_NE(HellaSwagEval::Load(path, *tokenizer, 0, 24, 256)
                .status()
                .message()
                .find("needs GPT-2's vocabulary"),
            std::string::npos);
  // --limit-like: the first N.
  EXPECT_EQ(HellaSwagEval::Load(path, *tokenizer, 2, 24, 50257)->size(), 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gpt2
