// gpt2_serve: a web page and a JSON API that sample from a gpt2_ddp checkpoint
// (or a Hugging Face GPT-2) on GPU 0 or the CPU. One model, one worker
// thread: requests are parsed and checked on httplib's connection threads,
// then queue for the worker in arrival order, so concurrent requests are all
// answered and never share the model. A streamed answer is written by its
// connection thread as the worker hands it the text.
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "src/core/error.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"
#include "src/infer/model_source.h"
#include "src/infer/text_stream.h"
#include "src/tools/cli_common.h"
#include "src/tools/decoder_choice.h"

#ifndef GPT2_SERVE_STUB
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "src/serve/connection_threads.h"
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
using serve::kMaxBodyBytes;
using serve::kMaxNewTokens;
using serve::kMaxPromptBytes;
using serve::kMaxSamples;
using serve::kMaxTemperature;
using serve::ModelWorker;
// A client that sends nothing for this long loses its connection.
constexpr int kSocketTimeoutSeconds = 5;
// Connection threads kept when idle (more are made as connections need them,
// and end after a minute idle).
constexpr int kKeptConnectionThreads = 4;

using Json = nlohmann::json;

// What the access log needs from a request, kept per connection thread: a
// request is read, handled and logged on one thread.
struct RequestLog {
  std::chrono::steady_clock::time_point start;
  bool started = false;
  int64_t tokens = 0;
  bool client_left = false;  // a stream whose client went away
};
thread_local RequestLog t_log;

// Streams being written (each ends with its answer or an error line), so a
// server told to stop lets them end before it stops writing.
std::atomic<int> g_open_streams{0};

// A client-controlled string as one log token: control bytes, spaces and
// non-ASCII escaped (no forged lines), cut to `max` bytes, "-" when empty.
std::string LogField(const std::string& s, size_t max) {
  if (s.empty()) return "-";
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c > ' ' && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string HtmlEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"},
                                 {"<", "&lt;"},
                                 {">", "&gt;"},
                                 {"\"", "&quot;"},
                                 {"'", "&#39;"}});
}

// JSON text; invalid UTF-8 (a character split across the last token) becomes
// U+FFFD rather than an exception.
std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void SetJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body) + "\n", "application/json");
}

// An error's body as the API of `path` writes them: OpenAI's {"error":
// {"message", "type", "param", "code"}} under /v1/, ours {"error": "..."}
// elsewhere. `param`: the request field to blame, if any.
Json ErrorJson(const std::string& path, const std::string& message,
               const Json& param = nullptr, const Json& code = nullptr) {
  if (path.rfind("/v1/", 0) != 0) return Json{{"error", message}};
  return Json{{"error",
               {{"message", message},
                {"type", "invalid_request_error"},
                {"param", param},
                {"code", code}}}};
}

void SetError(const httplib::Request& req, httplib::Response& res, int status,
              const std::string& message) {
  SetJson(res, status, ErrorJson(req.path, message));
}

// The HTTP status for a generation that failed: 503 when the server is
// stopping, 400 for a request the model cannot take, else 500.
int StatusFor(const absl::Status& status) {
  if (absl::IsUnavailable(status)) return 503;
  if (absl::IsInvalidArgument(status)) return 400;
  return 500;
}

struct ServedModel {
  infer::InferenceModel model;  // shape, step, source (params moved out)
  Tokenizer tokenizer;
};

// The model's name in the OpenAI API: the checkpoint's (or Hugging Face
// folder's) file name.
std::string ModelId(const ServedModel& served) {
  const std::filesystem::path source(served.model.source);
  const std::string name = source.filename().string();
  return name.empty() ? source.parent_path().filename().string() : name;
}

Json ModelInfo(const ServedModel& served) {
  const ModelShape& s = served.model.shape;
  return Json{{"layers", s.num_layers},
              {"heads", s.num_heads},
              {"channels", s.channels},
              {"context", s.max_seq_len},
              {"vocab_size", s.vocab_size},
              {"params", served.model.num_params},
              {"description", infer::DescribeShape(s, served.model.num_params)},
              {"checkpoint", served.model.source},
              {"step", served.model.step}};
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

// The answer to a finished request (also the last line of a stream).
absl::StatusOr<Json> ResultJson(const ServedModel& served,
                                const serve::ParsedRequest& parsed,
                                const infer::GenerateResult& result,
                                double queue_seconds) {
  const std::string& prompt = parsed.prompt;
  const infer::GenerateRequest& request = parsed.request;
  Json samples = Json::array(), completions = Json::array(),
       finish = Json::array(), counts = Json::array();
  for (const infer::GeneratedSample& s : result.samples) {
    GPT2_ASSIGN_OR_RETURN(const std::string text,
                          infer::SampleText(served.tokenizer, s));
    samples.push_back(prompt + text);
    completions.push_back(text);
    finish.push_back(infer::FinishReasonName(s.finish));
    counts.push_back(s.tokens.size());
  }
  const double seconds = result.prefill_seconds + result.decode_seconds;
  return Json{
      {"samples", samples},
      {"completions", completions},
      {"finish_reasons", finish},
      {"new_tokens", counts},
      {"num_samples", request.num_samples},
      {"prompt_tokens", request.prompt.size()},
      {"tokens", result.new_tokens},
      {"seconds", seconds},
      {"queue_seconds", queue_seconds},
      {"tokens_per_second", seconds > 0 ? result.new_tokens / seconds : 0.0},
      {"seed", request.seed},
      {"model", served.model.source},
      {"step", served.model.step}};
}

// A streamed answer, between the worker (which adds lines) and the connection
// thread (which writes them): newline-separated JSON, the deltas of the
// samples' text as they grow, then the answer a plain request gets.
class Stream {
 public:
  // A line, and the new tokens drawn so far (-1: unchanged).
  void Add(std::string line, bool last = false, int64_t tokens = -1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(std::move(line));
      finished_ = finished_ || last;
      if (tokens >= 0) tokens_ = tokens;
    }
    cv_.notify_all();
  }
  // Waits up to `timeout` for lines; returns them and whether the stream has
  // ended.
  std::vector<std::string> Take(std::chrono::milliseconds timeout,
                                bool* finished, int64_t* tokens) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout,
                 [this] { return finished_ || !lines_.empty(); });
    std::vector<std::string> lines(std::make_move_iterator(lines_.begin()),
                                   std::make_move_iterator(lines_.end()));
    lines_.clear();
    *finished = finished_;
    *tokens = tokens_;
    return lines;
  }
  // The client went away: the worker stops at its next batch of draws.
  void Abandon() { abandoned_ = true; }
  bool abandoned() const { return abandoned_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> lines_;
  bool finished_ = false;
  int64_t tokens_ = 0;
  std::atomic<bool> abandoned_{false};
};

// How one API writes its answers: the whole answer to a plain request, and
// a stream's messages (each framed on its own; the tail after the last).
struct ApiFormat {
  std::function<absl::StatusOr<Json>(const serve::ParsedRequest&,
                                     const infer::GenerateResult&,
                                     double queue_seconds)>
      whole;
  const char* stream_type;
  std::function<std::string(const Json& message)> frame;
  std::string stream_tail;
  // The text each sample gained (empty where none), and the new tokens so far.
  std::function<std::vector<Json>(const std::vector<std::string>& deltas,
                                  int64_t tokens)>
      deltas;
  // The stream's last messages, from the whole answer and the text each
  // sample had not yet sent (a character cut by its last token).
  std::function<std::vector<Json>(const serve::ParsedRequest&,
                                  const Json& whole,
                                  const std::vector<std::string>& rest)>
      end;
  std::function<Json(const std::string& message)> error;

  std::string Frame(const std::vector<Json>& messages) const {
    std::string text;
    for (const Json& m : messages) text += frame(m);
    return text;
  }
};

void Answer(const ServedModel& served, ModelWorker* worker,
            std::shared_ptr<const ApiFormat> format,
            const absl::StatusOr<serve::ParsedRequest>& parsed,
            const httplib::Request& req, httplib::Response& res) {
  const auto fail = [&](int status, absl::string_view message) {
    SetJson(res, status, format->error(std::string(message)));
  };
  if (!parsed.ok()) return fail(400, parsed.status().message());
  if (parsed->stream && req.version == "HTTP/1.0") {
    // A stream is sent in chunks, which HTTP/1.0 does not have: its clients
    // showed the chunk sizes in the text.
    return fail(400,
                "stream: true needs HTTP/1.1 (the stream is sent in chunks); "
                "this request is HTTP/1.0: send it as HTTP/1.1, or without "
                "stream");
  }
  if (!parsed->stream) {
    double queue_seconds = 0.0;
    absl::StatusOr<infer::GenerateResult> result =
        worker->Run(parsed->request, &queue_seconds);
    absl::StatusOr<Json> answer =
        result.ok() ? format->whole(*parsed, *result, queue_seconds)
                    : absl::StatusOr<Json>(result.status());
    if (!answer.ok()) {
      return fail(StatusFor(answer.status()), answer.status().message());
    }
    t_log.tokens = result->new_tokens;
    SetJson(res, 200, *answer);
    return;
  }
  // Streamed: the deltas as the worker draws, then the end (or an error).
  auto lines = std::make_shared<Stream>();
  auto text = std::make_shared<infer::TextStream>(
      &served.tokenizer, parsed->request.num_samples, parsed->request.stop);
  infer::GenerateProgress progress =
      [format, lines,
       text](const std::vector<infer::GeneratedSample>& samples) {
        // Tests: GPT2_SERVE_TEST_DELAY_MS slows each batch of draws of a
        // stream, so a browser can stop one mid-way.
        static const int delay_ms = [] {
          const char* v = std::getenv("GPT2_SERVE_TEST_DELAY_MS");
          return v != nullptr ? std::atoi(v) : 0;
        }();
        if (delay_ms > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        }
        if (lines->abandoned()) return false;
        const std::vector<std::string> deltas = text->Take(samples);
        int64_t tokens = 0;
        for (const auto& s : samples) tokens += s.tokens.size();
        if (std::any_of(deltas.begin(), deltas.end(),
                        [](const std::string& d) { return !d.empty(); })) {
          lines->Add(format->Frame(format->deltas(deltas, tokens)), false,
                     tokens);
        }
        return true;
      };
  const std::string client =
      absl::StrCat(LogField(req.remote_addr, 64), ":", req.remote_port);
  worker->Submit(
      parsed->request, std::move(progress),
      [format, lines, text, client, path = LogField(req.path, 200),
       request = *parsed](absl::StatusOr<infer::GenerateResult> result,
                          double waited) {
        absl::StatusOr<Json> answer =
            result.ok() ? format->whole(request, *result, waited)
                        : absl::StatusOr<Json>(result.status());
        if (!answer.ok()) {
          if (absl::IsCancelled(answer.status())) {
            const std::string note =
                absl::StrCat(kTool, ": the streaming client ", client, " of ",
                             path, " went away; its generation was stopped\n");
            std::fwrite(note.data(), 1, note.size(), stdout);
            std::fflush(stdout);
          }
          lines->Add(format->Frame({format->error(
                         std::string(answer.status().message()))}) +
                         format->stream_tail,
                     true);
          return;
        }
        // What the deltas held back (same thread as the progress calls).
        const std::vector<std::string> rest = text->Rest(result->samples);
        lines->Add(format->Frame(format->end(request, *answer, rest)) +
                       format->stream_tail,
                   true, result->new_tokens);
      });
  ++g_open_streams;
  res.set_chunked_content_provider(
      format->stream_type,
      [lines](size_t, httplib::DataSink& sink) {
        bool finished = false;
        int64_t tokens = 0;
        // A bounded wait, so a server told to stop is not held by a long
        // generation (httplib asks again while it is not stopping).
        const std::vector<std::string> taken =
            lines->Take(std::chrono::milliseconds(500), &finished, &tokens);
        for (const std::string& line : taken) {
          if (!sink.write(line.data(), line.size())) {
            t_log.client_left = true;  // (the logger runs before the releaser)
            return false;
          }
          // The access log counts what was sent, if the client leaves.
          t_log.tokens = tokens;
        }
        if (finished) sink.done();
        return true;
      },
      [lines](bool success) {
        if (!success) lines->Abandon();
        --g_open_streams;
      });
}

// POST /api/generate: {"error": "..."}; a stream is newline-separated JSON,
// {"deltas": [...], "tokens": N} lines, then the answer with "done": true.
std::shared_ptr<const ApiFormat> GenerateFormat(const ServedModel& served) {
  auto f = std::make_shared<ApiFormat>();
  f->whole = [&served](const serve::ParsedRequest& parsed,
                       const infer::GenerateResult& result, double waited) {
    return ResultJson(served, parsed, result, waited);
  };
  f->stream_type = "application/x-ndjson";
  f->frame = [](const Json& message) { return Dump(message) + "\n"; };
  f->deltas = [](const std::vector<std::string>& deltas, int64_t tokens) {
    return std::vector<Json>{Json{{"deltas", deltas}, {"tokens", tokens}}};
  };
  f->end = [](const serve::ParsedRequest&, const Json& whole,
              const std::vector<std::string>&) {
    Json done = whole;
    done["done"] = true;
    return std::vector<Json>{done};
  };
  f->error = [](const std::string& message) {
    return ErrorJson("/api/generate", message);
  };
  return f;
}

// POST /v1/completions, as OpenAI's completions API answers: a
// "text_completion" object with its choices and usage; a stream is
// server-sent events, a chunk per sample's new text, a chunk with each
// sample's finish reason (and with stream_options.include_usage one with
// the usage), then "data: [DONE]". Errors: {"error": {"message", "type",
// "param", "code"}}. `id` and `created` name the one request.
std::shared_ptr<const ApiFormat> CompletionsFormat(const ServedModel& served,
                                                   const std::string& model_id,
                                                   const std::string& id,
                                                   int64_t created) {
  auto f = std::make_shared<ApiFormat>();
  const Json head = {{"id", id},
                     {"object", "text_completion"},
                     {"created", created},
                     {"model", model_id},
                     {"system_fingerprint", "gpt2_ddp"}};
  const auto choice = [](size_t index, const std::string& text,
                         const Json& finish) {
    return Json{{"text", text},
                {"index", index},
                {"logprobs", nullptr},
                {"finish_reason", finish}};
  };
  f->whole = [&served, head, choice](const serve::ParsedRequest& parsed,
                                     const infer::GenerateResult& result,
                                     double) -> absl::StatusOr<Json> {
    Json choices = Json::array();
    int64_t completion_tokens = 0;
    for (size_t i = 0; i < result.samples.size(); ++i) {
      const infer::GeneratedSample& s = result.samples[i];
      GPT2_ASSIGN_OR_RETURN(const std::string text,
                            infer::SampleText(served.tokenizer, s));
      // OpenAI's reasons: "stop" at the end of text or a stop sequence.
      choices.push_back(choice(i, text,
                               s.finish == infer::FinishReason::kEndOfText ||
                                       s.finish == infer::FinishReason::kStop
                                   ? "stop"
                                   : "length"));
      completion_tokens += s.tokens.size();
    }
    const int64_t prompt_tokens = parsed.request.prompt.size();
    Json answer = head;
    answer["choices"] = choices;
    answer["usage"] = {{"prompt_tokens", prompt_tokens},
                       {"completion_tokens", completion_tokens},
                       {"total_tokens", prompt_tokens + completion_tokens}};
    answer["seed"] = parsed.request.seed;  // ours: the same seed, the same text
    return answer;
  };
  f->stream_type = "text/event-stream";
  f->frame = [](const Json& message) {
    return "data: " + Dump(message) + "\n\n";
  };
  f->stream_tail = "data: [DONE]\n\n";
  f->deltas = [head, choice](const std::vector<std::string>& deltas, int64_t) {
    std::vector<Json> chunks;
    for (size_t i = 0; i < deltas.size(); ++i) {
      if (deltas[i].empty()) continue;
      Json chunk = head;
      chunk["choices"] = Json::array({choice(i, deltas[i], nullptr)});
      chunks.push_back(std::move(chunk));
    }
    return chunks;
  };
  f->end = [head, choice](const serve::ParsedRequest& parsed, const Json& whole,
                          const std::vector<std::string>& rest) {
    std::vector<Json> chunks;
    for (const Json& c : whole["choices"]) {
      const size_t i = c["index"].get<size_t>();
      Json chunk = head;
      chunk["choices"] = Json::array(
          {choice(i, i < rest.size() ? rest[i] : "", c["finish_reason"])});
      chunks.push_back(std::move(chunk));
    }
    if (parsed.stream_usage) {
      Json chunk = head;
      chunk["choices"] = Json::array();
      chunk["usage"] = whole["usage"];
      chunks.push_back(std::move(chunk));
    }
    return chunks;
  };
  f->error = [](const std::string& message) {
    // The request field a message starts with ("top_p = 1.5 is outside...",
    // "prompt: required") is the one to blame; otherwise none.
    Json param = nullptr;
    const size_t end = message.find_first_not_of("abcdefghijklmnopqrstuvwxyz_");
    if (end != std::string::npos && end > 0 &&
        (message.compare(end, 2, ": ") == 0 ||
         message.compare(end, 3, " = ") == 0)) {
      param = message.substr(0, end);
    }
    return ErrorJson("/v1/completions", message, param);
  };
  return f;
}

// SIGINT and SIGTERM, taken by one thread (blocked in all others, so it must
// be created before any other thread): before the server runs they end the
// process at once; after, the first says so and stops the server (the
// worker's queued and running requests end with 503, or a stream's error
// line; the streams are let finish, up to 2 s; then Serve returns), and a
// second ends the process at once.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] { Wait(); });
  }
  ~SignalWatcher() { Finish(); }
  void Watch(httplib::Server* server, ModelWorker* worker) {
    worker_ = worker;
    server_ = server;
  }
  // Ends the watching thread; the server may be destroyed after this.
  void Finish() {
    if (!thread_.joinable()) return;
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

 private:
  void Wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    if (done_) return;
    httplib::Server* server = server_.load();
    if (server == nullptr) std::_Exit(128 + sig);
    const int in_flight = worker_->Stop("the server is stopping");
    std::printf(
        "%s: %s received: stopping (%d request%s queued or running end%s "
        "with 503 or a stream's error line; again: at once)\n",
        kTool, sig == SIGINT ? "SIGINT" : "SIGTERM", in_flight,
        in_flight == 1 ? "" : "s", in_flight == 1 ? "s" : "");
    std::fflush(stdout);
    // A second signal ends the process, unless Finish comes first.
    std::thread second([this] {
      int again = 0;
      sigwait(&set_, &again);
      if (done_) return;
      std::printf("%s: %s again: exiting now\n", kTool,
                  again == SIGINT ? "SIGINT" : "SIGTERM");
      std::fflush(stdout);
      std::_Exit(128 + again);
    });
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (g_open_streams.load() > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // stop() is a no-op until listen_after_bind has started: repeat it.
    while (!done_) {
      server->stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pthread_kill(second.native_handle(), SIGTERM);
    second.join();
  }

  sigset_t set_;
  std::atomic<bool> done_{false};
  std::atomic<httplib::Server*> server_{nullptr};
  ModelWorker* worker_ = nullptr;
  std::thread thread_;
};

// httplib's connection threads: serve::ConnectionThreads, made as
// connections need them (its ThreadPool held a fixed 16, which 16 slow
// clients filled, the page and /healthz then waiting behind them).
class HttpThreads : public httplib::TaskQueue {
 public:
  explicit HttpThreads(int max_threads)
      : threads_(max_threads, std::min(max_threads, kKeptConnectionThreads),
                 std::chrono::seconds(60)) {}
  void enqueue(std::function<void()> fn) override {
    threads_.Enqueue(std::move(fn));
  }
  void shutdown() override { threads_.Shutdown(); }

 private:
  serve::ConnectionThreads threads_;
};

// httplib 0.11 listens with a backlog of 5 (built into Debian's library):
// a burst of connections overflows it and the kernel drops their handshakes,
// which clients see as failed reads a second later. Linux lets listen() be
// called again on a listening socket to raise the backlog.
class Server : public httplib::Server {
 public:
  bool RaiseListenBacklog(int backlog) {
    return ::listen(svr_sock_, backlog) == 0;
  }
};
constexpr int kListenBacklog = 1024;

// Binds `host`:`port` (0: a free port) and listens; returns the port. Says
// why it cannot: the port in use, or the address not this machine's.
absl::StatusOr<int> Bind(Server& server, const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (!server.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound < 0) {
    // httplib says only that it failed: a bind of our own says why.
    std::string why = "";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = absl::StrCat(port);
    if (getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 ||
        found == nullptr) {
      why = absl::StrCat(host, " is not an address or a host name known here");
    } else {
      const int fd =
          socket(found->ai_family, found->ai_socktype, found->ai_protocol);
      int yes = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      if (fd >= 0 && bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
        why = errno == EADDRINUSE
                  ? absl::StrCat("port ", port,
                                 " is in use (another server there? --port "
                                 "0 picks a free one)")
              : errno == EADDRNOTAVAIL
                  ? absl::StrCat(host, " is not an address of this machine")
              : errno == EACCES
                  ? absl::StrCat("port ", port,
                                 " needs privileges (ports below 1024)")
                  : std::string(std::strerror(errno));
      }
      if (fd >= 0) close(fd);
      freeaddrinfo(found);
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", host, ":", port, why.empty() ? "" : ": ", why));
  }
  if (!server.RaiseListenBacklog(kListenBacklog)) {
    return absl::InternalError("cannot raise the listen backlog");
  }
  return bound;
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
  Server server;
  server.new_task_queue = [http_threads] {
    return new HttpThreads(http_threads);
  };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second gpt2_serve bound the same port and the kernel split the requests
  // between the two models. Now the second one fails to bind and says so.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const std::string host = absl::GetFlag(FLAGS_host);
  GPT2_ASSIGN_OR_RETURN(const int bound, Bind(server, host, port));
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

  server.set_payload_max_length(kMaxBodyBytes);
  server.set_read_timeout(kSocketTimeoutSeconds, 0);
  server.set_write_timeout(kSocketTimeoutSeconds, 0);
  server.set_keep_alive_timeout(kSocketTimeoutSeconds);
  // Each route's method, as registered below (read only once the server
  // listens): a route asked with another method gets 405 and the one it
  // takes (Allow), not "no route".
  std::map<std::string, std::string> routes;  // path -> method
  const auto not_allowed = [](const httplib::Request& req,
                              httplib::Response& res,
                              const std::string& method) {
    res.set_header("Allow", method);
    SetError(req, res, 405,
             absl::StrCat(req.method, " ", req.path, ": not allowed; it takes ",
                          method));
  };
  server.set_pre_routing_handler([&routes, &not_allowed](
                                     const httplib::Request& req,
                                     httplib::Response& res) {
    t_log = RequestLog{std::chrono::steady_clock::now(), true, 0};
    // Two lengths for one body: which one a proxy in front believed is
    // unknown (request smuggling), so neither is taken.
    if (req.get_header_value_count("Content-Length") > 1) {
      SetError(req, res, 400, "more than one Content-Length header: send one");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    // A POST without Content-Length (curl -X POST with no -d): httplib
    // waited out the read timeout (5 s) for a body, then answered a bare
    // 400.
    if (req.method == "POST" && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      if (const auto route = routes.find(req.path); route == routes.end()) {
        SetError(req, res, 404, absl::StrCat("no route for POST ", req.path));
      } else if (route->second != "POST") {
        not_allowed(req, res, route->second);
      } else {
        SetError(req, res, 400,
                 absl::StrCat("POST ", req.path,
                              " without a body: send the JSON request with "
                              "a Content-Length (curl -d '{\"prompt\": "
                              "...}')"));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_logger([](const httplib::Request& req,
                       const httplib::Response& res) {
    const std::string ms =
        t_log.started
            ? absl::StrFormat(
                  "%.1f", std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t_log.start)
                              .count())
            : "-";
    // One write per line, so lines from concurrent requests never interleave.
    const std::string line = absl::StrFormat(
        "%s %s %s %d %s ms %d tokens%s\n", LogField(req.remote_addr, 64),
        LogField(req.method, 16), LogField(req.path, 200), res.status, ms,
        t_log.tokens, t_log.client_left ? " (client left)" : "");
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
    t_log = RequestLog{};
  });
  const auto get = [&](const char* path, httplib::Server::Handler handler) {
    routes[path] = "GET";
    server.Get(path, std::move(handler));
  };
  // A POST's body is read here, whatever its Content-Type: httplib's own
  // read takes an application/x-www-form-urlencoded one (curl -d's default)
  // as a form and refused it past 8 KiB with a 413 that named 64 KiB.
  // (set_payload_max_length still bounds every body.)
  const auto post = [&](const char* path, httplib::Server::Handler handler) {
    routes[path] = "POST";
    server.Post(path, [handler = std::move(handler)](
                          const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& read) {
      // httplib reads a multipart body only through a per-part reader (the
      // plain one threw bad_function_call: a 500).
      if (req.is_multipart_form_data()) {
        SetError(req, res, 415,
                 "a multipart/form-data body (curl -F): send the request as "
                 "JSON (curl -H 'Content-Type: application/json' -d "
                 "'{\"prompt\": ...}')");
        return;
      }
      httplib::Request with_body = req;
      const bool whole = read([&with_body](const char* data, size_t size) {
        with_body.body.append(data, size);
        return with_body.body.size() <= kMaxBodyBytes;
      });
      if (!whole) {
        if (with_body.body.size() > kMaxBodyBytes ||
            std::strtoull(req.get_header_value("Content-Length").c_str(),
                          nullptr, 10) > kMaxBodyBytes) {
          SetError(req, res, 413,
                   absl::StrCat("request body over ", kMaxBodyBytes, " bytes"));
        } else {
          SetError(req, res, 400, "the request body could not be read whole");
        }
        return;
      }
      handler(with_body, res);
    });
  };
  server.set_error_handler([&routes, &not_allowed](const httplib::Request& req,
                                                   httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    if (const auto route = routes.find(req.path); res.status == 404 &&
                                                  route != routes.end() &&
                                                  req.method != route->second) {
      not_allowed(req, res, route->second);
      return;
    }
    std::string message =
        res.status == 413
            ? absl::StrCat("request body over ", kMaxBodyBytes, " bytes")
        : res.status == 404
            ? absl::StrCat("no route for ", req.method, " ", req.path)
        : res.status == 400 && req.method.empty()
            ? std::string(
                  "not an HTTP request this server can read (a bad "
                  "request line or headers)")
            : absl::StrCat("HTTP ", res.status);
    SetError(req, res, res.status, message);
  });
  server.set_exception_handler([](const httplib::Request& req,
                                  httplib::Response& res,
                                  std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SetError(req, res, 500, absl::StrCat("internal error: ", what));
  });

  get("/", [&page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page, "text/html; charset=utf-8");
  });
  get("/healthz",
      [&served, &worker](const httplib::Request&, httplib::Response& res) {
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
  post("/api/generate",
       [&served, &worker, generate](const httplib::Request& req,
                                    httplib::Response& res) {
         Answer(served, &worker, generate,
                serve::ParseGenerateBody(req.body, served.model.shape,
                                         served.tokenizer),
                req, res);
       });
  // OpenAI's completions API (and its model list), for the clients made for
  // it.
  const std::string model_id = ModelId(served);
  std::atomic<uint64_t> completions{0};
  const uint64_t run_salt = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count());
  post("/v1/completions", [&served, &worker, &model_id, &completions, run_salt](
                              const httplib::Request& req,
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
           serve::ParseCompletionsBody(req.body, served.model.shape,
                                       served.tokenizer, fresh_seed),
           req, res);
  });
  const Json model_object = {{"id", model_id},
                             {"object", "model"},
                             {"created", 0},
                             {"owned_by", "gpt2_ddp"}};
  get("/v1/models", [&model_object](const httplib::Request&,
                                    httplib::Response& res) {
    SetJson(res, 200,
            Json{{"object", "list"}, {"data", Json::array({model_object})}});
  });
  // OpenAI's models.retrieve: the one model, by its id.
  server.Get(R"(/v1/models/(.+))", [&model_object, &model_id](
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
  const bool ok = server.listen_after_bind();
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
