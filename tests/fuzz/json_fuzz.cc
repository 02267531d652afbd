// src/core/json_reader: ParseJson and ForEachJsonLine on any bytes. Where
// nlohmann/json is in the build, a differential check as well: a text ours
// accepts must be JSON to nlohmann too (RFC 8259: where ours is lenient, it is
// a finding), with the same tree (kinds, numbers as doubles, strings, keys in
// order). Ours is stricter on purpose in two places, which the check allows:
// a key named twice, and nesting deeper than 64. Texts with a NUL byte or
// invalid UTF-8 are left out of the comparison (below).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "src/core/json_reader.h"
#include "tests/fuzz/fuzz_util.h"

#if defined(GPT2_FUZZ_HAVE_NLOHMANN)
#include <nlohmann/json.hpp>

namespace {

// Whether `text` is valid UTF-8 (RFC 3629: no overlongs, no surrogates, at
// most U+10FFFF). Ours passes a string's bytes through as they are; nlohmann
// refuses invalid UTF-8, so the differential check covers valid text only.
bool ValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    int extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c < 0xE0) {
      extra = 1;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c < 0xF0) {
      extra = 2;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c < 0xF5) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      code = (code << 6) | (d & 0x3F);
    }
    if ((extra == 2 && (code < 0x800 || (code >= 0xD800 && code < 0xE000))) ||
        (extra == 3 && (code < 0x10000 || code > 0x10FFFF))) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

int Depth(const nlohmann::json& j) {
  int deepest = 0;
  if (j.is_array() || j.is_object()) {
    for (const auto& item : j) deepest = std::max(deepest, Depth(item) + 1);
  }
  return deepest;
}

void CheckSame(const gpt2::JsonValue& ours,
               const nlohmann::ordered_json& theirs) {
  using Kind = gpt2::JsonValue::Kind;
  switch (ours.kind) {
    case Kind::kNull:
      GPT2_FUZZ_CHECK(theirs.is_null());
      break;
    case Kind::kBool:
      GPT2_FUZZ_CHECK(theirs.is_boolean());
      GPT2_FUZZ_CHECK(theirs.get<bool>() == ours.boolean);
      break;
    case Kind::kNumber:
      GPT2_FUZZ_CHECK(theirs.is_number());
      GPT2_FUZZ_CHECK(theirs.get<double>() == ours.number);
      break;
    case Kind::kString:
      GPT2_FUZZ_CHECK(theirs.is_string());
      GPT2_FUZZ_CHECK(theirs.get<std::string>() == ours.string);
      break;
    case Kind::kArray:
      GPT2_FUZZ_CHECK(theirs.is_array());
      GPT2_FUZZ_CHECK(theirs.size() == ours.array.size());
      for (size_t k = 0; k < ours.array.size(); ++k) {
        CheckSame(ours.array[k], theirs[k]);
      }
      break;
    case Kind::kObject: {
      GPT2_FUZZ_CHECK(theirs.is_object());
      GPT2_FUZZ_CHECK(theirs.size() == ours.object.size());
      size_t k = 0;
      for (auto it = theirs.begin(); it != theirs.end(); ++it, ++k) {
        GPT2_FUZZ_CHECK(it.key() == ours.object[k].first);
        CheckSame(ours.object[k].second, it.value());
      }
      break;
    }
  }
}

void Differential(std::string_view text,
                  const absl::StatusOr<gpt2::JsonValue>& ours) {
  // nlohmann's lexer also takes a NUL byte for the end of the text.
  if (!ValidUtf8(text) || text.find('\0') != std::string_view::npos) return;
  // nlohmann's ordered_json keeps the first of a repeated key; ours refuses
  // those, so a text ours accepts has none.
  nlohmann::ordered_json theirs;
  try {  // a number beyond a double throws out_of_range even so
    theirs = nlohmann::ordered_json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  } catch (const nlohmann::ordered_json::exception&) {
    theirs = nlohmann::ordered_json(nlohmann::ordered_json::value_t::discarded);
  }
  if (ours.ok()) {
    GPT2_FUZZ_CHECK(!theirs.is_discarded());
    CheckSame(*ours, theirs);
  } else if (!theirs.is_discarded()) {
    // Ours refused what nlohmann took: only for the two strictnesses above.
    const std::string why(ours.status().message());
    GPT2_FUZZ_CHECK(why.find("nested too deeply") != std::string::npos ||
                    why.find("duplicate key") != std::string::npos);
  }
}

}  // namespace
#endif  // GPT2_FUZZ_HAVE_NLOHMANN

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<gpt2::JsonValue> value = gpt2::ParseJson(text);
  if (value.ok()) {
    // The lookups the importers make, on whatever came out.
    (void)value->Find("dtype");
    (void)(*value)["shape"].IsInteger(0, 1e15);
    for (const auto& [key, member] : value->object) {
      (void)member["data_offsets"].array.size();
    }
  } else {
    GPT2_FUZZ_CHECK(!value.status().message().empty());
  }
#if defined(GPT2_FUZZ_HAVE_NLOHMANN)
  Differential(text, value);
#endif
  std::istringstream lines{std::string(text)};
  int seen = 0;
  const absl::Status status = gpt2::ForEachJsonLine(
      lines, "fuzz.jsonl",
      [&seen](const gpt2::JsonValue&, const std::string& where) {
        GPT2_FUZZ_CHECK(where.rfind("fuzz.jsonl:", 0) == 0);
        ++seen;
        return absl::OkStatus();
      });
  (void)status;
  return 0;
}
