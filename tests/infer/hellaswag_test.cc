// HellaSwag scoring: the examples are read or refused by line, and each
// ending's loss from the KV-cache decoder (the four endings side by side) is
// the training forward's loss of that ending's tokens.
#include "src/infer/hellaswag.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/backend.h"
#include "src/infer/model_source.h"
#include "src/model/gpt2.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

namespace fs = std::filesystem;

class HellaSwagTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTestDir("gpt2_hellaswag_test"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  fs::path dir_;
};

constexpr char kExample[] =
    R"({"ind": 4, "ctx": "A man is sitting on a roof. he", )"
    R"("endings": ["is using wrap to wrap a pair of skis.", "is ripping level )"
    R"(tiles off.", "is holding a rubik's cube.", "starts pulling up roofing )"
    R"(on a roof."], "label": 3, "split": "val"})";

TEST_F(HellaSwagTest, ReadsExamplesAndNamesBadLines) {
  const std::string good =
      Write("good.jsonl", std::string(kExample) + "\n\n" + kExample + "\r\n");
  auto examples = ReadHellaSwag(good);
  ASSERT_TRUE(examples.ok()) << examples.status();
  ASSERT_EQ(examples->size(), 2u);
  EXPECT_EQ((*examples)[0].context, "A man is sitting on a roof. he");
  EXPECT_EQ((*examples)[0].endings[3], "starts pulling up roofing on a roof.");
  EXPECT_EQ((*examples)[0].label, 3);
  EXPECT_EQ((*examples)[1].where, good + ":3");
  const auto error = [&](const std::string& line) {
    const std::string path =
        Write("bad.jsonl", std::string(kExample) + "\n" + line + "\n");
    return std::string(ReadHellaSwag(path).status().message());
  };
  EXPECT_NE(error(R"({"ctx": "x", "endings": ["a", "b", "c"], "label": 0})")
                .find("bad.jsonl:2: not a HellaSwag example"),
            std::string::npos);
  EXPECT_NE(
      error(R"({"ctx": "x", "endings": ["a", "b", "c", "d"], "label": 4})")
          .find("bad.jsonl:2: not a HellaSwag example"),
      std::string::npos);
  EXPECT_NE(error(R"({"ctx": "x", "endings": ["a", "b", "c", 5], "label": 1})")
                .find("ending 3 is not a string"),
            std::string::npos);
  EXPECT_NE(error("{oops").find("bad.jsonl:2: not JSON"), std::string::npos);
  EXPECT_FALSE(ReadHellaSwag(Write("empty.jsonl", "\n")).ok());
  EXPECT_FALSE(ReadHellaSwag((dir_ / "missing.jsonl").string()).ok());
}

TEST_F(HellaSwagTest, EndingLossesAreTheTrainingForwardsLosses) {
  auto tokenizer = testing::TestTokenizer();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // GPT-2's vocabulary, a small body; weights scaled for peaked logits.
  InferenceModel model =
      RandomInferenceModel(ModelShape{2, 2, 32, 64, 50257, 50304}, 5);
  for (float& p : model.params) p *= 4.0f;
  auto decoder = MakeCpuDecoder(model.shape, model.params, 4, DType::kF32);
  auto examples = ReadHellaSwag(Write("one.jsonl", kExample));
  ASSERT_TRUE(examples.ok()) << examples.status();
  const HellaSwagExample& example = (*examples)[0];
  auto score = ScoreHellaSwag(decoder.get(), *tokenizer, example);
  ASSERT_TRUE(score.ok()) << score.status();

  // Each ending alone through the training model's forward (fp32, CPU):
  // tokens context + ending, the loss of every ending token.
  std::unique_ptr<Backend> backend = MakeCpuBackend();
  const std::vector<double> params(model.params.begin(), model.params.end());
  const std::vector<int> context = tokenizer->Encode(example.context);
  for (int i = 0; i < 4; ++i) {
    const std::vector<int> ending = tokenizer->Encode(" " + example.endings[i]);
    std::vector<int32_t> all(context.begin(), context.end());
    all.insert(all.end(), ending.begin(), ending.end());
    const int T = static_cast<int>(all.size()) - 1;
    Gpt2Model gpt2(backend.get(), model.shape, DType::kF32, 1, T);
    gpt2.SetParams(params);
    const std::vector<int32_t> inputs(all.begin(), all.end() - 1);
    const std::vector<int32_t> targets(all.begin() + 1, all.end());
    gpt2.Forward(inputs.data(), targets.data(), 1, T, 0.0, false);
    std::vector<float> losses(T);
    backend->Download(losses.data(), gpt2.losses());
    double sum = 0.0;
    for (int t = static_cast<int>(context.size()) - 1; t < T; ++t) {
      sum += losses[t];
    }
    EXPECT_EQ(score->endings[i].tokens, static_cast<int>(ending.size()));
    EXPECT_NEAR(score->endings[i].loss_sum, sum, 1e-4 * sum) << "ending " << i;
  }
  // The picks: the lowest total, and the lowest per token.
  for (int i = 0; i < 4; ++i) {
    EXPECT_LE(score->endings[score->pick].loss_sum, score->endings[i].loss_sum);
    EXPECT_LE(score->endings[score->pick_norm].mean(),
              score->endings[i].mean());
  }
  // A context that leaves no room for the endings is refused, not cut, as
  // OutOfRange (gpt2_eval leaves such an example out).
  HellaSwagExample long_one = example;
  for (int k = 0; k < 80; ++k) long_one.context += " and then";
  const auto refused = ScoreHellaSwag(decoder.get(), *tokenizer, long_one);
  EXPECT_TRUE(absl::IsOutOfRange(refused.status())) << refused.status();
  EXPECT_NE(
      refused.status().message().find("do not fit the model's context of 64"),
      std::string::npos);
}

}  // namespace
}  // namespace gpt2::infer
