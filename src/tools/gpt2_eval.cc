// gpt2_eval: a model's HellaSwag accuracy (src/infer/hellaswag.h), the
// benchmark llm.c reports for its GPT-2 runs, on GPU 0 or the CPU.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "src/core/thousands.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/infer/hellaswag.h"
#include "src/infer/model_source.h"
#include "src/tools/cli_common.h"
#include "src/tools/decoder_choice.h"

ABSL_FLAG(std::string, checkpoint, "",
          "The model: a gpt2_ddp checkpoint, a run folder (its newest) or a "
          "Hugging Face GPT-2 folder (e.g. OpenAI's). Required.");
ABSL_FLAG(std::string, hellaswag, "",
          "HellaSwag examples, one JSON object per line with \"ctx\", "
          "\"endings\" (4) and \"label\" (rowanz/hellaswag's "
          "data/hellaswag_val.jsonl: 10,042 examples). Required.");
ABSL_FLAG(int, limit, 0, "Score only the first N examples (0: all).");
ABSL_FLAG(double, progress_seconds, 5.0,
          "Seconds between progress lines (how far, the scores so far, the "
          "time left); 0: a line per example.");
ABSL_FLAG(std::string, device, "auto",
          "auto (GPU 0 if a usable GPU is there, else the CPU), cpu or cuda.");
ABSL_FLAG(std::string, precision, "fp32",
          "fp32 or bf16 weights (bf16: faster, the scores move slightly).");
ABSL_FLAG(std::string, data_dir, "",
          "Data directory holding gpt2/encoder.json and gpt2/vocab.bpe. "
          "Default: $GPT2_DATA_DIR, else ./data.");

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status Run() {
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string path = absl::GetFlag(FLAGS_hellaswag);
  const int limit = absl::GetFlag(FLAGS_limit);
  if (checkpoint.empty() || path.empty()) {
    return absl::InvalidArgumentError(
        "--checkpoint and --hellaswag are required (see --help)");
  }
  if (limit < 0) return absl::InvalidArgumentError("--limit must be >= 0");
  if (!(absl::GetFlag(FLAGS_progress_seconds) >= 0)) {
    return absl::InvalidArgumentError("--progress_seconds must be >= 0");
  }
  GPT2_ASSIGN_OR_RETURN(std::vector<infer::HellaSwagExample> examples,
                        infer::ReadHellaSwag(path));
  if (limit > 0 && static_cast<size_t>(limit) < examples.size()) {
    examples.resize(limit);
  }
  GPT2_ASSIGN_OR_RETURN(const Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(
                            ResolveDataDir(absl::GetFlag(FLAGS_data_dir))));
  GPT2_ASSIGN_OR_RETURN(const infer::InferenceModel model,
                        infer::LoadInferenceModel(checkpoint));
  if (model.shape.vocab_size != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.source, ": the model's vocab_size is ", model.shape.vocab_size,
        "; GPT-2's tokenizer needs ", tokenizer.vocab_size()));
  }
  GPT2_ASSIGN_OR_RETURN(DecoderWithBackend made,
                        MakeDecoderFor(absl::GetFlag(FLAGS_device),
                                       absl::GetFlag(FLAGS_precision),
                                       model.shape, model.params, 4));
  std::printf("hellaswag: %zu examples from %s; model %s, %s; decoder %s\n",
              examples.size(), path.c_str(),
              infer::DescribeShape(model.shape, model.num_params).c_str(),
              model.source.c_str(), made.decoder->name().c_str());
  std::fflush(stdout);
  const double progress_seconds = absl::GetFlag(FLAGS_progress_seconds);
  const Clock::time_point start = Clock::now();
  Clock::time_point last_report = start;
  int right = 0, right_norm = 0, done = 0, left_out = 0;
  const auto left_out_note = [&] {
    return left_out > 0 ? absl::StrCat("; ", left_out,
                                       " longer than the model's context of ",
                                       model.shape.max_seq_len, " left out")
                        : std::string();
  };
  const auto seconds = [&] {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  // Every 5 s: how far it is, the scores so far, and how long the rest takes
  // at the pace so far (the whole file takes hours on a CPU).
  const auto progress = [&] {
    const int seen = done + left_out;
    const double s = seconds();
    std::printf(
        "  %d of %zu examples (%.0f%%): acc %.4f, acc_norm %.4f (%.1f s; "
        "about %s left)%s\n",
        seen, examples.size(), 100.0 * seen / examples.size(),
        static_cast<double>(right) / std::max(done, 1),
        static_cast<double>(right_norm) / std::max(done, 1), s,
        Duration(std::llround(s / seen * (examples.size() - seen))).c_str(),
        left_out_note().c_str());
    std::fflush(stdout);
  };
  for (const infer::HellaSwagExample& example : examples) {
    absl::StatusOr<infer::HellaSwagScore> scored =
        infer::ScoreHellaSwag(made.decoder.get(), tokenizer, example);
    // An example longer than the model's context is left out and counted, as
    // training's HellaSwag does (it stopped the whole evaluation).
    if (absl::IsOutOfRange(scored.status())) {
      ++left_out;
    } else {
      GPT2_ASSIGN_OR_RETURN(const infer::HellaSwagScore score, scored);
      right += score.pick == example.label;
      right_norm += score.pick_norm == example.label;
      ++done;
    }
    if (std::chrono::duration<double>(Clock::now() - last_report).count() >=
        progress_seconds) {
      progress();
      last_report = Clock::now();
    }
  }
  if (done == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no example fits the model's context of ",
        model.shape.max_seq_len, " tokens (", left_out, " left out)"));
  }
  std::printf("hellaswag: %d examples: acc %.4f, acc_norm %.4f (%.1f s)%s\n",
              done, static_cast<double>(right) / done,
              static_cast<double>(right_norm) / done, seconds(),
              left_out_note().c_str());
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  return gpt2::ToolMain(
      "gpt2_eval",
      "Measures a model's HellaSwag accuracy, the benchmark llm.c reports for "
      "GPT-2.\n\n"
      "  gpt2_eval --checkpoint logs/gpt2_124m_fineweb10b --hellaswag "
      "hellaswag_val.jsonl\n\n"
      "Each example is a context and four endings; the model picks the ending "
      "whose tokens\nit finds most likely given the context: acc by the total "
      "loss, acc_norm by the loss\nper token (the figure quoted: OpenAI's "
      "GPT-2 124M about 0.29, chance 0.25).\nhellaswag_val.jsonl: "
      "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/"
      "hellaswag_val.jsonl",
      argc, argv, &gpt2::Run);
}
