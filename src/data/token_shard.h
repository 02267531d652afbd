// Token shards in llm.c's format, so its FineWeb shards work here too: a header
// of 256 int32 (magic 20240520, version 1, token count), then the tokens as
// uint16. Shards are memory-mapped read-only; in-memory token arrays use the
// same type.
#ifndef GPT2_DATA_TOKEN_SHARD_H_
#define GPT2_DATA_TOKEN_SHARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace gpt2 {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int kShardHeaderInts = 256;

class TokenShard {
 public:
  // Maps `path` and checks the header, the file size and that every token is <
  // vocab_size.
  static absl::StatusOr<TokenShard> Open(const std::string& path,
                                         int vocab_size);
  // Wraps tokens already in memory (e.g. text tokenized at start-up).
  static TokenShard FromTokens(std::vector<uint16_t> tokens, std::string name);

  TokenShard(TokenShard&&) noexcept;
  TokenShard& operator=(TokenShard&&) noexcept;
  ~TokenShard();

  absl::Span<const uint16_t> tokens() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  TokenShard() = default;
  std::string name_;
  const uint16_t* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;  // mmap base, or null for in-memory tokens
  size_t map_bytes_ = 0;
  std::vector<uint16_t> owned_;
};

// Writes tokens as one shard file, atomically (temporary name, then rename).
absl::Status WriteTokenShard(const std::string& path,
                             absl::Span<const uint16_t> tokens);

// Files matching a glob pattern, sorted; an error naming the pattern if none
// match.
absl::StatusOr<std::vector<std::string>> ExpandShardPattern(
    const std::string& pattern);

}  // namespace gpt2

#endif  // GPT2_DATA_TOKEN_SHARD_H_
