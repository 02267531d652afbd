// Just enough JSON input for the Hugging Face import (a safetensors header and
// config.json): a tree of null, booleans, numbers (doubles: integers are exact
// up to 2^53), strings, arrays and objects (keys in file order), with errors
// that say where in the text they are.
#ifndef GPT2_CORE_JSON_READER_H_
#define GPT2_CORE_JSON_READER_H_

#include <functional>
#include <istream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gpt2 {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;

  // The member named `key` of an object; null if absent or not an object.
  const JsonValue* Find(std::string_view key) const;
  // The same as a value: a null value where there is no such member.
  const JsonValue& operator[](std::string_view key) const;
  // A number that is a whole value in [min, max].
  bool IsInteger(double min, double max) const;
};

// The whole text must be one JSON value (whitespace around it is allowed); an
// object may not name a key twice.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

// JSON lines: calls visit(value, where) for each non-blank line of `in` in
// order (where: "path:LINE"); a line that is not JSON is an error naming it.
absl::Status ForEachJsonLine(
    std::istream& in, const std::string& path,
    const std::function<absl::Status(const JsonValue& value,
                                     const std::string& where)>& visit);

}  // namespace gpt2

#endif  // GPT2_CORE_JSON_READER_H_
