#include "src/train/final_samples.h"

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/error.h"
#include "src/core/files.h"
#include "src/core/stop_signal.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"
#include "src/train/test_hooks.h"

namespace gpt2 {

absl::StatusOr<FinalSamples> FinalSamples::Prepare(const config::LogConfig& log,
                                                   const std::string& data_dir,
                                                   const ModelShape& shape,
                                                   uint64_t seed) {
  FinalSamples samples;
  if (log.sample_prompts().empty()) return samples;
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::LoadFromDataDir(data_dir);
  if (!tokenizer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("log.sample_prompts needs GPT-2's tokenizer: ",
                     tokenizer.status().message()));
  }
  if (tokenizer->vocab_size() != shape.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "log.sample_prompts needs GPT-2's tokenizer, which has ",
        tokenizer->vocab_size(), " tokens; this model's model.vocab_size is ",
        shape.vocab_size));
  }
  samples.tokenizer_.emplace(*std::move(tokenizer));
  samples.shape_ = shape;
  samples.new_tokens_ = log.sample_tokens();
  samples.per_prompt_ = log.samples_per_prompt();
  samples.seed_ = seed;
  samples.data_dir_ = data_dir;
  for (const std::string& prompt : log.sample_prompts()) {
    const std::vector<int> ids = samples.tokenizer_->Encode(prompt);
    if (static_cast<int64_t>(ids.size()) >= shape.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "log.sample_prompts: '", prompt, "' is ", ids.size(),
          " tokens; the model's context (model.max_seq_len) is ",
          shape.max_seq_len, ", which leaves no room to continue it"));
    }
    samples.prompts_.push_back(prompt);
    samples.prompt_ids_.emplace_back(ids.begin(), ids.end());
  }
  return samples;
}

absl::Status FinalSamples::Run(Backend* backend, DType dtype,
                               const std::vector<float>& params, int64_t step,
                               const std::string& run_dir,
                               const std::string& checkpoint,
                               RunLog* log) const {
  if (empty()) return absl::OkStatus();
  // The CPU backend's own decoder is the fast one there (and takes any
  // training precision); a GPU decodes on the device it trained on.
  const bool decoder_on_cpu = backend->name() == "cpu";
  std::unique_ptr<infer::Decoder> decoder =
      decoder_on_cpu ? infer::MakeCpuDecoder(shape_, params, per_prompt_)
                     : infer::MakeBackendDecoder(backend, dtype, shape_, params,
                                                 per_prompt_);
  std::string text;
  std::string markdown;  // the same samples for TensorBoard's Text tab
  int64_t new_tokens = 0;
  double seconds = 0.0;
  for (size_t p = 0; p < prompts_.size(); ++p) {
    infer::GenerateRequest request;
    request.prompt = prompt_ids_[p];
    request.num_samples = per_prompt_;
    request.max_new_tokens = new_tokens_;
    request.seed = infer::SampleSeed(seed_, static_cast<int>(p));
    request.end_of_text = Tokenizer::kEndOfText;
    GPT2_RETURN_IF_ERROR(
        infer::ValidateGenerateRequest(shape_, per_prompt_, request));
    if (p == 0) InjectNamedSignalForTests("GPT2_TEST_SIGNAL_IN_SAMPLES");
    // Ctrl-C (or SIGTERM, SIGUSR1) while sampling stops it: the run is saved.
    absl::StatusOr<infer::GenerateResult> generated = infer::Generate(
        decoder.get(), request, [](const std::vector<infer::GeneratedSample>&) {
          return StopSignalReceived() == 0;
        });
    if (absl::IsCancelled(generated.status())) {
      return absl::CancelledError(
          absl::StrCat(StopSignalName(StopSignalReceived()),
                       " received: the samples were stopped (none written)"));
    }
    GPT2_ASSIGN_OR_RETURN(const infer::GenerateResult result, generated);
    for (const infer::GeneratedSample& sample : result.samples) {
      const std::vector<int> ids(sample.tokens.begin(), sample.tokens.end());
      GPT2_ASSIGN_OR_RETURN(const std::string continuation,
                            tokenizer_->DecodeChecked(ids));
      absl::StrAppend(&text, prompts_[p], continuation, "\n======\n");
      // Fenced, so that Markdown keeps the lines and spaces as they are.
      absl::StrAppend(&markdown, "```\n", prompts_[p], continuation,
                      "\n```\n\n");
    }
    new_tokens += result.new_tokens;
    seconds += result.prefill_seconds + result.decode_seconds;
  }
  // The console, train.log and the event file first: samples.txt failing to
  // be written (a full disk) then costs only that file.
  const std::string path = run_dir + "/samples.txt";
  // A prompt whose continuation reaches the model's context stops there.
  bool cut = false;
  for (const std::vector<int32_t>& ids : prompt_ids_) {
    cut |= static_cast<int64_t>(ids.size()) + new_tokens_ > shape_.max_seq_len;
  }
  log->Line(absl::StrFormat(
      "samples from the model after step %d (top-k 50, %d new tokens each%s; "
      "%s, %.1f tokens/s), also in %s:",
      step, new_tokens_,
      cut ? absl::StrFormat(", fewer where the model's context of %d tokens "
                            "ends first",
                            shape_.max_seq_len)
          : "",
      decoder->name(), seconds > 0 ? new_tokens / seconds : 0.0, path));
  log->Line("======\n" + text.substr(0, text.empty() ? 0 : text.size() - 1));
  // The same samples again, from the checkpoint of these weights: each
  // prompt's seed, on the backend and precision they were drawn with.
  if (!checkpoint.empty()) {
    std::string flags = absl::StrFormat(
        "--num_samples %d --max_new_tokens %d --device %s --precision %s",
        per_prompt_, new_tokens_, decoder_on_cpu ? "cpu" : "cuda",
        decoder_on_cpu || dtype != DType::kBF16 ? "fp32" : "bf16");
    // Always named: the GPT2_DATA_DIR the run saw may not be set where the
    // command is run.
    absl::StrAppend(&flags, " --data_dir ", ShellWord(data_dir_));
    std::string commands = absl::StrCat(
        "the same samples again", decoder_on_cpu ? "" : " (on GPU 0)", ":");
    for (size_t p = 0; p < prompts_.size(); ++p) {
      absl::StrAppendFormat(
          &commands, "\n  %s --checkpoint %s --prompt %s --seed %d %s",
          SiblingTool("gpt2_sample"), ShellWord(checkpoint),
          ShellWord(prompts_[p]), infer::SampleSeed(seed_, static_cast<int>(p)),
          flags);
    }
    log->Line(commands);
  }
  log->Text(step, "samples", markdown);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return absl::InternalError(
        absl::StrCat("cannot write ", path, " (the samples are above)"));
  }
  return absl::OkStatus();
}

}  // namespace gpt2
