// How ZeRO-1 splits the flat parameter buffer over ranks. The buffer is padded
// up to world_size equal shards, so any world size works (the padding is zeros
// that no parameter owns); rank r owns [r * shard_size, (r + 1) * shard_size).
#ifndef GPT2_OPTIM_SHARD_LAYOUT_H_
#define GPT2_OPTIM_SHARD_LAYOUT_H_

#include <algorithm>
#include <cstdint>

namespace gpt2 {

struct ShardLayout {
  int64_t total = 0;       // real parameters
  int64_t shard_size = 0;  // elements per rank, padding included
  int rank = 0;
  int world_size = 1;

  // Shards are rounded to kAlign elements so every shard starts 64-byte
  // aligned.
  static constexpr int64_t kAlign = 32;

  static ShardLayout Make(int64_t total, int rank, int world_size) {
    ShardLayout s;
    s.total = total;
    s.rank = rank;
    s.world_size = world_size;
    const int64_t per_rank = (total + world_size - 1) / world_size;
    s.shard_size = (per_rank + kAlign - 1) / kAlign * kAlign;
    return s;
  }
  // The whole buffer as one shard: plain all-reduce training.
  static ShardLayout Whole(int64_t total) {
    ShardLayout s;
    s.total = total;
    s.shard_size = total;
    return s;
  }

  int64_t padded_total() const { return shard_size * world_size; }
  int64_t begin() const { return std::min(total, shard_size * rank); }
  // End of this rank's real parameters (the rest of its shard is padding).
  int64_t end() const { return std::min(total, shard_size * (rank + 1)); }
};

}  // namespace gpt2

#endif  // GPT2_OPTIM_SHARD_LAYOUT_H_
