// gpt2_serve's JSON API and gpt2_sample's command line, as a user meets them:
// real processes, a checkpoint written here, loopback only. One server is
// started for the whole run and killed at the end, also on failure (and by
// the kernel if this process dies).
//   serve_api_check PATH/TO/gpt2_serve PATH/TO/gpt2_sample
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/serve/serve_test_util.h"

namespace gpt2 {
namespace {

using Json = nlohmann::json;
using serve_testing::ChildProcess;
using serve_testing::RunResult;

std::string g_serve_bin, g_sample_bin;

// The server and its checkpoint, shared by every test.
class ServerEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = std::make_unique<serve_testing::TempDir>("gpt2_serve_test");
    ASSERT_FALSE(dir_->path().empty());
    checkpoint_ = dir_->File("tiny.ckpt");
    const absl::Status written =
        serve_testing::WriteTinyCheckpoint(checkpoint_, 7);
    ASSERT_TRUE(written.ok()) << written;
    server_ = std::make_unique<ChildProcess>();
    const absl::Status started = serve_testing::StartServer(
        g_serve_bin, checkpoint_, server_.get(), &port_);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override {
    if (server_ != nullptr) {
      // SIGTERM ends it cleanly.
      EXPECT_EQ(server_->Stop(), 0) << server_->Output();
      EXPECT_NE(server_->Output().find("gpt2_serve: stopped"),
                std::string::npos);
    }
    server_.reset();
    dir_.reset();
  }
  static int port() { return port_; }
  static const std::string& checkpoint() { return checkpoint_; }
  static const std::string& dir() { return dir_->path(); }
  static std::string Log() { return server_->Output(); }

 private:
  static inline std::unique_ptr<serve_testing::TempDir> dir_;
  static inline std::string checkpoint_;
  static inline std::unique_ptr<ChildProcess> server_;
  static inline int port_ = 0;
};

struct Reply {
  int status = 0;  // 0: no HTTP answer
  std::string body;
  std::string content_type;
  Json json;  // the body parsed, when it is JSON
};

Reply Send(const std::string& method, const std::string& path,
           const std::string& body = "") {
  httplib::Client client("127.0.0.1", ServerEnv::port());
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(30, 0);
  client.set_write_timeout(10, 0);
  httplib::Result r = method == "GET"
                          ? client.Get(path.c_str())
                          : client.Post(path.c_str(), body, "application/json");
  Reply reply;
  if (!r) {
    reply.body =
        absl::StrCat("no HTTP answer: ", httplib::to_string(r.error()));
    return reply;
  }
  reply.status = r->status;
  reply.body = r->body;
  reply.content_type = r->get_header_value("Content-Type");
  reply.json = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  return reply;
}

Reply Generate(const Json& request) {
  return Send("POST", "/api/generate", request.dump());
}

// A 400 whose JSON error message contains `needle` (e.g. the field's name).
void ExpectBadRequest(const std::string& body, const std::string& needle) {
  const Reply r = Send("POST", "/api/generate", body);
  EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  ASSERT_TRUE(r.json.is_object()) << body << " -> " << r.body;
  ASSERT_TRUE(r.json.contains("error")) << r.body;
  EXPECT_NE(r.json["error"].get<std::string>().find(needle), std::string::npos)
      << body << " -> " << r.body;
}

// An answer's error message, in either API's shape: ours {"error": "..."},
// OpenAI's {"error": {"message": "...", ...}} under /v1/.
std::string ErrorMessage(const Reply& r) {
  if (!r.json.is_object() || !r.json.contains("error")) return "";
  const Json& e = r.json["error"];
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("message") && e["message"].is_string()) {
    return e["message"].get<std::string>();
  }
  return "";
}

std::vector<std::string> Samples(const Reply& r) {
  std::vector<std::string> out;
  if (r.json.is_object() && r.json.contains("samples")) {
    for (const Json& s : r.json["samples"]) out.push_back(s.get<std::string>());
  }
  return out;
}

TEST(Api, Healthz) {
  const Reply r = Send("GET", "/healthz");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.json["status"], "ok");
  EXPECT_EQ(r.json["model"]["layers"], 1);
  EXPECT_EQ(r.json["model"]["channels"], 32);
  EXPECT_EQ(r.json["model"]["context"], 64);
  EXPECT_EQ(r.json["model"]["step"], 7);
  EXPECT_EQ(r.json["limits"]["num_samples"], 10);
}

TEST(Api, Page) {
  const Reply r = Send("GET", "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/html"), std::string::npos);
  for (const char* want :
       {"Enter some text", "Number of outputs", "Maximum length", "Top-k",
        "Temperature", "Seed", "Generate",
        "First Citizen:", "ROMEO:", "To be, or not to be", "step 7", "1.6M",
        "/api/generate", "trained with gpt2_ddp", "KV-cache decoding on cpu"}) {
    EXPECT_NE(r.body.find(want), std::string::npos) << want;
  }
  EXPECT_EQ(r.body.find("{{"), std::string::npos) << "a placeholder was left";
}

TEST(Api, GoodRequest) {
  const Json request = {{"prompt", "ROMEO:"},   {"num_samples", 3},
                        {"max_new_tokens", 12}, {"top_k", 40},
                        {"temperature", 0.9},   {"seed", 5}};
  const Reply r = Generate(request);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  const std::vector<std::string> samples = Samples(r);
  ASSERT_EQ(samples.size(), 3u);
  int64_t tokens = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].rfind("ROMEO:", 0), 0u) << samples[i];
    EXPECT_EQ(samples[i],
              "ROMEO:" + r.json["completions"][i].get<std::string>());
    const std::string finish = r.json["finish_reasons"][i];
    const int n = r.json["new_tokens"][i];
    EXPECT_TRUE(finish == "length" ? n == 12 : finish == "end_of_text")
        << finish << " " << n;
    tokens += n;
  }
  EXPECT_EQ(r.json["tokens"], tokens);
  EXPECT_EQ(r.json["num_samples"], 3);
  EXPECT_EQ(r.json["prompt_tokens"], 3);  // "ROM", "EO", ":"
  EXPECT_GT(r.json["seconds"].get<double>(), 0.0);
  EXPECT_EQ(r.json["step"], 7);
  // Same request, same text; another seed, other text.
  EXPECT_EQ(Samples(Generate(request)), samples);
  Json other = request;
  other["seed"] = 6;
  EXPECT_NE(Samples(Generate(other)), samples);
}

// "stream": true: newline-separated JSON, the text each sample gained as it
// was drawn, then the same answer a plain request gets, marked "done".
TEST(Api, StreamsTheSamplesAsTheyGrow) {
  const Json request = {{"prompt", "ROMEO:"},   {"num_samples", 3},
                        {"max_new_tokens", 20}, {"top_k", 40},
                        {"temperature", 0.9},   {"seed", 5}};
  Json streamed = request;
  streamed["stream"] = true;
  const Reply plain = Generate(request);
  const Reply r = Generate(streamed);
  ASSERT_EQ(plain.status, 200) << plain.body;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/x-ndjson");
  std::vector<Json> events;
  for (size_t at = 0; at < r.body.size();) {
    const size_t end = r.body.find('\n', at);
    ASSERT_NE(end, std::string::npos) << "a line without its newline";
    events.push_back(Json::parse(r.body.substr(at, end - at), nullptr, false));
    ASSERT_FALSE(events.back().is_discarded()) << r.body.substr(at, end - at);
    at = end + 1;
  }
  ASSERT_GE(events.size(), 3u) << r.body;  // some deltas, then the answer
  const Json& last = events.back();
  ASSERT_TRUE(last.value("done", false)) << last.dump();
  for (const char* field : {"samples", "completions", "finish_reasons",
                            "new_tokens", "tokens", "seed", "prompt_tokens"}) {
    EXPECT_EQ(last[field], plain.json[field]) << field;
  }
  std::vector<std::string> texts(3);
  int64_t tokens = 0;
  for (size_t e = 0; e + 1 < events.size(); ++e) {
    ASSERT_TRUE(events[e].contains("deltas")) << events[e].dump();
    ASSERT_EQ(events[e]["deltas"].size(), 3u);
    EXPECT_GT(events[e]["tokens"].get<int64_t>(), tokens);  // always growing
    tokens = events[e]["tokens"];
    for (int i = 0; i < 3; ++i) texts[i] += events[e]["deltas"][i];
  }
  EXPECT_EQ(tokens, last["tokens"].get<int64_t>());
  for (int i = 0; i < 3; ++i) {
    // The deltas spell the completion, less at most a character cut at the
    // end (held back until its last byte came; here never, as it ended).
    const std::string completion = last["completions"][i];
    EXPECT_EQ(completion.rfind(texts[i], 0), 0u)
        << texts[i] << " vs " << completion;
    EXPECT_LE(completion.size() - texts[i].size(), 9u);
  }
  // A bad request is refused before any streaming, as always.
  ExpectBadRequest(R"({"prompt": "x", "stream": "yes"})", "stream");
  ExpectBadRequest(R"({"prompt": "", "stream": true})", "prompt");
}

// OpenAI's completions API: the same text as /api/generate for the same
// settings, its answer's shape, its stream, and a named refusal of what the
// model cannot honour.
Reply Completions(const Json& request) {
  return Send("POST", "/v1/completions", request.dump());
}

TEST(OpenAi, CompletionsAreTheSameSamples) {
  const Reply ours = Generate({{"prompt", "ROMEO:"},
                               {"num_samples", 3},
                               {"max_new_tokens", 12},
                               {"top_k", 40},
                               {"temperature", 0.9},
                               {"seed", 5}});
  const Reply r = Completions({{"model", "anything"},
                               {"prompt", "ROMEO:"},
                               {"n", 3},
                               {"max_tokens", 12},
                               {"top_k", 40},
                               {"temperature", 0.9},
                               {"seed", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.json["object"], "text_completion");
  EXPECT_EQ(r.json["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(r.json["model"], "tiny.ckpt");
  ASSERT_EQ(r.json["choices"].size(), 3u);
  int64_t tokens = 0;
  for (int i = 0; i < 3; ++i) {
    const Json& c = r.json["choices"][i];
    EXPECT_EQ(c["index"], i);
    EXPECT_EQ(c["text"], ours.json["completions"][i]);
    EXPECT_EQ(
        c["finish_reason"],
        ours.json["finish_reasons"][i] == "end_of_text" ? "stop" : "length");
    tokens += ours.json["new_tokens"][i].get<int64_t>();
  }
  EXPECT_EQ(r.json["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(r.json["usage"]["completion_tokens"], tokens);
  EXPECT_EQ(r.json["usage"]["total_tokens"], tokens + 3);
  // Temperature 0 is greedy: /api/generate's top_k 1.
  const Reply greedy = Completions(
      {{"prompt", {"ROMEO:"}}, {"max_tokens", 8}, {"temperature", 0}});
  const Reply top1 = Generate({{"prompt", "ROMEO:"},
                               {"num_samples", 1},
                               {"max_new_tokens", 8},
                               {"top_k", 1}});
  ASSERT_EQ(greedy.status, 200) << greedy.body;
  EXPECT_EQ(greedy.json["choices"][0]["text"], top1.json["completions"][0]);
  // Without a seed each request draws its own text (defaults: 16 tokens,
  // the whole vocabulary), and says which seed it drew with.
  const Reply a = Completions({{"prompt", "ROMEO:"}});
  const Reply b = Completions({{"prompt", "ROMEO:"}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_NE(a.json["choices"][0]["text"], b.json["choices"][0]["text"]);
  EXPECT_NE(a.json["seed"], b.json["seed"]);
  if (a.json["choices"][0]["finish_reason"] == "length") {
    EXPECT_EQ(a.json["usage"]["completion_tokens"], 16);
  }
  Json again = {{"prompt", "ROMEO:"}, {"seed", a.json["seed"]}};
  EXPECT_EQ(Completions(again).json["choices"][0]["text"],
            a.json["choices"][0]["text"]);
  // The model list names the one model.
  const Reply models = Send("GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.json["data"][0]["id"], "tiny.ckpt");
}

TEST(OpenAi, StreamsServerSentEvents) {
  const Json request = {{"prompt", "ROMEO:"},
                        {"n", 2},
                        {"max_tokens", 20},
                        {"seed", 9},
                        {"top_k", 50}};
  const Reply plain = Completions(request);
  Json streamed = request;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const Reply r = Completions(streamed);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/event-stream");
  std::vector<std::string> texts(2);
  std::vector<std::string> finish(2);
  Json usage;
  bool done = false;
  std::string id;
  for (size_t at = 0; at < r.body.size();) {
    const size_t end = r.body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos) << r.body.substr(at);
    const std::string event = r.body.substr(at, end - at);
    at = end + 2;
    ASSERT_EQ(event.rfind("data: ", 0), 0u) << event;
    ASSERT_FALSE(done) << "an event after [DONE]";
    if (event == "data: [DONE]") {
      done = true;
      continue;
    }
    const Json chunk = Json::parse(event.substr(6), nullptr, false);
    ASSERT_TRUE(chunk.is_object()) << event;
    if (id.empty()) id = chunk["id"];
    EXPECT_EQ(chunk["id"], id);  // one id for the whole stream
    if (chunk.contains("usage")) usage = chunk["usage"];
    for (const Json& c : chunk["choices"]) {
      const int i = c["index"];
      texts[i] += c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) finish[i] = c["finish_reason"];
    }
  }
  EXPECT_TRUE(done);
  for (int i = 0; i < 2; ++i) {
    // The chunks, the last one's text included, spell the plain answer.
    EXPECT_EQ(texts[i], plain.json["choices"][i]["text"]);
    EXPECT_EQ(finish[i], plain.json["choices"][i]["finish_reason"]);
  }
  EXPECT_EQ(usage, plain.json["usage"]);
}

// `param`: the field the error blames (OpenAI's "param"), null for none.
void ExpectOpenAiError(const Json& request, const std::string& needle,
                       const Json& param) {
  const Reply r = Completions(request);
  EXPECT_EQ(r.status, 400) << request.dump() << " -> " << r.body;
  ASSERT_TRUE(r.json.contains("error")) << r.body;
  EXPECT_EQ(r.json["error"]["type"], "invalid_request_error");
  EXPECT_EQ(r.json["error"]["param"], param) << r.body;
  EXPECT_NE(r.json["error"]["message"].get<std::string>().find(needle),
            std::string::npos)
      << request.dump() << " -> " << r.body;
}

TEST(OpenAi, RefusesWhatItCannotHonour) {
  // Their no-op values are fine.
  const Reply ok = Completions({{"prompt", "x"},
                                {"max_tokens", 2},
                                {"top_p", 1},
                                {"stop", nullptr},
                                {"echo", false},
                                {"logprobs", nullptr},
                                {"best_of", 1},
                                {"presence_penalty", 0},
                                {"frequency_penalty", 0.0},
                                {"logit_bias", Json::object()},
                                {"suffix", nullptr},
                                {"user", "me"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  ExpectOpenAiError({{"prompt", "x"}, {"top_p", 1.5}}, "top_p", "top_p");
  ExpectOpenAiError({{"prompt", "x"}, {"top_p", -0.1}}, "top_p", "top_p");
  ExpectOpenAiError({{"prompt", "x"}, {"top_p", "0.9"}}, "top_p", "top_p");
  ExpectOpenAiError({{"prompt", "x"}, {"stop", {"a", "b", "c", "d", "e"}}},
                    "stop: 5 sequences; at most 4", "stop");
  ExpectOpenAiError({{"prompt", "x"}, {"stop", {"a", ""}}},
                    "stop: an empty sequence", "stop");
  ExpectOpenAiError({{"prompt", "x"}, {"stop", {1}}}, "stop", "stop");
  ExpectOpenAiError({{"prompt", "x"}, {"stop", 7}}, "stop", "stop");
  ExpectOpenAiError({{"prompt", "x"}, {"stop", std::string(300, 'x')}},
                    "stop: a sequence of 300 bytes", "stop");
  ExpectOpenAiError({{"prompt", "x"}, {"echo", true}}, "echo", "echo");
  ExpectOpenAiError({{"prompt", "x"}, {"logprobs", 5}}, "logprobs", "logprobs");
  ExpectOpenAiError({{"prompt", "x"}, {"best_of", 3}}, "best_of", "best_of");
  ExpectOpenAiError({{"prompt", "x"}, {"presence_penalty", 0.5}},
                    "presence_penalty", "presence_penalty");
  ExpectOpenAiError({{"prompt", "x"}, {"logit_bias", {{"50256", -100}}}},
                    "logit_bias", "logit_bias");
  ExpectOpenAiError({{"prompt", {"a", "b"}}}, "prompt", "prompt");
  ExpectOpenAiError({{"prompt", "x"}, {"n", 11}}, "n = 11", "n");
  ExpectOpenAiError({{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens",
                    "max_tokens");
  ExpectOpenAiError({{"prompt", "x"}, {"temperature", -1}}, "temperature",
                    "temperature");
  ExpectOpenAiError({{"prompt", "x"}, {"functions", 1}}, "unknown field",
                    nullptr);
  ExpectOpenAiError({{"max_tokens", 2}}, "prompt: required", "prompt");
  ExpectOpenAiError({{"prompt", "x"}, {"stream_options", {{"x", 1}}}},
                    "stream_options", "stream_options");
}

// Stop sequences and top-p through both APIs: a stop cuts each sample's text
// before its first appearance (finish_reason "stop"), streamed or not, and no
// streamed piece shows any of it; a top_p so small that only the most likely
// token is left is greedy decoding; /api/generate takes the same fields.
TEST(OpenAi, StopSequencesAndTopP) {
  const Json request = {{"prompt", "ROMEO:"},
                        {"n", 3},
                        {"max_tokens", 40},
                        {"seed", 11},
                        {"top_k", 50}};
  const Reply plain = Completions(request);
  ASSERT_EQ(plain.status, 200) << plain.body;
  std::vector<std::string> texts;
  for (const Json& c : plain.json["choices"]) texts.push_back(c["text"]);
  ASSERT_GT(texts[0].size(), 20u) << texts[0];
  const std::string stop = texts[0].substr(12, 3);
  Json with_stop = request;
  with_stop["stop"] = {"\x7f\x7f", stop};
  const Reply stopped = Completions(with_stop);
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  for (int i = 0; i < 3; ++i) {
    const Json& c = stopped.json["choices"][i];
    const size_t at = texts[i].find(stop);
    if (at == std::string::npos) {
      EXPECT_EQ(c["text"], texts[i]) << i;
      EXPECT_EQ(c["finish_reason"], plain.json["choices"][i]["finish_reason"]);
    } else {
      EXPECT_EQ(c["text"], texts[i].substr(0, at)) << i;
      EXPECT_EQ(c["finish_reason"], "stop") << i;
    }
  }
  EXPECT_LT(stopped.json["usage"]["completion_tokens"],
            plain.json["usage"]["completion_tokens"]);
  // Streamed: the same texts, and no piece holds the stop.
  with_stop["stream"] = true;
  const Reply streamed = Completions(with_stop);
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  std::vector<std::string> pieces(3);
  for (size_t at = 0; at < streamed.body.size();) {
    const size_t end = streamed.body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    const std::string event = streamed.body.substr(at, end - at);
    at = end + 2;
    if (event == "data: [DONE]") break;
    const Json chunk = Json::parse(event.substr(6), nullptr, false);
    ASSERT_TRUE(chunk.is_object()) << event;
    for (const Json& c : chunk["choices"]) {
      const std::string piece = c["text"];
      EXPECT_EQ(piece.find(stop), std::string::npos) << piece;
      pieces[c["index"].get<int>()] += piece;
    }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pieces[i], stopped.json["choices"][i]["text"]) << i;
  }
  // top_p: a nucleus of one token is greedy decoding.
  Json tiny_p = request;
  tiny_p["top_p"] = 1e-9;
  tiny_p["top_k"] = 50257;
  const Reply nucleus = Completions(tiny_p);
  const Reply greedy = Completions(
      {{"prompt", "ROMEO:"}, {"n", 3}, {"max_tokens", 40}, {"temperature", 0}});
  ASSERT_EQ(nucleus.status, 200) << nucleus.body;
  ASSERT_EQ(greedy.status, 200) << greedy.body;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(nucleus.json["choices"][i]["text"],
              greedy.json["choices"][i]["text"])
        << i;
  }
  // top_p 0 is OpenAI's greedy too.
  Json zero_p = request;
  zero_p["top_p"] = 0;
  EXPECT_EQ(Completions(zero_p).json["choices"][1]["text"],
            greedy.json["choices"][1]["text"]);
  // /api/generate: the same fields, the same samples.
  const Reply ours = Generate({{"prompt", "ROMEO:"},
                               {"num_samples", 3},
                               {"max_new_tokens", 40},
                               {"seed", 11},
                               {"top_k", 50},
                               {"top_p", 0.8},
                               {"stop", stop}});
  Json theirs = request;
  theirs["top_p"] = 0.8;
  theirs["stop"] = stop;
  const Reply completions = Completions(theirs);
  ASSERT_EQ(ours.status, 200) << ours.body;
  ASSERT_EQ(completions.status, 200) << completions.body;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ours.json["completions"][i],
              completions.json["choices"][i]["text"])
        << i;
    const bool stopped_here = ours.json["finish_reasons"][i] == "stop";
    EXPECT_EQ(completions.json["choices"][i]["finish_reason"],
              stopped_here ? "stop" : "length")
        << i;
  }
  ExpectBadRequest(R"({"prompt": "a", "top_p": 0})", "top_p");
  ExpectBadRequest(R"({"prompt": "a", "top_p": 1.01})", "top_p");
  ExpectBadRequest(R"({"prompt": "a", "stop": [""]})", "stop");
  ExpectBadRequest(R"({"prompt": "a", "stop": {"x": 1}})", "stop");
}

TEST(Api, MissingFieldsTakeTheirDefaults) {
  const Reply r = Generate({{"prompt", "First Citizen:"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Samples(r).size(), 5u);
  EXPECT_EQ(r.json["seed"], 1337);
  for (size_t i = 0; i < 5; ++i) {
    if (r.json["finish_reasons"][i] == "length") {
      EXPECT_EQ(r.json["new_tokens"][i], 50);
    }
  }
  // Explicit defaults give the same text.
  EXPECT_EQ(Samples(Generate({{"prompt", "First Citizen:"},
                              {"num_samples", 5},
                              {"max_new_tokens", 50},
                              {"top_k", 50},
                              {"temperature", 1.0},
                              {"seed", 1337}})),
            Samples(r));
}

TEST(Api, LengthIsCutAtTheContext) {
  const Reply r = Generate({{"prompt", "To be, or not to be"},
                            {"num_samples", 2},
                            {"max_new_tokens", 1024},
                            {"top_k", 1}});
  ASSERT_EQ(r.status, 200) << r.body;
  const int prompt_tokens = r.json["prompt_tokens"];
  for (int i = 0; i < 2; ++i) {
    if (r.json["finish_reasons"][i] == "end_of_text") continue;
    EXPECT_EQ(r.json["finish_reasons"][i], "context");
    EXPECT_EQ(r.json["new_tokens"][i], 64 - prompt_tokens);
  }
}

TEST(Api, MalformedJson) {
  for (const char* body :
       {"", "{", "not json", "{\"prompt\": \"a\",}", "{\"prompt\": \"a\"} x",
        "{\"prompt\": \"\xff\xfe\"}",
        // A number beyond a double: nlohmann throws out_of_range, not a
        // parse_error (it was a 500 "internal error"; found by
        // fuzz_serve_request).
        "{\"prompt\": \"a\", \"top_k\": 1e400}"}) {
    ExpectBadRequest(body, "malformed JSON");
    // In words, without the JSON library's exception tag.
    const Reply r = Send("POST", "/api/generate", body);
    EXPECT_EQ(r.body.find("json.exception"), std::string::npos) << r.body;
  }
  ExpectBadRequest("[1, 2]", "JSON object");
  ExpectBadRequest("\"ROMEO:\"", "JSON object");
  ExpectBadRequest("null", "JSON object");
}

TEST(Api, WrongTypes) {
  ExpectBadRequest(R"({"prompt": 5})", "prompt");
  ExpectBadRequest(R"({"prompt": null})", "prompt");
  ExpectBadRequest(R"({"prompt": ["ROMEO:"]})", "prompt");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": "5"})", "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": 2.5})", "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "max_new_tokens": true})",
                   "max_new_tokens");
  ExpectBadRequest(R"({"prompt": "a", "top_k": {}})", "top_k");
  ExpectBadRequest(R"({"prompt": "a", "temperature": "hot"})", "temperature");
  ExpectBadRequest(R"({"prompt": "a", "seed": 1.5})", "seed");
  ExpectBadRequest(R"({"prompt": "a", "seed": "7"})", "seed");
}

TEST(Api, OutOfRange) {
  ExpectBadRequest(R"({"num_samples": 2})", "prompt: required");
  ExpectBadRequest(R"({"prompt": ""})", "prompt: empty");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": 0})", "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": 11})", "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": -3})", "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "num_samples": 18446744073709551615})",
                   "num_samples");
  ExpectBadRequest(R"({"prompt": "a", "max_new_tokens": 0})", "max_new_tokens");
  ExpectBadRequest(R"({"prompt": "a", "max_new_tokens": 1025})",
                   "max_new_tokens");
  ExpectBadRequest(R"({"prompt": "a", "top_k": 0})", "top_k");
  ExpectBadRequest(R"({"prompt": "a", "top_k": 50258})", "top_k");
  ExpectBadRequest(R"({"prompt": "a", "temperature": 0})", "temperature");
  ExpectBadRequest(R"({"prompt": "a", "temperature": -1})", "temperature");
  ExpectBadRequest(R"({"prompt": "a", "temperature": 10.5})", "temperature");
  ExpectBadRequest(R"({"prompt": "a", "seed": -1})", "seed");
  ExpectBadRequest(R"({"prompt": "a", "max_tokens": 5})",
                   "unknown field 'max_tokens'");
  // Too many bytes, and (under the byte limit) too many tokens.
  ExpectBadRequest(Json{{"prompt", std::string(9000, 'a')}}.dump(),
                   "prompt: 9000 bytes");
  std::string words;
  for (int i = 0; i < 100; ++i) words += " word";
  ExpectBadRequest(Json{{"prompt", words}}.dump(), "context");
}

TEST(Api, OversizedBodyIs413) {
  const std::string body =
      Json{{"prompt", std::string(100 * 1024, 'a')}}.dump();
  const Reply r = Send("POST", "/api/generate", body);
  EXPECT_EQ(r.status, 413);
  ASSERT_TRUE(r.json.is_object()) << r.body;
  EXPECT_NE(r.json["error"].get<std::string>().find("65536"),
            std::string::npos);
}

TEST(Api, UnknownRoutesAre404) {
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/nope"},
                                                        {"POST", "/nope"}}) {
    const Reply r = Send(method, path, "{}");
    EXPECT_EQ(r.status, 404) << method << " " << path;
    EXPECT_TRUE(r.json.contains("error")) << r.body;
  }
}

// A route asked with the wrong method: 405, naming the one it takes.
TEST(Api, WrongMethodIs405) {
  for (const auto& [method, path, allowed] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/api/generate", "POST"},
           {"GET", "/v1/completions", "POST"},
           {"POST", "/healthz", "GET"},
           {"POST", "/v1/models", "GET"}}) {
    const Reply r = Send(method, path, "{}");
    EXPECT_EQ(r.status, 405) << method << " " << path;
    EXPECT_NE(ErrorMessage(r).find("it takes " + allowed), std::string::npos)
        << r.body;
    // Under /v1/, OpenAI's shape, as its clients read errors.
    EXPECT_EQ(r.json["error"].is_object(), path.rfind("/v1/", 0) == 0)
        << r.body;
  }
}

// 50 requests at once, five distinct seeds: every one answered, each with
// exactly the text the same request gets alone (no cross-talk in the queue).
TEST(Api, FiftyConcurrentRequests) {
  auto request = [](int i) {
    return Json{{"prompt", "First Citizen:"},
                {"num_samples", 2},
                {"max_new_tokens", 16},
                {"seed", i % 5}};
  };
  std::map<int, std::vector<std::string>> expected;
  for (int s = 0; s < 5; ++s) {
    const Reply r = Generate(request(s));
    ASSERT_EQ(r.status, 200) << r.body;
    expected[s] = Samples(r);
  }
  constexpr int kRequests = 50;
  std::vector<Reply> replies(kRequests);
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] { replies[i] = Generate(request(i)); });
  }
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  int ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(replies[i].status, 200) << i << ": " << replies[i].body;
    EXPECT_EQ(Samples(replies[i]), expected[i % 5]) << "request " << i;
    ok += replies[i].status == 200;
  }
  EXPECT_EQ(ok, kRequests) << "server log:\n" << ServerEnv::Log();
  std::printf("%d concurrent requests answered in %.2f s\n", kRequests,
              seconds);
}

// A raw loopback connection (to the shared server by default).
int Connect(int port = ServerEnv::port()) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends `request` (which asks Connection: close) on a raw loopback
// connection and returns all the server answers until it closes.
std::string Exchange(const std::string& request, int port = ServerEnv::port()) {
  const int fd = Connect(port);
  if (fd < 0) {
    ADD_FAILURE() << "cannot connect to the server";
    return "";
  }
  std::string answer;
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    ADD_FAILURE() << "short write of the request";
  } else {
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
      answer.append(buf, n);
    }
  }
  close(fd);
  return answer;
}

// A POST without Content-Length (curl -X POST with no -d) is answered at
// once: 400 saying what is missing on a POST route, 405 on a GET route, 404
// elsewhere (httplib waited out its 5 s read timeout, then sent a bare
// "HTTP 400", and 400 for POST /healthz).
TEST(Api, BodilessPostIsAnsweredAtOnce) {
  for (const auto& [path, status, needle] :
       std::vector<std::tuple<std::string, int, std::string>>{
           {"/api/generate", 400, "POST /api/generate without a body"},
           {"/v1/completions", 400, "without a body"},
           {"/healthz", 405, "it takes GET"},
           {"/nope", 404, "no route for POST /nope"}}) {
    const auto start = std::chrono::steady_clock::now();
    const std::string answer = Exchange(
        "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    EXPECT_LT(seconds, 2.0) << path;
    EXPECT_EQ(answer.rfind("HTTP/1.1 " + std::to_string(status), 0), 0u)
        << path << ":\n"
        << answer;
    EXPECT_NE(answer.find(needle), std::string::npos) << path << ":\n"
                                                      << answer;
  }
}

// A JSON body sent as a form (curl -d's default Content-Type,
// application/x-www-form-urlencoded) is read as JSON at any size up to the
// 64 KiB limit: httplib's own read refused such a body past 8 KiB with a 413
// that named 64 KiB.
TEST(Api, FormEncodedBodyOver8KiBIsReadAsJson) {
  const std::string prompt(9000, 'a');  // over the 8,192-byte prompt limit
  const std::string body = Json{{"prompt", prompt}}.dump();
  const std::string answer = Exchange(
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_NE(answer.find("prompt: 9000 bytes; at most 8192 are accepted"),
            std::string::npos)
      << answer;
}

// Clients that stall mid-request or send junk each hold at most one
// connection thread: a good request meanwhile is answered at once, every bad
// connection ends by the server's read timeout (5 s) with an error answer or a
// close, and the server keeps serving. All of them run at the same time, so
// the test waits for one timeout, not one per client.
TEST(Api, SlowAndBrokenClientsDoNotBlockOthers) {
  const std::vector<std::string> junk = {
      // Stalled: headers promise a body that never comes.
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
      "\r\n{\"prompt\": ",
      // Stalled inside the headers.
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Le",
      // Stalled before sending anything.
      "",
      "GARBAGE\r\n\r\n",
      std::string("\x00\x01\x02\r\n\r\n", 7),
      "POST /api/generate HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
      "GET / HTTP/1.1\r\n" + std::string(20000, 'X') + "\r\n\r\n",
      "GET /\x1b[31mred\nfake 200 line HTTP/1.1\r\n\r\n",
  };
  std::vector<std::string> clients = junk;
  // More clients stalled in their headers than the 16 connection threads
  // httplib's pool held: each holds a thread of its own now.
  for (int i = 0; i < 24; ++i) {
    clients.push_back("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  }
  std::vector<int> fds;
  for (const std::string& bytes : clients) {
    const int fd = Connect();
    ASSERT_GE(fd, 0);
    if (!bytes.empty()) {
      ASSERT_EQ(write(fd, bytes.data(), bytes.size()),
                static_cast<ssize_t>(bytes.size()));
    }
    fds.push_back(fd);
  }
  const auto start = std::chrono::steady_clock::now();
  const Reply r = Generate({{"prompt", "ROMEO:"}, {"num_samples", 1}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      2.0);
  // recv sees an answer or the close (>= 0) well before our own 10 s
  // receive timeout (-1).
  for (size_t i = 0; i < fds.size(); ++i) {
    char buf[256];
    const ssize_t n = recv(fds[i], buf, sizeof(buf), 0);
    EXPECT_GE(n, 0) << "the server kept bad connection " << i << " open";
    close(fds[i]);
  }
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      8.0);
  EXPECT_EQ(Send("GET", "/healthz").status, 200);
  // No client byte reaches the log raw.
  EXPECT_EQ(ServerEnv::Log().find("fake 200"), std::string::npos);
  EXPECT_EQ(ServerEnv::Log().find('\x1b'), std::string::npos);
}

// A streaming client that hangs up after the first line: the server goes on
// answering (the generation stops at its next batch of draws, or has ended).
TEST(Api, StreamingClientThatLeavesEarly) {
  for (int round = 0; round < 3; ++round) {
    const int fd = Connect();
    ASSERT_GE(fd, 0);
    const std::string body =
        R"({"prompt": "ROMEO:", "num_samples": 10, "max_new_tokens": 60, "stream": true})";
    const std::string http = absl::StrCat(
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: ",
        body.size(), "\r\n\r\n", body);
    ASSERT_EQ(write(fd, http.data(), http.size()),
              static_cast<ssize_t>(http.size()));
    char buf[512];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    EXPECT_GT(n, 0);
    EXPECT_NE(std::string(buf, std::max<ssize_t>(n, 0)).find("200"),
              std::string::npos);
    close(fd);
  }
  const Reply r = Generate({{"prompt", "ROMEO:"}, {"num_samples", 1}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Send("GET", "/healthz").json["queued"], 0);
}

// Bodies and requests the API cannot take, each refused at once with the
// reason: multipart forms, a field given twice, two Content-Lengths, a
// stream over HTTP/1.0 (which has no chunks); whole numbers written as
// floats are integers; a long bad value is quoted cut short.
TEST(Api, OddBodiesAndRequests) {
  const std::string multipart = Exchange(
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: multipart/form-data; boundary=XyZ\r\n"
      "Content-Length: 71\r\n\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na\r\n"
      "--XyZ--\r\n");
  EXPECT_EQ(multipart.rfind("HTTP/1.1 415", 0), 0u) << multipart;
  EXPECT_NE(multipart.find("send the request as JSON"), std::string::npos)
      << multipart;

  ExpectBadRequest(R"({"prompt": "a", "prompt": "b"})", "given twice");

  const std::string body = R"({"prompt": "ROMEO:"})";
  const std::string two_lengths = Exchange(absl::StrCat(
      "POST /api/generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Length: ",
      body.size(), "\r\nContent-Length: 3\r\n\r\n", body));
  EXPECT_EQ(two_lengths.rfind("HTTP/1.1 400", 0), 0u) << two_lengths;
  EXPECT_NE(two_lengths.find("more than one Content-Length"), std::string::npos)
      << two_lengths;

  const std::string stream = R"({"prompt": "ROMEO:", "stream": true})";
  const std::string http10 = Exchange(absl::StrCat(
      "POST /api/generate HTTP/1.0\r\nContent-Type: application/json\r\n"
      "Content-Length: ",
      stream.size(), "\r\n\r\n", stream));
  EXPECT_NE(http10.find(" 400 "), std::string::npos) << http10;
  EXPECT_NE(http10.find("needs HTTP/1.1"), std::string::npos) << http10;
  EXPECT_EQ(http10.find("chunked"), std::string::npos) << http10;

  const Reply floats = Generate(Json::parse(
      R"({"prompt": "ROMEO:", "num_samples": 2.0, "max_new_tokens": 4e0,
          "seed": 1e3})"));
  EXPECT_EQ(floats.status, 200) << floats.body;
  EXPECT_EQ(floats.json["num_samples"], 2) << floats.body;
  EXPECT_EQ(floats.json["seed"], 1000) << floats.body;
  ExpectBadRequest(R"({"prompt": "a", "num_samples": 2.5})",
                   "num_samples: expected an integer");

  const Reply long_value =
      Generate(Json{{"prompt", "a"}, {"temperature", std::string(60000, 'x')}});
  EXPECT_EQ(long_value.status, 400);
  EXPECT_LT(long_value.body.size(), 400u) << long_value.body.substr(0, 400);
  EXPECT_NE(ErrorMessage(long_value).find("xxx..."), std::string::npos)
      << long_value.body.substr(0, 400);
}

// Under /v1/ every error is OpenAI's shape (its clients read
// error.message), and the model is found by its id (models.retrieve).
TEST(OpenAi, ErrorsAndTheModelById) {
  for (const auto& [method, path, status] :
       std::vector<std::tuple<std::string, std::string, int>>{
           {"GET", "/v1/nope", 404},
           {"GET", "/v1/completions", 405},
           {"POST", "/v1/completions",
            413},  // the body below is over the limit
           {"GET", "/v1/models/no-such-model", 404}}) {
    const Reply r =
        Send(method, path, Json{{"prompt", std::string(70000, 'a')}}.dump());
    EXPECT_EQ(r.status, status) << method << " " << path << ": " << r.body;
    ASSERT_TRUE(r.json.is_object()) << r.body;
    EXPECT_TRUE(r.json["error"].is_object()) << r.body;
    EXPECT_FALSE(ErrorMessage(r).empty()) << r.body;
    EXPECT_TRUE(r.json["error"].contains("type")) << r.body;
  }
  const Reply list = Send("GET", "/v1/models");
  ASSERT_EQ(list.status, 200) << list.body;
  const std::string id = list.json["data"][0]["id"].get<std::string>();
  const Reply one = Send("GET", "/v1/models/" + id);
  EXPECT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.json, list.json["data"][0]) << one.body;
  EXPECT_EQ(Send("GET", "/v1/models/nope").json["error"]["code"],
            "model_not_found");
}

// Runs last (gtest keeps file order): every request above left one line.
TEST(ApiZ, LogsOneLinePerRequest) {
  const std::string log = ServerEnv::Log();
  const std::regex line(
      R"(127\.0\.0\.1 (GET|POST) (/\S*) (\d{3}) ([0-9.]+) ms (\d+) tokens)");
  std::map<std::string, int> by_status;
  int generate_ok = 0;
  int64_t tokens = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line);
       it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    ++by_status[m[3].str()];
    if (m[2] == "/api/generate" && m[3] == "200") {
      ++generate_ok;
      tokens += std::stoll(m[5].str());
    }
  }
  EXPECT_GE(generate_ok, 50 + 5 + 5);
  EXPECT_GT(tokens, 0);
  EXPECT_GE(by_status["400"], 30);
  EXPECT_GE(by_status["413"], 1);
  EXPECT_GE(by_status["404"], 2);
  EXPECT_GE(by_status["405"], 4);
}

// ---- gpt2_sample's command line -------------------------------------------

RunResult Sample(std::vector<std::string> args) {
  args.insert(args.begin(), g_sample_bin);
  return serve_testing::Run(args);
}

void ExpectFails(const std::vector<std::string>& args,
                 const std::string& needle) {
  const RunResult r = Sample(args);
  EXPECT_GE(r.code, 1) << r.output;
  EXPECT_LT(r.code, 128) << "crashed: " << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos)
      << "output lacks '" << needle << "':\n"
      << r.output;
}

TEST(SampleCli, SamplesAndReportsSpeed) {
  const std::vector<std::string> args = {
      "--checkpoint",     ServerEnv::checkpoint(),
      "--prompt",         "ROMEO:",
      "--num_samples",    "3",
      "--max_new_tokens", "20",
      "--seed",           "11"};
  const RunResult a = Sample(args);
  ASSERT_EQ(a.code, 0) << a.output;
  EXPECT_EQ(a.output.rfind("ROMEO:", 0), 0u) << a.output;
  // Three samples: separators between them and one before the summary.
  size_t separators = 0;
  for (size_t p = a.output.find("\n======\n"); p != std::string::npos;
       p = a.output.find("\n======\n", p + 1)) {
    ++separators;
  }
  EXPECT_EQ(separators, 3u) << a.output;
  EXPECT_NE(a.output.find("3 samples"), std::string::npos);
  EXPECT_NE(a.output.find("tokens/s"), std::string::npos);
  // The same seed prints the same samples (all but the timing line).
  const RunResult b = Sample(args);
  auto text = [](const std::string& out) {
    return out.substr(0, out.rfind("======"));
  };
  EXPECT_EQ(text(a.output), text(b.output));
  // The server, on the same checkpoint and seed, returns the same samples.
  const Reply r = Generate({{"prompt", "ROMEO:"},
                            {"num_samples", 3},
                            {"max_new_tokens", 20},
                            {"seed", 11}});
  std::string joined;
  for (const std::string& s : Samples(r)) joined += s + "\n======\n";
  // The CLI prints the bytes as decoded; JSON carries a UTF-8 character that
  // tokens split as U+FFFD. Compare the CLI's text the way the server sends it.
  const std::string as_sent =
      Json::parse(Json(text(a.output) + "======\n")
                      .dump(-1, ' ', false, Json::error_handler_t::replace))
          .get<std::string>();
  EXPECT_EQ(joined, as_sent);
  // One sample is printed as it is drawn: the same bytes as sample 1 of the
  // three (sample i does not depend on the others).
  std::vector<std::string> one_args = args;
  one_args[5] = "1";
  const RunResult one = Sample(one_args);
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_EQ(text(one.output),
            text(a.output).substr(0, text(a.output).find("======")))
      << one.output;
}

// --stop (C escapes) ends the printed sample before the sequence, streamed or
// not, and --top_p draws what the server draws with top_p.
TEST(SampleCli, StopAndTopP) {
  const std::vector<std::string> args = {
      "--checkpoint",     ServerEnv::checkpoint(),
      "--prompt",         "ROMEO:",
      "--num_samples",    "1",
      "--max_new_tokens", "40",
      "--seed",           "11"};
  auto text = [](const std::string& out) {
    return out.substr(0, out.rfind("\n======"));
  };
  const RunResult plain = Sample(args);
  ASSERT_EQ(plain.code, 0) << plain.output;
  const std::string full = text(plain.output);
  ASSERT_GT(full.size(), 30u) << full;
  // Three bytes of the continuation, the first of them escaped as \xHH.
  const std::string stop = full.substr(20, 3);
  // (Commas too: --stop takes a comma-separated list.)
  const std::string escaped = absl::StrReplaceAll(
      absl::StrFormat("\\x%02x", static_cast<unsigned char>(stop[0])) +
          absl::CEscape(stop.substr(1)),
      {{",", "\\x2c"}});
  for (const char* n : {"1", "2"}) {
    std::vector<std::string> stop_args = args;
    stop_args[5] = n;
    stop_args.push_back("--stop");
    stop_args.push_back(escaped);
    const RunResult cut = Sample(stop_args);
    ASSERT_EQ(cut.code, 0) << cut.output;
    // Sample 1 (the first printed) is the plain one cut before the stop.
    const std::string first = cut.output.substr(0, cut.output.find("\n======"));
    // (Stops are looked for in the continuation, after "ROMEO:".)
    const std::string continuation = full.substr(6);
    EXPECT_EQ(first, "ROMEO:" + continuation.substr(0, continuation.find(stop)))
        << n << ": " << cut.output;
  }
  // Two sequences, comma-separated: one the text never holds, then the same
  // stop: the same cut; an empty one between commas is refused.
  std::vector<std::string> two_args = args;
  two_args.insert(two_args.end(), {"--stop", "\\x01\\x02," + escaped});
  const RunResult two = Sample(two_args);
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_EQ(two.output.substr(0, two.output.find("\n======")),
            "ROMEO:" + full.substr(6).substr(0, full.substr(6).find(stop)))
      << two.output;
  ExpectFails({"--checkpoint", ServerEnv::checkpoint(), "--prompt", "a",
               "--stop", "x,,y"},
              "--stop: an empty sequence in 'x,,y'");
  std::vector<std::string> p_args = args;
  p_args.insert(p_args.end(), {"--top_p", "0.7", "--top_k", "100"});
  const RunResult nucleus = Sample(p_args);
  ASSERT_EQ(nucleus.code, 0) << nucleus.output;
  const Reply r = Generate({{"prompt", "ROMEO:"},
                            {"num_samples", 1},
                            {"max_new_tokens", 40},
                            {"seed", 11},
                            {"top_k", 100},
                            {"top_p", 0.7}});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string as_sent =
      Json::parse(Json(text(nucleus.output))
                      .dump(-1, ' ', false, Json::error_handler_t::replace))
          .get<std::string>();
  EXPECT_EQ(Samples(r)[0], as_sent);
  ExpectFails({"--checkpoint", ServerEnv::checkpoint(), "--prompt", "a",
               "--top_p", "0"},
              "--top_p = 0 must be above 0");
  ExpectFails({"--checkpoint", ServerEnv::checkpoint(), "--prompt", "a",
               "--stop", "\\q\\"},
              "--stop");
}

TEST(SampleCli, BadArguments) {
  const std::string& ckpt = ServerEnv::checkpoint();
  ExpectFails({"--prompt", "a"}, "--checkpoint FILE is required");
  ExpectFails(
      {"--checkpoint", ServerEnv::dir() + "/nope.ckpt", "--prompt", "a"},
      "nope.ckpt: cannot open checkpoint");
  ExpectFails({"--checkpoint", ckpt}, "--prompt TEXT is required");
  ExpectFails({"--checkpoint", ckpt, "--prompt", ""}, "must not be empty");
  std::string words;
  for (int i = 0; i < 100; ++i) words += " word";
  ExpectFails({"--checkpoint", ckpt, "--prompt", words}, "context of 64");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--top_k", "0"},
              "top_k = 0");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--temperature", "0"},
              "temperature = 0");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--temperature", "-2"},
              "temperature");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--num_samples", "0"},
              "--num_samples = 0");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--num_samples", "1000"},
              "--num_samples = 1000");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "--max_new_tokens", "0"},
              "--max_new_tokens = 0");
  ExpectFails({"--checkpoint", ckpt, "--prompt", "a", "extra"},
              "unexpected argument 'extra'");
  ExpectFails({"--random_124m", "--prompt", "a"}, "only goes with --bench");
  // A truncated checkpoint: the reader names the file.
  const std::string cut = ServerEnv::dir() + "/cut.ckpt";
  std::filesystem::copy_file(ckpt, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(ckpt) / 2);
  ExpectFails({"--checkpoint", cut, "--prompt", "a"}, "cut.ckpt");
  // gpt2_serve refuses a bad checkpoint the same way, before binding.
  const RunResult serve =
      serve_testing::Run({g_serve_bin, "--checkpoint", cut, "--port", "0"});
  EXPECT_EQ(serve.code, 1) << serve.output;
  EXPECT_NE(serve.output.find("cut.ckpt"), std::string::npos);
}

// A second server on the shared server's port fails to bind and says so
// (httplib's default SO_REUSEPORT let two servers share a port, the kernel
// splitting the requests between their models).
TEST(ServeCli, PortInUseIsRefused) {
  const RunResult second = serve_testing::Run(
      {g_serve_bin, "--checkpoint", ServerEnv::checkpoint(), "--port",
       std::to_string(ServerEnv::port())},
      /*timeout_seconds=*/20.0);  // one that binds would serve until killed
  EXPECT_EQ(second.code, 1) << second.output;
  const std::string port = std::to_string(ServerEnv::port());
  EXPECT_NE(second.output.find("cannot listen on 127.0.0.1:" + port +
                               ": port " + port + " is in use"),
            std::string::npos)
      << second.output;
  // Said before the model is loaded: no line about the model.
  EXPECT_EQ(second.output.find("decoding on"), std::string::npos)
      << second.output;
}

// Sends `request` on a new raw connection to `port`, without reading.
int SendRaw(int port, const std::string& path, const std::string& body) {
  const int fd = Connect(port);
  if (fd < 0) return fd;
  const std::string http =
      absl::StrCat("POST ", path,
                   " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
                   "application/json\r\nContent-Length: ",
                   body.size(), "\r\n\r\n", body);
  if (write(fd, http.data(), http.size()) !=
      static_cast<ssize_t>(http.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends on `fd` until it closes (or 10 s pass).
std::string ReadAll(int fd) {
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;)
    answer.append(buf, n);
  close(fd);
  return answer;
}

// SIGINT with work in flight (a server of its own, its streams slowed by
// GPT2_SERVE_TEST_DELAY_MS): it says so; the running stream and a queued one
// end with an error line (and OpenAI's [DONE]) and a proper end of the
// chunks, a queued plain request gets 503, and the process exits 0 at once,
// not after the queue is drained. A stream whose client left is marked in
// the access log, its client named.
TEST(ServeCli, SigintEndsTheRequestsInFlightAndSaysSo) {
  setenv("GPT2_SERVE_TEST_DELAY_MS", "100", 1);
  ChildProcess server;
  int port = 0;
  const absl::Status started = serve_testing::StartServer(
      g_serve_bin, ServerEnv::checkpoint(), &server, &port);
  unsetenv("GPT2_SERVE_TEST_DELAY_MS");
  ASSERT_TRUE(started.ok()) << started;
  // A client that leaves after its first chunk.
  const std::string long_stream =
      R"({"prompt": "ROMEO:", "num_samples": 2, "max_new_tokens": 60, "stream": true})";
  const int leaver = SendRaw(port, "/api/generate", long_stream);
  ASSERT_GE(leaver, 0);
  char buf[512];
  ASSERT_GT(recv(leaver, buf, sizeof(buf), 0), 0);
  close(leaver);
  server.WaitFor("went away", 10.0);
  EXPECT_NE(server.Output().find(" tokens (client left)"), std::string::npos)
      << server.Output();
  EXPECT_NE(server.Output().find("gpt2_serve: the streaming client 127.0.0.1:"),
            std::string::npos)
      << server.Output();

  // Plain requests whose clients leave while theirs runs and while it
  // waits: neither is generated on (a short request after them is answered
  // at once, not after 2 x 6 s of draws).
  const std::string long_plain =
      R"({"prompt": "ROMEO:", "num_samples": 2, "max_new_tokens": 60})";
  const int gone_running = SendRaw(port, "/api/generate", long_plain);
  const int gone_queued = SendRaw(port, "/api/generate", long_plain);
  ASSERT_GE(gone_running, 0);
  ASSERT_GE(gone_queued, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  close(gone_running);
  close(gone_queued);
  const auto short_start = std::chrono::steady_clock::now();
  const std::string short_answer = Exchange(
      absl::StrCat("POST /api/generate HTTP/1.1\r\nHost: x\r\nConnection: "
                   "close\r\nContent-Length: 49\r\n\r\n",
                   R"({"prompt": "ROMEO:", "max_new_tokens": 2, "a": 1})"),
      port);
  EXPECT_NE(short_answer.find("unknown field 'a'"), std::string::npos)
      << short_answer;  // (answered without the model: a sanity check)
  const std::string quick = R"({"prompt": "ROMEO:", "max_new_tokens": 2})";
  const std::string quick_answer =
      Exchange(absl::StrCat("POST /api/generate HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\nContent-Length: ",
                            quick.size(), "\r\n\r\n", quick),
               port);
  EXPECT_EQ(quick_answer.rfind("HTTP/1.1 200", 0), 0u) << quick_answer;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                          short_start)
                .count(),
            3.0)
      << server.Output();
  EXPECT_NE(server.Output().find("POST /api/generate 499 "), std::string::npos)
      << server.Output();
  EXPECT_NE(server.Output().find("gpt2_serve: the waiting client 127.0.0.1:"),
            std::string::npos)
      << server.Output();

  const int running = SendRaw(port, "/api/generate", long_stream);
  ASSERT_GE(running, 0);
  ASSERT_GT(recv(running, buf, sizeof(buf), 0), 0);  // it streams
  const int queued_stream =
      SendRaw(port, "/v1/completions",
              R"({"prompt": "ROMEO:", "max_tokens": 8, "stream": true})");
  const int queued_plain =
      SendRaw(port, "/api/generate", R"({"prompt": "ROMEO:"})");
  ASSERT_GE(queued_stream, 0);
  ASSERT_GE(queued_plain, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // queued
  const auto start = std::chrono::steady_clock::now();
  kill(server.pid(), SIGINT);

  const std::string rest = ReadAll(running);
  EXPECT_NE(rest.find(R"({"error":"the server is stopping"})"),
            std::string::npos)
      << rest;
  EXPECT_NE(rest.find("\r\n0\r\n\r\n"), std::string::npos)
      << "the chunks did not end:\n"
      << rest;
  const std::string sse = ReadAll(queued_stream);
  EXPECT_EQ(sse.rfind("HTTP/1.1 200", 0), 0u) << sse;
  EXPECT_NE(sse.find("the server is stopping"), std::string::npos) << sse;
  EXPECT_NE(sse.find("data: [DONE]"), std::string::npos) << sse;
  const std::string plain = ReadAll(queued_plain);
  EXPECT_EQ(plain.rfind("HTTP/1.1 503", 0), 0u) << plain;
  EXPECT_NE(plain.find("the server is stopping"), std::string::npos) << plain;

  EXPECT_EQ(server.Wait(10.0), 0) << server.Output();
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      4.0);
  EXPECT_NE(server.Output().find("gpt2_serve: SIGINT received: stopping (3 "
                                 "requests queued or running end with 503"),
            std::string::npos)
      << server.Output();
  EXPECT_NE(server.Output().find("gpt2_serve: stopped"), std::string::npos)
      << server.Output();
}

// More new tokens than the context holds: the samples stop at the context, and
// the tool says so instead of quietly printing fewer.
TEST(SampleCli, SaysWhenTheContextCutsMaxNewTokens) {
  const RunResult r =
      Sample({"--checkpoint", ServerEnv::checkpoint(), "--prompt",
              "ROMEO:", "--max_new_tokens", "1000", "--seed", "3"});
  ASSERT_EQ(r.code, 0) << r.output;
  // "ROMEO:" is 3 tokens of the tiny model's 64; five samples by default.
  EXPECT_NE(r.output.find("note: --max_new_tokens 1000 cut to 61: the "
                          "model's context is 64 tokens and the prompt "
                          "takes 3"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("5 samples, 305 new tokens"), std::string::npos)
      << r.output;
  // Within the context: no note.
  const RunResult fits =
      Sample({"--checkpoint", ServerEnv::checkpoint(), "--prompt",
              "ROMEO:", "--max_new_tokens", "61", "--seed", "3"});
  ASSERT_EQ(fits.code, 0) << fits.output;
  EXPECT_EQ(fits.output.find("note:"), std::string::npos) << fits.output;
}

TEST(SampleCli, HelpExplainsEveryFlag) {
  const RunResult r = Sample({"--help"});
  for (const char* flag :
       {"--checkpoint", "--prompt", "--num_samples", "--max_new_tokens",
        "--top_k", "--temperature", "--seed", "--data_dir", "--bench",
        "--random_124m", "--bench_tokens", "--bench_runs"}) {
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag;
  }
  const RunResult s = serve_testing::Run({g_serve_bin, "--help"});
  for (const char* flag : {"--checkpoint", "--port", "--host", "--data_dir",
                           "--http_threads", "/api/generate", "/healthz"}) {
    EXPECT_NE(s.output.find(flag), std::string::npos) << flag;
  }
}

TEST(SampleCli, Bench) {
  const RunResult r = Sample({"--checkpoint", ServerEnv::checkpoint(),
                              "--bench", "--bench_tokens", "16"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex(R"(decode batch 1: [0-9.]+ tokens/s)")))
      << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex(R"(decode batch 8: [0-9.]+ tokens/s)")))
      << r.output;
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PATH/TO/gpt2_serve PATH/TO/gpt2_sample\n",
                 argv[0]);
    return 2;
  }
  gpt2::g_serve_bin = argv[1];
  gpt2::g_sample_bin = argv[2];
  // A hung test must not hang CI: end the process (and, through
  // PR_SET_PDEATHSIG, the server) after 100 s.
  alarm(100);
  ::testing::AddGlobalTestEnvironment(new gpt2::ServerEnv);
  return RUN_ALL_TESTS();
}
