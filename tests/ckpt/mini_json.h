// A small JSON reader for the tests that check what gpt2_ckpt writes
// (safetensors headers, config.json): objects, arrays, strings, numbers,
// true/false/null. Strict enough to reject malformed output.
#ifndef GPT2_TESTS_CKPT_MINI_JSON_H_
#define GPT2_TESTS_CKPT_MINI_JSON_H_

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gpt2::testing {

struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;
  std::vector<std::string> keys;  // object keys in order

  const Json& operator[](const std::string& key) const {
    static const Json missing;
    const auto it = object.find(key);
    return it == object.end() ? missing : it->second;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  // False (with error()) on malformed input or trailing garbage.
  bool Parse(Json* out) {
    if (!Value(out)) return false;
    Space();
    if (pos_ != s_.size()) return Fail("trailing characters");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool Fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at " + std::to_string(pos_);
    return false;
  }
  void Space() {
    while (pos_ < s_.size() &&
           std::isspace(static_cast<unsigned char>(s_[pos_])))
      ++pos_;
  }
  bool Literal(const char* word) {
    const std::string w(word);
    if (s_.compare(pos_, w.size(), w) != 0) return Fail("bad literal");
    pos_ += w.size();
    return true;
  }
  bool String(std::string* out) {
    if (s_[pos_] != '"') return Fail("expected string");
    ++pos_;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) return Fail("bad escape");
        const char e = s_[pos_++];
        switch (e) {
          case 'n':
            c = '\n';
            break;
          case 't':
            c = '\t';
            break;
          case 'r':
            c = '\r';
            break;
          case 'b':
            c = '\b';
            break;
          case 'f':
            c = '\f';
            break;
          case 'u': {
            if (pos_ + 4 > s_.size()) return Fail("bad \\u");
            const long code =
                std::strtol(s_.substr(pos_, 4).c_str(), nullptr, 16);
            pos_ += 4;
            if (code < 0x80) {
              c = static_cast<char>(code);
            } else {
              *out += '?';  // enough for these tests
              continue;
            }
            break;
          }
          default:
            c = e;
        }
      }
      *out += c;
    }
    if (pos_ >= s_.size()) return Fail("unterminated string");
    ++pos_;
    return true;
  }
  bool Value(Json* out) {
    Space();
    if (pos_ >= s_.size()) return Fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') {
      out->type = Json::kObject;
      ++pos_;
      Space();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      while (true) {
        Space();
        std::string key;
        if (pos_ >= s_.size() || !String(&key)) return Fail("expected key");
        Space();
        if (pos_ >= s_.size() || s_[pos_++] != ':') return Fail("expected :");
        Json value;
        if (!Value(&value)) return false;
        if (out->object.count(key)) return Fail("duplicate key " + key);
        out->keys.push_back(key);
        out->object[key] = std::move(value);
        Space();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == '}') {
          ++pos_;
          return true;
        }
        return Fail("expected , or }");
      }
    }
    if (c == '[') {
      out->type = Json::kArray;
      ++pos_;
      Space();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      while (true) {
        Json value;
        if (!Value(&value)) return false;
        out->array.push_back(std::move(value));
        Space();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          return true;
        }
        return Fail("expected , or ]");
      }
    }
    if (c == '"') {
      out->type = Json::kString;
      return String(&out->string);
    }
    if (c == 't') {
      out->type = Json::kBool;
      out->boolean = true;
      return Literal("true");
    }
    if (c == 'f') {
      out->type = Json::kBool;
      return Literal("false");
    }
    if (c == 'n') {
      out->type = Json::kNull;
      return Literal("null");
    }
    char* end = nullptr;
    out->type = Json::kNumber;
    out->number = std::strtod(s_.c_str() + pos_, &end);
    if (end == s_.c_str() + pos_) return Fail("bad value");
    pos_ = static_cast<size_t>(end - s_.c_str());
    return true;
  }

  const std::string s_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace gpt2::testing

#endif  // GPT2_TESTS_CKPT_MINI_JSON_H_
