// src/data/token_shard: TokenShard::Open on any bytes (llm.c's shard format:
// a 256-int header, magic 20240520, version 1, the token count, then uint16
// tokens). A shard that opens holds exactly the header's count of tokens,
// every one below the vocabulary size.
#include <cstddef>
#include <cstdint>

#include "src/data/token_shard.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt2::fuzz::MemFile file(data, size);
  constexpr int kVocab = 50257;
  absl::StatusOr<gpt2::TokenShard> shard =
      gpt2::TokenShard::Open(file.path(), kVocab);
  if (!shard.ok()) {
    GPT2_FUZZ_CHECK(!shard.status().message().empty());
    return 0;
  }
  GPT2_FUZZ_CHECK(size >= 1024);
  GPT2_FUZZ_CHECK(shard->size() * 2 + 1024 == size);
  for (uint16_t token : shard->tokens()) GPT2_FUZZ_CHECK(token < kVocab);
  return 0;
}
