// GPT-2 byte-level BPE: file loading (encoder.json, vocab.bpe), the
// pre-tokenizer scanner that stands in for GPT-2's regex, and the merge loop.
// Semantics follow tiktoken's "gpt2" encoding, which is the reference.
#include "src/data/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/core/files.h"
#include "src/core/json_reader.h"
#include "src/data/unicode_tables.h"

namespace gpt2 {
namespace {

// Debian's abseil is built with its own string_view type (not std's), so
// views are converted at the boundary to abseil's hash maps and StrCat.
inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// ---------------------------------------------------------------------------
// UTF-8

// One character of the input: its class and its length in bytes.
struct Char {
  CharClass cls;
  int len;
};

// Decodes the character at s[i] (i < n). A byte that does not start a
// well-formed UTF-8 sequence (per the Unicode standard's table 3-7: no
// overlongs, surrogates or values past U+10FFFF) is one kOther character of
// length 1, so that any byte string pre-tokenizes and round-trips.
inline Char DecodeAt(const unsigned char* s, size_t n, size_t i) {
  const unsigned char b0 = s[i];
  if (b0 < 0x80) return {ClassifyCodepoint(b0), 1};
  auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i + k < n && s[i + k] >= lo && s[i + k] <= hi;
  };
  char32_t cp;
  int len;
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    cp = ((b0 & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF &&
             cont(1, b0 == 0xE0 ? 0xA0 : 0x80, b0 == 0xED ? 0x9F : 0xBF) &&
             cont(2)) {
    cp = ((b0 & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
    len = 3;
  } else if (b0 >= 0xF0 && b0 <= 0xF4 &&
             cont(1, b0 == 0xF0 ? 0x90 : 0x80, b0 == 0xF4 ? 0x8F : 0xBF) &&
             cont(2) && cont(3)) {
    cp = ((b0 & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
         ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
    len = 4;
  } else {
    return {CharClass::kOther, 1};
  }
  return {ClassifyCodepoint(cp), len};
}

// ---------------------------------------------------------------------------
// Pre-tokenizer

// Calls emit(piece) for each match of GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order. The alternatives are tried left to right at each position, as in
// tiktoken's backtracking engine; every character belongs to exactly one of
// letter / number / whitespace / other, so the matches tile the text.
template <typename Emit>
void ForEachPiece(std::string_view text, Emit&& emit) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    // Contractions: ASCII apostrophe and lowercase only, as in the pattern.
    if (s[i] == '\'' && i + 1 < n) {
      const unsigned char c = s[i + 1];
      size_t len = 0;
      if (c == 's' || c == 't' || c == 'm' || c == 'd') {
        len = 2;
      } else if (i + 2 < n && ((c == 'r' && s[i + 2] == 'e') ||
                               (c == 'v' && s[i + 2] == 'e') ||
                               (c == 'l' && s[i + 2] == 'l'))) {
        len = 3;
      }
      if (len != 0) {
        emit(text.substr(start, len));
        i += len;
        continue;
      }
    }
    // " ?X+" for X in letter, number, other: one ASCII space may lead a run of
    // a single class. Only U+0020 qualifies; any other whitespace before a
    // word is left to the whitespace rules.
    CharClass run_class = DecodeAt(s, n, i).cls;
    size_t j = i;
    if (s[i] == ' ' && i + 1 < n) {
      const CharClass next = DecodeAt(s, n, i + 1).cls;
      if (next != CharClass::kWhitespace) {
        run_class = next;
        j = i + 1;
      }
    }
    if (run_class != CharClass::kWhitespace) {
      while (j < n) {
        const Char c = DecodeAt(s, n, j);
        if (c.cls != run_class) break;
        j += c.len;
      }
      emit(text.substr(start, j - start));
      i = j;
      continue;
    }
    // Whitespace run. "\s+(?!\S)" backtracks from the longest run until the
    // next character is not a non-space: at the end of the text that is the
    // whole run; before a non-space it is the run minus its last character,
    // which is then free to lead the next word (" ?\p{L}+"). A run of one
    // before a non-space fails that rule and "\s+" takes it alone.
    size_t last_start = i;
    int count = 0;
    while (j < n) {
      const Char c = DecodeAt(s, n, j);
      if (c.cls != CharClass::kWhitespace) break;
      last_start = j;
      j += c.len;
      ++count;
    }
    if (j < n && count >= 2) j = last_start;
    emit(text.substr(start, j - start));
    i = j;
  }
}

// ---------------------------------------------------------------------------
// Byte pair merging

constexpr int kNoRank = INT_MAX;

// Pieces longer than this use the heap; the linear rescan is quadratic in the
// worst case but faster on the short pieces of ordinary text.
constexpr size_t kHeapThreshold = 64;

std::vector<size_t> MergePartsLinear(
    std::string_view piece, absl::FunctionRef<int(std::string_view)> rank) {
  const size_t n = piece.size();
  // starts[k] is where part k begins; starts.back() == n. pair_rank[k] ranks
  // the concatenation of parts k and k+1.
  std::vector<size_t> starts(n + 1);
  for (size_t k = 0; k <= n; ++k) starts[k] = k;
  auto rank_of = [&](size_t k) {
    // Parts k and k+1 together, or no rank when part k is the last.
    if (k + 2 >= starts.size()) return kNoRank;
    const int r = rank(piece.substr(starts[k], starts[k + 2] - starts[k]));
    return r < 0 ? kNoRank : r;
  };
  std::vector<int> pair_rank(n > 0 ? n - 1 : 0);
  for (size_t k = 0; k < pair_rank.size(); ++k) pair_rank[k] = rank_of(k);
  while (!pair_rank.empty()) {
    // Strict < keeps the leftmost of equal ranks, as tiktoken does.
    size_t best = 0;
    for (size_t k = 1; k < pair_rank.size(); ++k) {
      if (pair_rank[k] < pair_rank[best]) best = k;
    }
    if (pair_rank[best] == kNoRank) break;
    starts.erase(starts.begin() + best + 1);
    pair_rank.erase(pair_rank.begin() + best);
    if (best < pair_rank.size()) pair_rank[best] = rank_of(best);
    if (best > 0) pair_rank[best - 1] = rank_of(best - 1);
  }
  return starts;
}

std::vector<size_t> MergePartsHeap(
    std::string_view piece, absl::FunctionRef<int(std::string_view)> rank) {
  const size_t n = piece.size();
  // Parts form a doubly linked list keyed by start offset; next_start[s] ==
  // SIZE_MAX marks an offset that is no longer a part start.
  constexpr size_t kDead = SIZE_MAX;
  std::vector<size_t> next_start(n + 1), prev_start(n + 1);
  for (size_t k = 0; k <= n; ++k) {
    next_start[k] = k + 1;
    prev_start[k] = k == 0 ? kDead : k - 1;
  }
  // (rank, left start, middle, end): the pair [left, middle) + [middle, end).
  // Ordering by (rank, left) gives the same choice as the linear scan: the
  // lowest rank, and among equals the leftmost, since parts never reorder.
  using Candidate = std::tuple<int, size_t, size_t, size_t>;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](size_t left) {
    if (left == kDead || left >= n) return;
    const size_t middle = next_start[left];
    if (middle >= n) return;
    const size_t end = next_start[middle];
    const int r = rank(piece.substr(left, end - left));
    if (r >= 0) heap.emplace(r, left, middle, end);
  };
  for (size_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const auto [r, left, middle, end] = heap.top();
    heap.pop();
    // Stale unless both parts are still exactly as when this was pushed.
    if (next_start[left] != middle || next_start[middle] != end) continue;
    next_start[left] = end;
    prev_start[end] = left;
    next_start[middle] = kDead;
    push(prev_start[left]);
    push(left);
  }
  std::vector<size_t> starts;
  for (size_t s = 0; s < n; s = next_start[s]) starts.push_back(s);
  starts.push_back(n);
  return starts;
}

// ---------------------------------------------------------------------------
// Loading

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  GPT2_RETURN_IF_ERROR(NotAFolder(path, "one of GPT-2's BPE files"));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return contents.str();
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// other 68 bytes take code points 256, 257, ... in byte order. Vocabulary
// files spell raw bytes this way so that every token is printable text.
// Returns code point -> byte (or -1) for code points below 324.
std::vector<int> UnicodeToByteTable() {
  std::vector<int> table(324, -1);
  int next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                           (b >= 0xAE && b <= 0xFF);
    table[printable ? b : next_extra++] = b;
  }
  return table;
}

// Maps a vocabulary string (UTF-8, in bytes_to_unicode's alphabet) back to the
// raw bytes it stands for. Returns false on a character outside the alphabet.
bool VocabStringToBytes(std::string_view text, const std::vector<int>& table,
                        std::string* bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  bytes->clear();
  for (size_t i = 0; i < text.size();) {
    const unsigned char b0 = s[i];
    char32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if (b0 >= 0xC2 && b0 <= 0xDF && i + 1 < text.size() &&
               (s[i + 1] & 0xC0) == 0x80) {
      cp = ((b0 & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
      i += 2;
    } else {
      return false;  // Every character of the alphabet is below U+0800.
    }
    if (cp >= table.size() || table[cp] < 0) return false;
    *bytes += static_cast<char>(table[cp]);
  }
  return true;
}

}  // namespace

namespace tokenizer_internal {

std::vector<std::string_view> PreTokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  ForEachPiece(text, [&](std::string_view piece) { pieces.push_back(piece); });
  return pieces;
}

std::vector<size_t> MergeParts(std::string_view piece,
                               absl::FunctionRef<int(std::string_view)> rank,
                               bool use_heap) {
  return use_heap ? MergePartsHeap(piece, rank) : MergePartsLinear(piece, rank);
}

}  // namespace tokenizer_internal

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& encoder_json_path,
                                          const std::string& vocab_bpe_path) {
  GPT2_ASSIGN_OR_RETURN(const std::string json, ReadFile(encoder_json_path));
  // One flat object of token string -> id.
  absl::StatusOr<JsonValue> parsed = ParseJson(json);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_json_path, ": ", parsed.status().message()));
  }
  if (parsed->kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_json_path, ": expected one JSON object"));
  }
  std::vector<std::pair<std::string, int64_t>> entries;
  entries.reserve(parsed->object.size());
  for (auto& [key, value] : parsed->object) {
    if (!value.IsInteger(0, 1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(encoder_json_path, ": token \"", key,
                       "\" has no non-negative whole-number id"));
    }
    entries.emplace_back(std::move(key), static_cast<int64_t>(value.number));
  }

  const std::vector<int> unicode_to_byte = UnicodeToByteTable();
  auto encoder_error = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(encoder_json_path, ": ", what));
  };
  // Ids must be exactly 0..kEndOfText, with the special token last: the class
  // hard-codes kEndOfText, and the model's embedding table is indexed by id.
  if (entries.size() != static_cast<size_t>(kEndOfText) + 1) {
    return encoder_error(absl::StrCat("expected ", kEndOfText + 1,
                                      " tokens, found ", entries.size()));
  }
  Tokenizer tok;
  tok.id_to_bytes_.resize(entries.size());
  std::vector<bool> seen(entries.size(), false);
  tok.bytes_to_id_.reserve(entries.size());
  std::string bytes;
  for (const auto& [key, id] : entries) {
    if (id >= static_cast<int64_t>(entries.size())) {
      return encoder_error(absl::StrCat("token \"", key, "\" has id ", id,
                                        ", past the last id ", kEndOfText));
    }
    if (seen[id]) {
      return encoder_error(absl::StrCat("id ", id, " is used twice"));
    }
    seen[id] = true;
    if (id == kEndOfText) {
      if (key != kEndOfTextString) {
        return encoder_error(absl::StrCat("id ", kEndOfText, " is \"", key,
                                          "\", expected \"",
                                          AsAbsl(kEndOfTextString), "\""));
      }
      tok.id_to_bytes_[id] = std::string(kEndOfTextString);
      continue;
    }
    if (!VocabStringToBytes(key, unicode_to_byte, &bytes) || bytes.empty()) {
      return encoder_error(
          absl::StrCat("token \"", key, "\" (id ", id,
                       ") is not in GPT-2's bytes_to_unicode alphabet"));
    }
    if (!tok.bytes_to_id_.emplace(bytes, static_cast<int>(id)).second) {
      return encoder_error(
          absl::StrCat("token \"", key, "\" (id ", id, ") is a duplicate"));
    }
    tok.id_to_bytes_[id] = bytes;
  }
  for (int b = 0; b < 256; ++b) {
    const int id = tok.LookupId(std::string(1, static_cast<char>(b)));
    if (id < 0 || id >= 256) {
      return encoder_error(absl::StrCat(
          "the single byte ", b, " must be a token with an id below 256"));
    }
    tok.byte_to_id_[b] = id;
  }

  // vocab.bpe: tiktoken ranks a merge by the id of the token it makes, which
  // is only right if merge i makes token 256 + i. Checking that here means
  // the encoder table alone can drive the merges.
  GPT2_ASSIGN_OR_RETURN(const std::string bpe, ReadFile(vocab_bpe_path));
  auto bpe_error = [&](size_t line_number, const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(vocab_bpe_path, ": line ", line_number, ": ", what));
  };
  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin < bpe.size();) {
    size_t end = bpe.find('\n', begin);
    if (end == std::string::npos) end = bpe.size();
    std::string_view line(bpe.data() + begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    begin = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty() || lines[0].substr(0, 8) != "#version") {
    return bpe_error(1, "expected a first line starting with \"#version\"");
  }
  // Every token but the 256 bytes and kEndOfText comes from one merge.
  const size_t expected_merges = entries.size() - 257;
  auto count_error = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        vocab_bpe_path, ": has ", lines.size() - 1, " merges, but ",
        encoder_json_path, " has ", expected_merges, " merged tokens"));
  };
  if (lines.size() - 1 > expected_merges) return count_error();
  std::string left, right;
  for (size_t k = 1; k < lines.size(); ++k) {
    const std::string_view line = lines[k];
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 ||
        space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      return bpe_error(
          k + 1, absl::StrCat("expected \"a b\", got \"", AsAbsl(line), "\""));
    }
    if (!VocabStringToBytes(line.substr(0, space), unicode_to_byte, &left) ||
        !VocabStringToBytes(line.substr(space + 1), unicode_to_byte, &right)) {
      return bpe_error(k + 1, absl::StrCat("\"", AsAbsl(line),
                                           "\" is not in GPT-2's "
                                           "bytes_to_unicode alphabet"));
    }
    const int expected_id = static_cast<int>(255 + k);
    if (tok.LookupId(left) < 0 || tok.LookupId(right) < 0 ||
        tok.LookupId(left + right) != expected_id) {
      return bpe_error(
          k + 1,
          absl::StrCat("merge \"", AsAbsl(line), "\" should make token id ",
                       expected_id, " from two tokens in ", encoder_json_path,
                       ", but it does not"));
    }
  }
  if (lines.size() - 1 != expected_merges) return count_error();
  return tok;
}

absl::StatusOr<Tokenizer> Tokenizer::LoadFromDataDir(
    const std::string& data_dir) {
  absl::StatusOr<Tokenizer> tokenizer =
      Load(data_dir + "/gpt2/encoder.json", data_dir + "/gpt2/vocab.bpe");
  if (absl::IsNotFound(tokenizer.status())) {
    return absl::NotFoundError(absl::StrCat(
        tokenizer.status().message(), " (data directory '", data_dir,
        "'; set --data_dir or GPT2_DATA_DIR, or run launch/fetch_data.sh)"));
  }
  return tokenizer;
}

int Tokenizer::LookupId(std::string_view bytes) const {
  const auto it = bytes_to_id_.find(AsAbsl(bytes));
  return it == bytes_to_id_.end() ? -1 : it->second;
}

void Tokenizer::EncodePiece(std::string_view piece,
                            std::vector<int>* out) const {
  const std::vector<size_t> starts = tokenizer_internal::MergeParts(
      piece, [this](std::string_view bytes) { return LookupId(bytes); },
      piece.size() > kHeapThreshold);
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    const int id = LookupId(piece.substr(starts[k], starts[k + 1] - starts[k]));
    GPT2_CHECK(id >= 0);  // Parts are single bytes or merged tokens.
    out->push_back(id);
  }
}

std::vector<int> Tokenizer::Encode(std::string_view text) const {
  std::vector<int> ids;
  ids.reserve(text.size() / 4 + 16);
  // Per-call cache of pieces that needed merging: the views point into
  // `text`, so the cache cannot outlive the call, and Encode stays const and
  // thread-safe. Value: [begin, end) in cached_ids.
  absl::flat_hash_map<absl::string_view, std::pair<size_t, size_t>> cache;
  std::vector<int> cached_ids;
  ForEachPiece(text, [&](std::string_view piece) {
    if (piece.size() == 1) {
      ids.push_back(byte_to_id_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    // tiktoken's shortcut: a piece that is itself a token is that token.
    const int whole = LookupId(piece);
    if (whole >= 0) {
      ids.push_back(whole);
      return;
    }
    auto [it, inserted] = cache.try_emplace(AsAbsl(piece));
    if (inserted) {
      const size_t begin = cached_ids.size();
      EncodePiece(piece, &cached_ids);
      it->second = {begin, cached_ids.size()};
    }
    ids.insert(ids.end(), cached_ids.begin() + it->second.first,
               cached_ids.begin() + it->second.second);
  });
  return ids;
}

std::vector<int> Tokenizer::EncodeWithSpecial(std::string_view text) const {
  std::vector<int> ids;
  while (true) {
    const size_t found = text.find(kEndOfTextString);
    const std::vector<int> part = Encode(text.substr(0, found));
    ids.insert(ids.end(), part.begin(), part.end());
    if (found == std::string_view::npos) return ids;
    ids.push_back(kEndOfText);
    text.remove_prefix(found + kEndOfTextString.size());
  }
}

std::string Tokenizer::DecodeToken(int id) const {
  GPT2_CHECK_MSG(id >= 0 && id < vocab_size(), "token id ", id,
                 " out of range [0, ", vocab_size(), ")");
  return id_to_bytes_[id];
}

std::string Tokenizer::Decode(const std::vector<int>& ids) const {
  std::string text;
  for (const int id : ids) {
    GPT2_CHECK_MSG(id >= 0 && id < vocab_size(), "token id ", id,
                   " out of range [0, ", vocab_size(), ")");
    text += id_to_bytes_[id];
  }
  return text;
}

absl::StatusOr<std::string> Tokenizer::DecodeChecked(
    const std::vector<int>& ids) const {
  std::string text;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (ids[k] < 0 || ids[k] >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", ids[k], " at position ", k,
                       " is out of range [0, ", vocab_size(), ")"));
    }
    text += id_to_bytes_[ids[k]];
  }
  return text;
}

}  // namespace gpt2
