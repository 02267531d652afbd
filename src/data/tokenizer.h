// GPT-2's byte-level BPE tokenizer, matching tiktoken's "gpt2" encoding id for
// id. Loads the original encoder.json + vocab.bpe; pre-tokenizes with a
// hand-written scanner equivalent to GPT-2's regex, then merges bytes by rank.
#ifndef GPT2_DATA_TOKENIZER_H_
#define GPT2_DATA_TOKENIZER_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace gpt2 {

// Thread-safety: a loaded Tokenizer is immutable, so all const methods may be
// called concurrently. Encode keeps its piece -> ids cache local to one call.
class Tokenizer {
 public:
  static constexpr int kEndOfText = 50256;
  static constexpr std::string_view kEndOfTextString = "<|endoftext|>";

  // Reads GPT-2's encoder.json (token string -> id, with the tokens' bytes
  // written through GPT-2's bytes_to_unicode mapping) and vocab.bpe (a
  // "#version" line, then one "a b" merge per line, in rank order). Fails with
  // a status naming the file (and line or byte offset) on missing or malformed
  // input, or when the two files disagree.
  static absl::StatusOr<Tokenizer> Load(const std::string& encoder_json_path,
                                        const std::string& vocab_bpe_path);
  // Load(data_dir + "/gpt2/encoder.json", data_dir + "/gpt2/vocab.bpe").
  static absl::StatusOr<Tokenizer> LoadFromDataDir(const std::string& data_dir);

  // Like tiktoken's encode_ordinary: "<|endoftext|>" in `text` is encoded as
  // ordinary text. `text` may be any bytes; invalid UTF-8 bytes are kept (each
  // is pre-tokenized like a punctuation character), so Decode(Encode(b)) == b.
  std::vector<int> Encode(std::string_view text) const;
  // Like tiktoken's encode(text, allowed_special="all"): each literal
  // "<|endoftext|>" becomes kEndOfText, the text between is Encode()d.
  std::vector<int> EncodeWithSpecial(std::string_view text) const;

  // Concatenates the tokens' raw bytes (which need not be valid UTF-8 when a
  // character is split across tokens). kEndOfText decodes to "<|endoftext|>".
  // An id outside [0, vocab_size()) is a programming error: the process ends
  // through GPT2_CHECK. Use DecodeChecked for ids from untrusted sources (for
  // example a model whose output layer is padded past vocab_size()).
  std::string Decode(const std::vector<int>& ids) const;
  // Like Decode, but an out-of-range id gives InvalidArgument naming it.
  absl::StatusOr<std::string> DecodeChecked(const std::vector<int>& ids) const;
  // The raw bytes of one token; GPT2_CHECKs that the id is in range.
  std::string DecodeToken(int id) const;

  int vocab_size() const { return static_cast<int>(id_to_bytes_.size()); }

 private:
  Tokenizer() = default;

  // Appends the ids of one pre-token (a regex match) to `out`.
  void EncodePiece(std::string_view piece, std::vector<int>* out) const;
  // Id of a token given its raw bytes, or -1. The special token is not
  // included: it is never produced by merging.
  int LookupId(std::string_view bytes) const;

  // Raw bytes of each token, indexed by id.
  std::vector<std::string> id_to_bytes_;
  // Raw bytes -> id for all tokens but kEndOfText. For GPT-2 a token's id is
  // also its merge rank (bytes first, then merge i has id 256 + i; Load checks
  // this), so the same table ranks candidate merges, as in tiktoken.
  absl::flat_hash_map<std::string, int> bytes_to_id_;
  // Id of each single byte, so the BPE's starting point needs no hashing.
  int byte_to_id_[256] = {};
};

namespace tokenizer_internal {

// Splits `text` the way GPT-2's pre-tokenizer regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does under tiktoken (leftmost-first alternation). The pieces are views into
// `text` and concatenate back to it exactly.
std::vector<std::string_view> PreTokenize(std::string_view text);

// Byte pair merging as tiktoken does it: repeatedly merge the adjacent pair of
// parts whose concatenation has the lowest rank, the leftmost on ties, until
// no concatenation is a token. `rank` gives a byte string's rank, or -1 when it
// is not a token. Returns the start offsets of the final parts followed by
// piece.size(). Two equivalent strategies: a linear rescan per merge (fast for
// the short pieces of real text) and a heap (O(n log n), for long runs such as
// a megabyte of one letter). Exposed so tests can check that they agree;
// Encode picks by length.
std::vector<size_t> MergeParts(std::string_view piece,
                               absl::FunctionRef<int(std::string_view)> rank,
                               bool use_heap);

}  // namespace tokenizer_internal

}  // namespace gpt2

#endif  // GPT2_DATA_TOKENIZER_H_
