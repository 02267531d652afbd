// gpt2_serve: a web page and a JSON API that sample from a gpt2_ddp checkpoint
// (or a Hugging Face GPT-2) on GPU 0 or the CPU. One model, one worker
// thread (src/serve/model_worker.h): requests are parsed and checked on the
// connection threads (src/serve/http.h), then queue for the worker in arrival
// order, so concurrent requests are all answered and never share the model.
// A streamed answer is written by its connection thread as the worker hands
// it the text, in the shape of the API asked (src/serve/api.h).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "src/core/error.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/infer/generate.h"
#include "src/infer/model_source.h"
#include "src/tools/cli_common.h"
#include "src/tools/decoder_choice.h"

#ifndef GPT2_SERVE_STUB
#include "src/serve/api.h"
#include "src/serve/http.h"
#include "src/serve/model_worker.h"
#include "src/serve/request.h"
#include "src/tools/serve_page.h"
#endif

ABSL_FLAG(std::string, device, "auto", gpt2::kDecodeDeviceHelp);
ABSL_FLAG(std::string, precision, "bf16", gpt2::kDecodePrecisionHelp);
ABSL_FLAG(std::string, checkpoint, "",
          "The gpt2_ddp checkpoint (.ckpt) to serve, a run folder for its "
          "newest, or a Hugging Face GPT-2 folder (model.safetensors + "
          "config.json). Required. Loaded once at start-up.");
ABSL_FLAG(int, port, 8080,
          "TCP port. 0 picks a free one; the chosen port is printed as "
          "'gpt2_serve: listening on http://HOST:PORT'.");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to bind. The default serves this machine only; 0.0.0.0 "
          "exposes the model to the network.");
ABSL_FLAG(std::string, data_dir, "", gpt2::kTokenizerDataDirHelp);
ABSL_FLAG(int, http_threads, 256,
          "Most connections served at once (1..4096): each open connection "
          "holds a thread, made when needed, while it is read, waits for the "
          "model and is answered (a slow client holds its own only); more "
          "connections wait for a thread.");

namespace gpt2 {
namespace {

constexpr char kTool[] = "gpt2_serve";

#ifndef GPT2_SERVE_STUB
using serve::Answer;
using serve::ApiFormat;
using serve::CompletionsFormat;
using serve::ErrorJson;
using serve::GenerateFormat;
using serve::HttpServer;
using serve::Json;
using serve::kMaxBodyBytes;
using serve::kMaxNewTokens;
using serve::kMaxPromptBytes;
using serve::kMaxSamples;
using serve::kMaxTemperature;
using serve::LogField;
using serve::ModelId;
using serve::ModelInfo;
using serve::ModelWorker;
using serve::ParseCompletionsBody;
using serve::ParseGenerateBody;
using serve::ServedModel;
using serve::SetJson;
using serve::SignalWatcher;

std::string HtmlEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"},
                                 {"<", "&lt;"},
                                 {">", "&gt;"},
                                 {"\"", "&quot;"},
                                 {"'", "&#39;"}});
}

std::string RenderPage(const ServedModel& served,
                       const std::string& decoder_name) {
  const ModelShape& s = served.model.shape;
  const bool hf = served.model.hugging_face;
  const std::string title =
      absl::StrFormat("GPT-2 %.1fM (%d layer%s, %d channels), %s",
                      served.model.num_params / 1e6, s.num_layers,
                      s.num_layers == 1 ? "" : "s", s.channels,
                      hf ? std::string("Hugging Face weights")
                         : absl::StrCat("step ", served.model.step));
  const std::string subtitle =
      absl::StrCat(infer::DescribeShape(s, served.model.num_params),
                   hf ? " · weights " : " · checkpoint ", served.model.source,
                   hf ? "" : " · trained with gpt2_ddp",
                   " · KV-cache decoding on ", decoder_name);
  return absl::StrReplaceAll(
      kServePage, {{"{{TITLE}}", HtmlEscape(title)},
                   {"{{SUBTITLE}}", HtmlEscape(subtitle)},
                   {"{{MAX_PROMPT_BYTES}}", absl::StrCat(kMaxPromptBytes)},
                   {"{{MAX_SAMPLES}}", absl::StrCat(kMaxSamples)},
                   {"{{MAX_NEW_TOKENS}}",
                    absl::StrCat(std::min(kMaxNewTokens, s.max_seq_len - 1))},
                   {"{{DEFAULT_NEW_TOKENS}}",
                    absl::StrCat(std::min(50, s.max_seq_len - 1))},
                   {"{{VOCAB_SIZE}}", absl::StrCat(s.vocab_size)}});
}

absl::Status Serve() {
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is not our death
  // First: every thread created later inherits the blocked signals.
  auto signals = std::make_unique<SignalWatcher>();
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  if (checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "--checkpoint FILE is required (see --help)");
  }
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--port = ", port, " is outside [0, 65535]"));
  }
  const int http_threads = absl::GetFlag(FLAGS_http_threads);
  if (http_threads < 1 || http_threads > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http_threads = ", http_threads, " is outside [1, 4096]"));
  }
  // The port first: one in use is said at once, not after the model loads
  // (connections made while it loads wait in the listen backlog).
  HttpServer server(http_threads);
  const std::string host = absl::GetFlag(FLAGS_host);
  GPT2_ASSIGN_OR_RETURN(const int bound, server.Bind(host, port));
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(
                            ResolveDataDir(absl::GetFlag(FLAGS_data_dir))));
  GPT2_ASSIGN_OR_RETURN(infer::InferenceModel model,
                        infer::LoadInferenceModel(checkpoint));
  if (model.shape.vocab_size != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        checkpoint, ": the model's vocab_size is ", model.shape.vocab_size,
        "; GPT-2's tokenizer needs ", tokenizer.vocab_size()));
  }
  ServedModel served{std::move(model), std::move(tokenizer)};
  // The backend (for --device cuda) outlives the worker that decodes on it.
  GPT2_ASSIGN_OR_RETURN(
      DecoderWithBackend decoder,
      MakeDecoderFor(absl::GetFlag(FLAGS_device),
                     absl::GetFlag(FLAGS_precision), served.model.shape,
                     served.model.params, kMaxSamples));
  served.model.params = {};
  const std::string decoder_name = decoder.decoder->name();
  ModelWorker worker(std::move(decoder.decoder), &served.tokenizer);
  const std::string page = RenderPage(served, decoder_name);

  server.Get("/", [&page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page, "text/html; charset=utf-8");
  });
  server.Get("/healthz", [&served, &worker](const httplib::Request&,
                                            httplib::Response& res) {
    SetJson(res, 200,
            Json{{"status", "ok"},
                 {"model", ModelInfo(served)},
                 {"queued", worker.queued()},
                 {"limits",
                  {{"body_bytes", kMaxBodyBytes},
                   {"prompt_bytes", kMaxPromptBytes},
                   {"prompt_tokens", served.model.shape.max_seq_len - 1},
                   {"num_samples", kMaxSamples},
                   {"max_new_tokens", kMaxNewTokens},
                   {"temperature", kMaxTemperature}}}});
  });
  const std::shared_ptr<const ApiFormat> generate = GenerateFormat(served);
  server.Post("/api/generate", [&served, &worker, generate](
                                   const httplib::Request& req,
                                   httplib::Response& res) {
    Answer(served, &worker, generate,
           ParseGenerateBody(req.body, served.model.shape, served.tokenizer),
           req, res);
  });
  // OpenAI's completions API (and its model list), for the clients made for
  // it.
  const std::string model_id = ModelId(served);
  std::atomic<uint64_t> completions{0};
  const uint64_t run_salt = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count());
  server.Post("/v1/completions", [&served, &worker, &model_id, &completions,
                                  run_salt](const httplib::Request& req,
                                            httplib::Response& res) {
    const uint64_t n = completions.fetch_add(1);
    // Without "seed", each request draws its own text, as OpenAI's does.
    const uint64_t fresh_seed = infer::SampleSeed(run_salt, n);
    const int64_t created =
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count();
    Answer(served, &worker,
           CompletionsFormat(
               served, model_id,
               absl::StrFormat("cmpl-%016x", infer::SampleSeed(run_salt, ~n)),
               created),
           ParseCompletionsBody(req.body, served.model.shape, served.tokenizer,
                                fresh_seed),
           req, res);
  });
  const Json model_object = {{"id", model_id},
                             {"object", "model"},
                             {"created", 0},
                             {"owned_by", "gpt2_ddp"}};
  server.Get("/v1/models", [&model_object](const httplib::Request&,
                                           httplib::Response& res) {
    SetJson(res, 200,
            Json{{"object", "list"}, {"data", Json::array({model_object})}});
  });
  // OpenAI's models.retrieve: the one model, by its id.
  server.GetPattern(R"(/v1/models/(.+))", [&model_object, &model_id](
                                              const httplib::Request& req,
                                              httplib::Response& res) {
    if (req.matches[1] == model_id) return SetJson(res, 200, model_object);
    SetJson(res, 404,
            ErrorJson(req.path,
                      absl::StrCat("no model '", LogField(req.matches[1], 200),
                                   "' here; this server has '", model_id, "'"),
                      "model", "model_not_found"));
  });

  std::printf(
      "%s: %s, %s %s; decoding on %s\n", kTool,
      infer::DescribeShape(served.model.shape, served.model.num_params).c_str(),
      served.model.hugging_face
          ? "Hugging Face weights from"
          : absl::StrCat("step ", served.model.step, ", from").c_str(),
      served.model.source.c_str(), decoder_name.c_str());
  std::printf("%s: listening on http://%s:%d\n", kTool,
              host.find(':') != std::string::npos
                  ? absl::StrCat("[", host, "]").c_str()  // IPv6
                  : host.c_str(),
              bound);
  std::fflush(stdout);
  signals->Watch(&server, &worker);
  const bool ok = server.Listen();
  signals->Finish();
  if (!ok) return absl::InternalError("the server's listen loop failed");
  std::printf("%s: stopped\n", kTool);
  return absl::OkStatus();
}
#else
absl::Status Serve() {
  return absl::UnimplementedError(
      "this gpt2_serve was built without cpp-httplib and nlohmann-json; "
      "install them (launch/setup.sh) and rebuild");
}
#endif  // GPT2_SERVE_STUB

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  return gpt2::ToolMain(
      gpt2::kTool,
      "Serves a gpt2_ddp checkpoint: a web page at / and a JSON API.\n\n"
      "  gpt2_serve --checkpoint logs/tiny_cpu/checkpoints/step_00000300.ckpt\n"
      "  gpt2_serve --checkpoint FILE --port 0      (prints the chosen "
      "port)\n\n"
      "  POST /api/generate  {\"prompt\": \"ROMEO:\", \"num_samples\": 5, "
      "\"max_new_tokens\": 50, \"top_k\": 50, \"temperature\": 1.0, "
      "\"top_p\": 1.0, \"stop\": [], \"seed\": 1337}\n"
      "                      -> {\"samples\": [...], \"tokens\": N, "
      "\"seconds\": S, ...}\n"
      "                      (\"stream\": true: newline-separated JSON, "
      "{\"deltas\": [...]} as the text grows, then the answer)\n"
      "  GET  /healthz       -> {\"status\": \"ok\", \"model\": {...}}\n"
      "  POST /v1/completions, GET /v1/models   OpenAI's completions API "
      "(prompt, max_tokens, n, temperature, top_p, stop, seed, stream, "
      "...)\n\n"
      "Logs one line per request: client, method, path, status, ms, tokens. "
      "See docs/serve.md for the limits.",
      argc, argv, &gpt2::Serve);
}
