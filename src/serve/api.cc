#include "src/serve/api.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2::serve {
namespace {

// The answer to a finished request (also the last line of a stream).
absl::StatusOr<Json> ResultJson(const ServedModel& served,
                                const ParsedRequest& parsed,
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

}  // namespace

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json ErrorJson(const std::string& path, const std::string& message,
               const Json& param, const Json& code) {
  if (path.rfind("/v1/", 0) != 0) return Json{{"error", message}};
  return Json{{"error",
               {{"message", message},
                {"type", "invalid_request_error"},
                {"param", param},
                {"code", code}}}};
}

int StatusFor(const absl::Status& status) {
  if (absl::IsUnavailable(status)) return 503;
  if (absl::IsInvalidArgument(status)) return 400;
  return 500;
}

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

std::shared_ptr<const ApiFormat> GenerateFormat(const ServedModel& served) {
  auto f = std::make_shared<ApiFormat>();
  f->whole = [&served](const ParsedRequest& parsed,
                       const infer::GenerateResult& result, double waited) {
    return ResultJson(served, parsed, result, waited);
  };
  f->stream_type = "application/x-ndjson";
  f->frame = [](const Json& message) { return Dump(message) + "\n"; };
  f->deltas = [](const std::vector<std::string>& deltas, int64_t tokens) {
    return std::vector<Json>{Json{{"deltas", deltas}, {"tokens", tokens}}};
  };
  f->end = [](const ParsedRequest&, const Json& whole,
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
  f->whole = [&served, head, choice](const ParsedRequest& parsed,
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
  f->end = [head, choice](const ParsedRequest& parsed, const Json& whole,
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

}  // namespace gpt2::serve
