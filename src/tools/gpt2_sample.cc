// gpt2_sample: continues a prompt with a trained checkpoint on a GPU or the
// CPU (the KV-cache decoders of src/infer), and benchmarks decode speed
// (--bench).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "src/core/env.h"
#include "src/core/error.h"
#include "src/core/rng.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"
#include "src/infer/model_source.h"
#include "src/infer/sampler.h"
#include "src/infer/text_stream.h"
#include "src/tools/cli_common.h"
#include "src/tools/decoder_choice.h"

ABSL_FLAG(std::string, checkpoint, "",
          "A gpt2_ddp checkpoint (.ckpt), e.g. "
          "<run_dir>/<run_name>/checkpoints/step_00000300.ckpt, or a run "
          "folder (e.g. logs/tiny_cpu) for its newest, or a Hugging Face GPT-2 "
          "folder (model.safetensors + config.json, e.g. OpenAI's "
          "openai-community/gpt2). Required, except with --bench "
          "--random_124m.");
ABSL_FLAG(std::string, prompt, "",
          "The text to continue. Required and non-empty (the model needs at "
          "least one token to condition on); it must encode to fewer tokens "
          "than the model's context (model.max_seq_len). <|endoftext|> in it "
          "is ordinary text.");
ABSL_FLAG(int, num_samples, 5,
          "Samples to draw, decoded together as one batch: 1..64.");
ABSL_FLAG(int, max_new_tokens, 50,
          "New tokens per sample, >= 1; generation also stops when the "
          "context is full, and a sample stops when it draws <|endoftext|>.");
ABSL_FLAG(int, top_k, 50,
          "Sample among the k most likely tokens, >= 1 (1 = greedy).");
ABSL_FLAG(double, temperature, 1.0,
          "Divides the logits before top-k sampling; > 0 (lower = more "
          "conservative).");
ABSL_FLAG(double, top_p, 1.0,
          "Nucleus sampling, after top-k and temperature: only the most "
          "likely tokens that together hold at least this share of the "
          "probability; in (0, 1], 1 = off.");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "Stop sequences, comma-separated, with C escapes (e.g. '\\n\\n' "
          "for a blank line, '\\x2c' for a comma): a sample ends where its "
          "text first holds one, and is printed without it. Empty: none.");
ABSL_FLAG(uint64_t, seed, 1337,
          "Random seed. The same seed gives the same text on the same "
          "backend; sample i's text does not depend on --num_samples.");
ABSL_FLAG(std::string, data_dir, "", gpt2::kTokenizerDataDirHelp);
ABSL_FLAG(std::string, device, "auto", gpt2::kDecodeDeviceHelp);
ABSL_FLAG(std::string, precision, "bf16", gpt2::kDecodePrecisionHelp);
ABSL_FLAG(bool, bench, false,
          "Instead of sampling: time decoding (sampling included) at batch 1 "
          "and 8 and print the median tokens/s of --bench_runs runs.");
ABSL_FLAG(bool, random_124m, false,
          "With --bench: a GPT-2 124M-shaped model with random weights "
          "instead of --checkpoint.");
ABSL_FLAG(int, bench_tokens, 64,
          "With --bench: decode steps per run (cut to fit the context).");
ABSL_FLAG(int, bench_runs, 3, "With --bench: runs per batch size, >= 1.");

namespace gpt2 {
namespace {

constexpr int kMaxSamples = 64;
constexpr char kTool[] = "gpt2_sample";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// --top_k, --temperature and --top_p; an error naming the flag.
absl::StatusOr<infer::SamplingParams> SamplingFromFlags() {
  const infer::SamplingParams sampling{absl::GetFlag(FLAGS_top_k),
                                       absl::GetFlag(FLAGS_temperature),
                                       absl::GetFlag(FLAGS_top_p)};
  if (absl::Status s = infer::ValidateSamplingParams(sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", s.message()));
  }
  return sampling;
}

// Decode tokens/s at batch 1 and 8: a short prompt, then `steps` rounds of
// sampling (--top_k, --temperature, --top_p) and one Step each.
absl::Status Bench(const infer::InferenceModel& model) {
  const ModelShape& shape = model.shape;
  GPT2_ASSIGN_OR_RETURN(const infer::SamplingParams sampling,
                        SamplingFromFlags());
  const std::string sampled =
      sampling.top_p < 1.0 ? absl::StrFormat("top-k %d, top-p %g",
                                             sampling.top_k, sampling.top_p)
                           : absl::StrFormat("top-k %d", sampling.top_k);
  const int prompt_len = std::max(1, std::min(8, shape.max_seq_len / 4));
  const int steps = std::min(absl::GetFlag(FLAGS_bench_tokens),
                             shape.max_seq_len - prompt_len);
  const int runs = absl::GetFlag(FLAGS_bench_runs);
  if (steps < 1 || runs < 1) {
    return absl::InvalidArgumentError(
        "--bench_tokens and --bench_runs must be at least 1");
  }
  std::vector<int32_t> prompt(prompt_len);
  for (int i = 0; i < prompt_len; ++i) {
    prompt[i] =
        static_cast<int32_t>((int64_t{i} * 7919 + 13) % shape.vocab_size);
  }
  std::printf("model: %s, %s\n",
              infer::DescribeShape(shape, model.num_params).c_str(),
              model.source.c_str());
  GPT2_ASSIGN_OR_RETURN(
      DecoderWithBackend made,
      MakeDecoderFor(absl::GetFlag(FLAGS_device),
                     absl::GetFlag(FLAGS_precision), shape, model.params, 8));
  std::unique_ptr<infer::Decoder>& decoder = made.decoder;
  std::printf(
      "decoder: %s, %d OpenMP threads; prompt %d tokens, %d "
      "decode steps per run, median of %d runs\n",
      decoder->name().c_str(), omp_get_max_threads(), prompt_len, steps, runs);
  using Clock = std::chrono::steady_clock;
  auto ms_between = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  // One run: Start, then `steps` draws, `ahead` at a time (each but the last
  // fed to draw the next, as Generate does); tokens/s of the draws.
  auto run_once = [&](int batch, int ahead, uint64_t seed0,
                      double* prefill) -> absl::StatusOr<double> {
    std::vector<uint64_t> seeds(batch);
    for (int b = 0; b < batch; ++b) seeds[b] = seed0 + b;
    const auto t0 = Clock::now();
    GPT2_RETURN_IF_ERROR(decoder->Start(prompt, batch, prompt_len + steps));
    const auto t1 = Clock::now();
    std::vector<int32_t> next;
    for (int s = 0; s < steps;) {
      const int n = std::min(ahead, steps - s);
      next.resize(static_cast<size_t>(n) * batch);
      GPT2_RETURN_IF_ERROR(
          decoder->SampleAhead(sampling, seeds, n, absl::MakeSpan(next)));
      s += n;
      if (s < steps) GPT2_RETURN_IF_ERROR(decoder->StepSampled());
    }
    const auto t2 = Clock::now();
    *prefill = ms_between(t0, t1);
    return batch * steps / (ms_between(t1, t2) / 1000.0);
  };
  const int ahead = decoder->lookahead();
  for (int batch : {1, 8}) {
    // What gpt2_sample and gpt2_serve do (lookahead() draws per wait for the
    // device), then, where that is more than one, a draw per wait.
    for (const int per_wait :
         ahead > 1 ? std::vector<int>{ahead, 1} : std::vector<int>{1}) {
      std::vector<double> rates, prefill_ms;
      for (int run = 0; run < runs; ++run) {
        double prefill = 0.0;
        GPT2_ASSIGN_OR_RETURN(const double rate,
                              run_once(batch, per_wait, run * 8, &prefill));
        rates.push_back(rate);
        prefill_ms.push_back(prefill);
      }
      // A step: the top-k draw (on the decoder's device; the tokens come
      // back) and the forward of one position.
      std::printf(
          "decode batch %d%s: %.1f tokens/s (%.2f ms/step, %s sampling "
          "included%s; prefill %.1f ms)\n",
          batch, per_wait == ahead ? "" : " (one draw per wait)", Median(rates),
          1000.0 * batch / Median(rates), sampled.c_str(),
          ahead > 1
              ? absl::StrCat(", ", per_wait, " draw", per_wait > 1 ? "s" : "",
                             " per wait for the device")
                    .c_str()
              : "",
          Median(prefill_ms));
      std::fflush(stdout);
    }
  }
  // Where a token's device time goes, op by op (CUDA events, batch 1). Only
  // without graphs (GPT2_DECODE_GRAPHS=0): a recorded graph cannot hold the
  // timing events, and timed ops run one at a time anyway.
  if (made.backend != nullptr &&
      (!made.backend->SupportsGraphs() || EnvIs("GPT2_DECODE_GRAPHS", "0"))) {
    GPT2_RETURN_IF_ERROR(decoder->Start(prompt, 1, prompt_len + steps));
    made.backend->EnableOpTiming(true);
    std::vector<int32_t> next(1);
    for (int s = 0; s < steps; ++s) {
      GPT2_RETURN_IF_ERROR(
          decoder->SampleNext({50, 1.0}, {uint64_t{1}}, absl::MakeSpan(next)));
      GPT2_RETURN_IF_ERROR(decoder->StepSampled());
    }
    const std::vector<OpTiming> timings = made.backend->TakeOpTimings();
    made.backend->EnableOpTiming(false);
    double total_ms = 0.0;
    for (const OpTiming& t : timings) total_ms += t.ms;
    if (!timings.empty()) {
      std::printf(
          "device time per token at batch 1, op by op (CUDA events, graphs "
          "off): %.1f us in all\n",
          1000.0 * total_ms / steps);
    }
    for (const OpTiming& t : timings) {
      std::printf("  %-22s %5.1f calls %8.1f us\n", t.op.c_str(),
                  static_cast<double>(t.calls) / steps, 1000.0 * t.ms / steps);
    }
  }
  return absl::OkStatus();
}

absl::Status Sample(const infer::InferenceModel& model) {
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  if (prompt_text.empty()) {
    return absl::InvalidArgumentError(
        "--prompt TEXT is required and must not be empty (see --help)");
  }
  const int num_samples = absl::GetFlag(FLAGS_num_samples);
  if (num_samples < 1 || num_samples > kMaxSamples) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--num_samples = ", num_samples, " is outside [1, ", kMaxSamples, "]"));
  }
  GPT2_ASSIGN_OR_RETURN(const Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(
                            ResolveDataDir(absl::GetFlag(FLAGS_data_dir))));
  if (model.shape.vocab_size != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.source, ": the model's vocab_size is ", model.shape.vocab_size,
        "; GPT-2's tokenizer needs ", tokenizer.vocab_size()));
  }
  infer::GenerateRequest request;
  for (int id : tokenizer.Encode(prompt_text)) request.prompt.push_back(id);
  request.num_samples = num_samples;
  request.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  GPT2_ASSIGN_OR_RETURN(request.sampling, SamplingFromFlags());
  request.seed = absl::GetFlag(FLAGS_seed);
  request.end_of_text = Tokenizer::kEndOfText;
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) {
    std::string unescaped, error;
    if (!absl::CUnescape(stop, &unescaped, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stop '", stop, "': ", error));
    }
    if (unescaped.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stop: an empty sequence in '",
                       absl::StrJoin(absl::GetFlag(FLAGS_stop), ","), "'"));
    }
    request.stop.push_back(unescaped);
  }
  if (absl::Status s =
          infer::ValidateGenerateRequest(model.shape, kMaxSamples, request);
      !s.ok()) {
    // Name the flags, not the request fields.
    return absl::InvalidArgumentError(absl::StrCat("--", s.message()));
  }
  if (const int limit = infer::NewTokenLimit(model.shape, request);
      limit < request.max_new_tokens) {
    std::fprintf(stderr,
                 "note: --max_new_tokens %d cut to %d: the model's context is "
                 "%d tokens and the prompt takes %zu\n",
                 request.max_new_tokens, limit, model.shape.max_seq_len,
                 request.prompt.size());
  }
  GPT2_ASSIGN_OR_RETURN(DecoderWithBackend made,
                        MakeDecoderFor(absl::GetFlag(FLAGS_device),
                                       absl::GetFlag(FLAGS_precision),
                                       model.shape, model.params, num_samples));
  // One sample is printed as it is drawn (the same bytes in the end; text that
  // may start the stop sequence waits for the next tokens); several are drawn
  // side by side and printed when done.
  infer::TextStream stream(&tokenizer, 1, request.stop);
  auto print = [](const std::string& piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  infer::GenerateProgress stream_one = nullptr;
  if (num_samples == 1) {
    print(prompt_text);
    stream_one = [&](const std::vector<infer::GeneratedSample>& samples) {
      print(stream.Take(samples)[0]);
      return true;
    };
  }
  GPT2_ASSIGN_OR_RETURN(
      const infer::GenerateResult result,
      infer::Generate(made.decoder.get(), request, stream_one, &tokenizer));
  if (num_samples == 1) print(stream.Rest(result.samples)[0] + "\n");
  for (size_t i = 0; i < result.samples.size() && num_samples > 1; ++i) {
    if (i > 0) std::printf("======\n");
    GPT2_ASSIGN_OR_RETURN(const std::string text,
                          infer::SampleText(tokenizer, result.samples[i]));
    std::printf("%s%s\n", prompt_text.c_str(), text.c_str());
  }
  std::printf("======\n");
  const double seconds = result.prefill_seconds + result.decode_seconds;
  std::printf(
      "%d sample%s, %lld new tokens in %.3f s: %.1f tokens/s (prompt %zu "
      "tokens, prefill %.1f ms; decoder %s)\n",
      num_samples, num_samples == 1 ? "" : "s",
      static_cast<long long>(result.new_tokens), seconds,
      seconds > 0 ? result.new_tokens / seconds : 0.0, request.prompt.size(),
      1000.0 * result.prefill_seconds, made.decoder->name().c_str());
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const bool random = absl::GetFlag(FLAGS_random_124m);
  if (random && !absl::GetFlag(FLAGS_bench)) {
    return absl::InvalidArgumentError("--random_124m only goes with --bench");
  }
  if (!absl::GetFlag(FLAGS_bench)) {
    GPT2_RETURN_IF_ERROR(RefuseFlagsGiven({"bench_tokens", "bench_runs"},
                                          "sampling (they go with --bench)"));
  }
  if (random && !checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "give --checkpoint or --random_124m, not both");
  }
  if (!random && checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "--checkpoint FILE is required (see --help)");
  }
  // Check cheap flags before loading a big model.
  if (!absl::GetFlag(FLAGS_bench) && absl::GetFlag(FLAGS_prompt).empty()) {
    return absl::InvalidArgumentError(
        "--prompt TEXT is required and must not be empty (see --help)");
  }
  GPT2_RETURN_IF_ERROR(SamplingFromFlags().status());
  infer::InferenceModel model;
  if (random) {
    model = infer::RandomInferenceModel(ModelShape::Gpt2Small(), 1337);
  } else {
    GPT2_ASSIGN_OR_RETURN(model, infer::LoadInferenceModel(checkpoint));
  }
  return absl::GetFlag(FLAGS_bench) ? Bench(model) : Sample(model);
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  return gpt2::ToolMain(
      gpt2::kTool,
      "Continues a prompt with a gpt2_ddp checkpoint, on GPU 0 if one is "
      "usable, else on the CPU (--device).\n\n"
      "  gpt2_sample --checkpoint logs/tiny_cpu --prompt 'ROMEO:'   (the run's "
      "newest checkpoint)\n"
      "  gpt2_sample --checkpoint FILE --prompt TEXT --num_samples 3 "
      "--max_new_tokens 100 --top_k 40 --temperature 0.8 --top_p 0.9 "
      "--seed 7\n"
      "  gpt2_sample --checkpoint FILE --bench      (decode tokens/s at batch "
      "1 and 8)\n"
      "  gpt2_sample --bench --random_124m         (the same for a GPT-2 "
      "124M shape)\n\n"
      "Prints the samples (prompt + continuation) separated by ====== lines, "
      "then the tokens/s.",
      argc, argv, &gpt2::Run);
}
