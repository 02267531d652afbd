// The JSON reader behind the Hugging Face import: values, escapes, key order,
// and errors that say where.
#include "src/core/json_reader.h"

#include <iterator>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gpt2 {
namespace {

using ::testing::HasSubstr;

TEST(JsonReader, ReadsValuesInOrder) {
  const absl::StatusOr<JsonValue> v = ParseJson(
      R"( {"b": [1, -2.5, 3e2, true, false, null], "a": {"x": "y"},
           "s": "q\"\\\/\n\t\u00e9\ud83d\ude00", "big": 6442450944} )");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->kind, JsonValue::Kind::kObject);
  ASSERT_EQ(v->object.size(), 4u);
  EXPECT_EQ(v->object[0].first, "b");  // file order, not sorted
  EXPECT_EQ(v->object[1].first, "a");
  const JsonValue& b = (*v)["b"];
  ASSERT_EQ(b.array.size(), 6u);
  EXPECT_EQ(b.array[0].number, 1.0);
  EXPECT_EQ(b.array[1].number, -2.5);
  EXPECT_EQ(b.array[2].number, 300.0);
  EXPECT_TRUE(b.array[3].boolean);
  EXPECT_EQ(b.array[4].kind, JsonValue::Kind::kBool);
  EXPECT_FALSE(b.array[4].boolean);
  EXPECT_EQ(b.array[5].kind, JsonValue::Kind::kNull);
  EXPECT_EQ((*v)["a"]["x"].string, "y");
  EXPECT_EQ((*v)["s"].string, "q\"\\/\n\t\xC3\xA9\xF0\x9F\x98\x80");
  // Integers past 32 bits stay exact (safetensors offsets of big models).
  EXPECT_TRUE((*v)["big"].IsInteger(0, 1e12));
  EXPECT_EQ((*v)["big"].number, 6442450944.0);
  EXPECT_FALSE(b.array[1].IsInteger(-10, 10));
  // Missing members read as null; Find says they are missing.
  EXPECT_EQ((*v)["nope"]["deeper"].kind, JsonValue::Kind::kNull);
  EXPECT_EQ(v->Find("nope"), nullptr);
  EXPECT_TRUE(ParseJson("[]")->array.empty());
  // The number grammar's corners that are JSON.
  const absl::StatusOr<JsonValue> numbers =
      ParseJson("[0, -0, 0.5, -1.25e-3, 1E+2, 2e2, 10, 1e-400]");
  ASSERT_TRUE(numbers.ok()) << numbers.status();
  const double want[] = {0, -0.0, 0.5, -1.25e-3, 100, 200, 10, 0};
  ASSERT_EQ(numbers->array.size(), std::size(want));
  for (size_t k = 0; k < std::size(want); ++k) {
    EXPECT_EQ(numbers->array[k].number, want[k]) << k;
  }
  EXPECT_TRUE(ParseJson("{}")->object.empty());
}

TEST(JsonReader, ErrorsSayWhatAndWhere) {
  const struct {
    const char* text;
    const char* why;
  } cases[] = {
      {R"({"a": 1} x)", "line 1, column 10 (byte offset 9): text after"},
      {"{\"a\":\n  x}", "line 2, column 3 (byte offset 8): expected a value"},
      {R"({"a": 1, "a": 2})", "duplicate key"},
      {R"({"a": "open)", "unterminated string"},
      {R"(["\ud83d"])", "lone surrogate"},
      {R"(["\q"])", "bad escape"},
      {R"([1 2])", "expected ',' or ']'"},
      {R"({"a" 1})", "expected ':'"},
      {R"({1: 2})", "expected a key"},
      {R"([tru])", "unknown word"},
      {R"([-])", "expected a value"},
      {R"([1e999])", "bad number (out of range)"},
      // RFC 8259's number grammar (strtod took these; found by fuzz_json
      // against nlohmann's parser).
      {R"([1.])", "no digit after '.'"},
      {R"([01])", "a leading zero"},
      {R"([-01.5])", "a leading zero"},
      {R"([1e])", "no digit in the exponent"},
      {R"([2E+])", "no digit in the exponent"},
      {R"([.5])", "expected a value"},
      {R"([+1])", "expected a value"},
      {R"([-.5])", "expected a value"},
      {R"([0x10])", "expected ',' or ']'"},
      {"[\"a\x01\"]", "control character"},
      {"", "unexpected end"},
  };
  for (const auto& c : cases) {
    const absl::StatusOr<JsonValue> v = ParseJson(c.text);
    ASSERT_FALSE(v.ok()) << c.text;
    EXPECT_THAT(v.status().message(), HasSubstr(c.why)) << c.text;
    EXPECT_THAT(v.status().message(), HasSubstr("malformed JSON at line"))
        << c.text;
  }
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_THAT(ParseJson(deep).status().message(), HasSubstr("too deeply"));
}

}  // namespace
}  // namespace gpt2
