// gpt2_serve's two generation APIs in JSON: ours (POST /api/generate) and
// OpenAI's completions (POST /v1/completions). Each API's ApiFormat writes
// its answer to a request, a stream's messages and its errors; the model
// served, its id and its description are shared by both.
#ifndef GPT2_SERVE_API_H_
#define GPT2_SERVE_API_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"
#include "src/infer/generate.h"
#include "src/infer/model_source.h"
#include "src/serve/request.h"

namespace gpt2::serve {

using Json = nlohmann::json;

// JSON text; invalid UTF-8 (a character split across the last token) becomes
// U+FFFD rather than an exception.
std::string Dump(const Json& j);

// An error's body as the API of `path` writes them: OpenAI's {"error":
// {"message", "type", "param", "code"}} under /v1/, ours {"error": "..."}
// elsewhere. `param`: the request field to blame, if any.
Json ErrorJson(const std::string& path, const std::string& message,
               const Json& param = nullptr, const Json& code = nullptr);

// The HTTP status for a generation that failed: 503 when the server is
// stopping, 400 for a request the model cannot take, else 500.
int StatusFor(const absl::Status& status);

struct ServedModel {
  infer::InferenceModel model;  // shape, step, source (params moved out)
  Tokenizer tokenizer;
};

// The model's name in the OpenAI API: the checkpoint's (or Hugging Face
// folder's) file name.
std::string ModelId(const ServedModel& served);
// /healthz's description of the model.
Json ModelInfo(const ServedModel& served);

// How one API writes its answers: the whole answer to a plain request, and
// a stream's messages (each framed on its own; the tail after the last).
struct ApiFormat {
  std::function<absl::StatusOr<Json>(
      const ParsedRequest&, const infer::GenerateResult&, double queue_seconds)>
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
  std::function<std::vector<Json>(const ParsedRequest&, const Json& whole,
                                  const std::vector<std::string>& rest)>
      end;
  std::function<Json(const std::string& message)> error;

  std::string Frame(const std::vector<Json>& messages) const {
    std::string text;
    for (const Json& m : messages) text += frame(m);
    return text;
  }
};

// POST /api/generate: {"error": "..."}; a stream is newline-separated JSON,
// {"deltas": [...], "tokens": N} lines, then the answer with "done": true.
std::shared_ptr<const ApiFormat> GenerateFormat(const ServedModel& served);

// POST /v1/completions, as OpenAI's completions API answers: a
// "text_completion" object with its choices and usage; a stream is
// server-sent events, a chunk per sample's new text, a chunk with each
// sample's finish reason (and with stream_options.include_usage one with
// the usage), then "data: [DONE]". Errors: {"error": {"message", "type",
// "param", "code"}}. `id` and `created` name the one request.
std::shared_ptr<const ApiFormat> CompletionsFormat(const ServedModel& served,
                                                   const std::string& model_id,
                                                   const std::string& id,
                                                   int64_t created);

}  // namespace gpt2::serve

#endif  // GPT2_SERVE_API_H_
