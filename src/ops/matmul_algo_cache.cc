#include "src/ops/matmul_algo_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "src/core/error.h"

namespace gpt2 {
namespace {

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (const unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The bytes of an even-length lowercase hex string; nullopt otherwise.
std::optional<std::string> Unhex(const std::string& text) {
  if (text.empty() || text.size() % 2 != 0) return std::nullopt;
  std::string out(text.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexDigit(text[2 * i]), lo = HexDigit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string KeyText(const std::vector<int64_t>& key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(key[i]);
  }
  return out;
}

// The integers of "a,b,c"; nullopt for anything else.
std::optional<std::vector<int64_t>> ParseKey(const std::string& text) {
  std::vector<int64_t> key;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string field = text.substr(at, comma - at);
    if (field.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(field.c_str(), &end, 10);
    if (errno != 0 || *end != '\0') return std::nullopt;
    key.push_back(value);
    at = comma + 1;
  }
  return key;
}

}  // namespace

MatmulAlgoCache::MatmulAlgoCache(std::string path, std::string context)
    : path_(std::move(path)), context_(std::move(context)) {
  // A tab or newline in the context would break the lines' fields.
  for (char& c : context_) {
    if (c == '\t' || c == '\n') c = ' ';
  }
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab1 = line.find('\t');
    const size_t tab2 =
        tab1 == std::string::npos ? tab1 : line.find('\t', tab1 + 1);
    if (tab2 == std::string::npos || line.substr(0, tab1) != context_) {
      ++skipped_;
      continue;
    }
    const auto key = ParseKey(line.substr(tab1 + 1, tab2 - tab1 - 1));
    const auto algo = Unhex(line.substr(tab2 + 1));
    if (!key || !algo) {
      ++skipped_;
      continue;
    }
    choices_[*key] = *algo;
    ++loaded_;
  }
}

std::optional<std::string> MatmulAlgoCache::Find(
    const std::vector<int64_t>& key) const {
  const auto it = choices_.find(key);
  if (it == choices_.end()) return std::nullopt;
  return it->second;
}

bool MatmulAlgoCache::Add(const std::vector<int64_t>& key,
                          const std::string& algo) {
  choices_[key] = algo;
  const std::string line =
      context_ + "\t" + KeyText(key) + "\t" + Hex(algo) + "\n";
  // One write with O_APPEND: ranks appending at once do not interleave.
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  bool ok = fd >= 0;
  if (ok) {
    ok = ::write(fd, line.data(), line.size()) ==
         static_cast<ssize_t>(line.size());
    ok = ::close(fd) == 0 && ok;
  }
  if (!ok && !warned_) {
    warned_ = true;
    Warning(absl::StrCat("cannot write the matmul algorithm cache ", path_,
                         " (", std::strerror(errno),
                         "); this run's choices are not kept"));
  }
  return ok;
}

}  // namespace gpt2
