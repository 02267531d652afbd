#include "src/serve/request.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/core/error.h"
#include "src/serve/api.h"

namespace gpt2::serve {
namespace {

// A client's value as an error message quotes it: cut to 64 bytes (a 60 KB
// string made a 60 KB error).
std::string Cut(std::string text) {
  constexpr size_t kMax = 64;
  if (text.size() > kMax) {
    text.resize(kMax);
    // Not inside a UTF-8 character.
    while (!text.empty() &&
           (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80)
      text.pop_back();
    if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0)
      text.pop_back();
    text += "...";
  }
  return text;
}
std::string Shown(const Json& j) { return Cut(Dump(j)); }

// A JSON number that is a whole number, as an integer: 2 and 2.0 and 2e0
// alike (Python's json.dumps writes 2.0 for a float); none for 2.5, or
// beyond int64 / uint64.
std::optional<int64_t> WholeSigned(const Json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t{INT64_MAX}) return std::nullopt;
    return v.get<int64_t>();
  }
  if (!v.is_number_float()) return std::nullopt;
  const double d = v.get<double>();
  if (!(d == std::floor(d)) || d < -9.2e18 || d > 9.2e18) return std::nullopt;
  return static_cast<int64_t>(d);
}

// A request body's fields, read with their types and bounds checked.
class Fields {
 public:
  static absl::StatusOr<Fields> Parse(
      const std::string& body, std::initializer_list<const char*> known) {
    Fields f;
    // A key twice in one object: which one counts is a guess (the JSON
    // library kept the last), so neither does.
    std::vector<std::set<std::string>> keys;  // per open object
    std::string repeated;
    const Json::parser_callback_t note_keys =
        [&](int, Json::parse_event_t event, Json& parsed) {
          if (event == Json::parse_event_t::object_start) {
            keys.emplace_back();
          } else if (event == Json::parse_event_t::object_end) {
            if (!keys.empty()) keys.pop_back();
          } else if (event == Json::parse_event_t::key && !keys.empty() &&
                     repeated.empty() &&
                     !keys.back().insert(parsed.get<std::string>()).second) {
            repeated = parsed.get<std::string>();
          }
          return true;
        };
    try {
      f.j_ = Json::parse(body, note_keys);
    } catch (const Json::exception& e) {  // parse_error, and out_of_range
                                          // for a number beyond a double
      // Without the library's "[json.exception.parse_error.101] " tag.
      std::string what = e.what();
      if (what.rfind("[json.exception.", 0) == 0) {
        const size_t end = what.find("] ");
        if (end != std::string::npos) what.erase(0, end + 2);
      }
      return absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", what));
    }
    if (!f.j_.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the body must be a JSON object, got ", f.j_.type_name()));
    }
    if (!repeated.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field '", Cut(repeated),
                       "' given twice in one object; give each field once"));
    }
    for (const auto& item : f.j_.items()) {
      bool found = false;
      for (const char* k : known) found = found || item.key() == k;
      if (!found) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown field '", Cut(item.key()),
                         "' (fields: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    return f;
  }

  // Present and not null.
  bool has(const char* field) const { return !(*this)[field].is_null(); }
  // The field, or null where the body lacks it (nlohmann's const operator[]
  // is undefined for a missing key: it read freed memory here, and crashed
  // gpt2_serve now and then, for every completions request without top_p).
  const Json& operator[](const char* field) const {
    static const Json kAbsent;
    const auto it = j_.find(field);
    return it == j_.end() ? kAbsent : *it;
  }

  absl::Status BadType(const char* field, const char* want) const {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected ", want, ", got ",
                     (*this)[field].type_name(), " ", Shown((*this)[field])));
  }

  absl::StatusOr<int64_t> Integer(const char* field, int64_t lo, int64_t hi,
                                  int64_t fallback) const {
    if (!has(field)) return fallback;
    const Json& v = (*this)[field];
    if (!v.is_number()) return BadType(field, "an integer");
    const std::optional<int64_t> whole = WholeSigned(v);
    if (v.is_number_float() && v.get<double>() != std::floor(v.get<double>())) {
      return BadType(field, "an integer");
    }
    if (!whole.has_value() || *whole < lo || *whole > hi) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " = ", Shown(v), " is outside [", lo, ", ", hi, "]"));
    }
    return *whole;
  }

  absl::StatusOr<uint64_t> Seed(const char* field, uint64_t fallback) const {
    if (!has(field)) return fallback;
    const Json& v = (*this)[field];
    if (!v.is_number()) return BadType(field, "an integer");
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    // A whole double below 2^64 (1e3, 5.0) is one exactly.
    const double d = v.get<double>();
    if (v.is_number_float() && d != std::floor(d)) {
      return BadType(field, "an integer");
    }
    if (!(d >= 0.0) || d >= 18446744073709551616.0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " = ", Shown(v),
                       " must be a non-negative integer below 2^64"));
    }
    return static_cast<uint64_t>(d);
  }

  // A temperature in [lo, kMaxTemperature] (lo excluded where open).
  absl::StatusOr<double> Temperature(const char* field, bool zero_allowed,
                                     double fallback) const {
    if (!has(field)) return fallback;
    const Json& v = (*this)[field];
    if (!v.is_number()) return BadType(field, "a number");
    const double t = v.get<double>();
    if (!(zero_allowed ? t >= 0.0 : t > 0.0) || t > kMaxTemperature) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " = ", Shown(v), " is outside ",
                       zero_allowed ? "[0, " : "(0, ", kMaxTemperature, "]"));
    }
    return t;
  }

  // A top_p in (0, 1], or [0, 1] where zero is allowed (OpenAI's 0: greedy).
  absl::StatusOr<double> TopP(const char* field, bool zero_allowed) const {
    if (!has(field)) return 1.0;
    const Json& v = (*this)[field];
    if (!v.is_number()) return BadType(field, "a number");
    const double p = v.get<double>();
    if (!(zero_allowed ? p >= 0.0 : p > 0.0) || p > 1.0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " = ", Shown(v), " is outside ",
                       zero_allowed ? "[0, 1]" : "(0, 1]"));
    }
    return p;
  }

  // Stop sequences: null, a string or a list of at most kMaxStops strings,
  // each at most kMaxStopBytes; "" and [] are none.
  absl::StatusOr<std::vector<std::string>> Stops(const char* field) const {
    std::vector<std::string> stops;
    if (!has(field)) return stops;
    const Json& v = (*this)[field];
    const char* want = "a string or a list of strings";
    if (v.is_string()) {
      if (!v.get<std::string>().empty()) stops.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      if (v.size() > kMaxStops) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": ", v.size(), " sequences; at most ",
                         kMaxStops, " are accepted"));
      }
      for (const Json& s : v) {
        if (!s.is_string()) return BadType(field, want);
        if (s.get<std::string>().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": an empty sequence in ", Shown(v)));
        }
        stops.push_back(s.get<std::string>());
      }
    } else {
      return BadType(field, want);
    }
    for (const std::string& s : stops) {
      if (s.size() > kMaxStopBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": a sequence of ", s.size(),
                         " bytes; at most ", kMaxStopBytes, " are accepted"));
      }
    }
    return stops;
  }

  absl::StatusOr<bool> Bool(const char* field, bool fallback) const {
    if (!has(field)) return fallback;
    if (!(*this)[field].is_boolean()) return BadType(field, "true or false");
    return (*this)[field].get<bool>();
  }

  absl::Status AnyString(const char* field) const {
    return !has(field) || (*this)[field].is_string()
               ? absl::OkStatus()
               : BadType(field, "a string");
  }

  // A field accepted only where it changes nothing: absent, null, or `ok`.
  absl::Status NoOp(const char* field, bool ok, const char* why) const {
    if (!has(field) || ok) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        field, " = ", Shown((*this)[field]), " is not supported: ", why));
  }

 private:
  Json j_;
};

// The prompt's text: non-empty, bounded, tokenized into `out`.
absl::Status SetPrompt(const std::string& text, const Tokenizer& tokenizer,
                       ParsedRequest* out) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        "prompt: empty; give at least one character of text to continue");
  }
  if (text.size() > kMaxPromptBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: ", text.size(), " bytes; at most ",
                     kMaxPromptBytes, " are accepted"));
  }
  out->prompt = text;
  for (int id : tokenizer.Encode(text)) out->request.prompt.push_back(id);
  out->request.end_of_text = Tokenizer::kEndOfText;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedRequest> ParseGenerateBody(const std::string& body,
                                                const ModelShape& shape,
                                                const Tokenizer& tokenizer) {
  GPT2_ASSIGN_OR_RETURN(
      const Fields f,
      Fields::Parse(body, {"prompt", "num_samples", "max_new_tokens", "top_k",
                           "temperature", "top_p", "stop", "seed", "stream"}));
  ParsedRequest out;
  infer::GenerateRequest& r = out.request;
  if (!f.has("prompt")) return absl::InvalidArgumentError("prompt: required");
  if (!f["prompt"].is_string()) return f.BadType("prompt", "a string");
  GPT2_RETURN_IF_ERROR(
      SetPrompt(f["prompt"].get<std::string>(), tokenizer, &out));
  GPT2_ASSIGN_OR_RETURN(r.num_samples,
                        f.Integer("num_samples", 1, kMaxSamples, 5));
  GPT2_ASSIGN_OR_RETURN(r.max_new_tokens,
                        f.Integer("max_new_tokens", 1, kMaxNewTokens, 50));
  GPT2_ASSIGN_OR_RETURN(r.sampling.top_k,
                        f.Integer("top_k", 1, shape.vocab_size, 50));
  GPT2_ASSIGN_OR_RETURN(r.sampling.temperature,
                        f.Temperature("temperature", false, 1.0));
  GPT2_ASSIGN_OR_RETURN(r.sampling.top_p, f.TopP("top_p", false));
  GPT2_ASSIGN_OR_RETURN(r.stop, f.Stops("stop"));
  GPT2_ASSIGN_OR_RETURN(r.seed, f.Seed("seed", 1337));
  GPT2_ASSIGN_OR_RETURN(out.stream, f.Bool("stream", false));
  GPT2_RETURN_IF_ERROR(infer::ValidateGenerateRequest(shape, kMaxSamples, r));
  return out;
}

absl::StatusOr<ParsedRequest> ParseCompletionsBody(const std::string& body,
                                                   const ModelShape& shape,
                                                   const Tokenizer& tokenizer,
                                                   uint64_t fresh_seed) {
  GPT2_ASSIGN_OR_RETURN(
      const Fields f,
      Fields::Parse(
          body, {"model", "prompt", "max_tokens", "n", "temperature", "top_p",
                 "top_k", "seed", "stream", "stream_options", "stop", "echo",
                 "logprobs", "best_of", "presence_penalty", "frequency_penalty",
                 "logit_bias", "suffix", "user"}));
  ParsedRequest out;
  infer::GenerateRequest& r = out.request;
  GPT2_RETURN_IF_ERROR(f.AnyString("model"));
  GPT2_RETURN_IF_ERROR(f.AnyString("user"));
  if (!f.has("prompt")) return absl::InvalidArgumentError("prompt: required");
  const Json& prompt = f["prompt"];
  if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    GPT2_RETURN_IF_ERROR(
        SetPrompt(prompt[0].get<std::string>(), tokenizer, &out));
  } else if (prompt.is_string()) {
    GPT2_RETURN_IF_ERROR(SetPrompt(prompt.get<std::string>(), tokenizer, &out));
  } else {
    return f.BadType("prompt", "a string (or a list of one string)");
  }
  GPT2_ASSIGN_OR_RETURN(r.max_new_tokens,
                        f.Integer("max_tokens", 1, kMaxNewTokens, 16));
  GPT2_ASSIGN_OR_RETURN(r.num_samples, f.Integer("n", 1, kMaxSamples, 1));
  GPT2_ASSIGN_OR_RETURN(const double temperature,
                        f.Temperature("temperature", true, 1.0));
  GPT2_ASSIGN_OR_RETURN(
      r.sampling.top_k,
      f.Integer("top_k", 1, shape.vocab_size, shape.vocab_size));
  GPT2_ASSIGN_OR_RETURN(const double top_p, f.TopP("top_p", true));
  if (temperature == 0.0 || top_p == 0.0) {  // OpenAI's greedy decoding
    r.sampling.top_k = 1;
    r.sampling.temperature = 1.0;
  } else {
    r.sampling.temperature = temperature;
    r.sampling.top_p = top_p;
  }
  GPT2_ASSIGN_OR_RETURN(r.stop, f.Stops("stop"));
  GPT2_ASSIGN_OR_RETURN(r.seed, f.Seed("seed", fresh_seed));
  GPT2_ASSIGN_OR_RETURN(out.stream, f.Bool("stream", false));
  if (f.has("stream_options")) {
    const Json& options = f["stream_options"];
    if (!options.is_object() ||
        (options.contains("include_usage") &&
         !options["include_usage"].is_boolean()) ||
        options.size() > (options.contains("include_usage") ? 1u : 0u)) {
      return f.BadType("stream_options", "{\"include_usage\": true or false}");
    }
    out.stream_usage = options.value("include_usage", false);
  }
  const auto number_is = [&](const char* field, double value) {
    return f[field].is_number() && f[field].get<double>() == value;
  };
  GPT2_RETURN_IF_ERROR(f.NoOp("echo",
                              f["echo"].is_boolean() && !f["echo"].get<bool>(),
                              "echoing the prompt"));
  GPT2_RETURN_IF_ERROR(f.NoOp("logprobs", false, "log-probabilities"));
  GPT2_RETURN_IF_ERROR(
      f.NoOp("best_of", number_is("best_of", 1.0), "best-of sampling"));
  GPT2_RETURN_IF_ERROR(f.NoOp("presence_penalty",
                              number_is("presence_penalty", 0.0), "penalties"));
  GPT2_RETURN_IF_ERROR(f.NoOp(
      "frequency_penalty", number_is("frequency_penalty", 0.0), "penalties"));
  GPT2_RETURN_IF_ERROR(f.NoOp(
      "logit_bias", f["logit_bias"].is_object() && f["logit_bias"].empty(),
      "logit biases"));
  GPT2_RETURN_IF_ERROR(f.NoOp("suffix", false, "suffixes"));
  GPT2_RETURN_IF_ERROR(infer::ValidateGenerateRequest(shape, kMaxSamples, r));
  return out;
}

}  // namespace gpt2::serve
