// Serves (B, T+1) token windows in order, as the original PyTorch run does:
// within a shard, each optimizer step reads one contiguous window of accum *
// world * B * T (+1) tokens, and rank r's micro-step m takes rows [(m * world +
// r) * B, ... + B) of it. So any (world, accum, B) with the same total batch
// reads the same tokens in the same steps. Steps advance by the window and move
// to the next shard (or wrap to the first) when the window no longer fits; the
// partial window at a shard's end is left unused.
#ifndef GPT2_DATA_DATA_LOADER_H_
#define GPT2_DATA_DATA_LOADER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "src/data/token_shard.h"

namespace gpt2 {

// Where the loader is: small, so checkpoints can save and restore it.
struct LoaderCursor {
  int64_t shard = 0;
  int64_t position =
      0;  // token offset of the current step's window in the shard
  int64_t micro_step = 0;
  bool operator==(const LoaderCursor& o) const {
    return shard == o.shard && position == o.position &&
           micro_step == o.micro_step;
  }
};

struct LoaderLayout {
  int micro_batch_size = 1;  // B
  int seq_len = 1;           // T
  int rank = 0;
  int world_size = 1;
  int grad_accum_steps = 1;
  int64_t step_tokens() const {
    return int64_t{grad_accum_steps} * world_size * micro_batch_size * seq_len;
  }
};

class DataLoader {
 public:
  // Fails when no shard holds one step's window (step_tokens + 1 tokens).
  static absl::StatusOr<DataLoader> Create(std::vector<TokenShard> shards,
                                           const LoaderLayout& layout);

  // This rank's next micro-batch: inputs and targets, B * T each, row-major (B,
  // T).
  void Next(int32_t* inputs, int32_t* targets);

  LoaderCursor cursor() const { return cursor_; }
  absl::Status SetCursor(const LoaderCursor& cursor);
  void Reset() {
    cursor_ = LoaderCursor{};
    SkipShortShards();
  }

  int64_t total_tokens() const;
  // Optimizer steps in one pass over all shards.
  int64_t steps_per_epoch() const;
  const LoaderLayout& layout() const { return layout_; }
  const std::vector<TokenShard>& shards() const { return shards_; }

 private:
  DataLoader(std::vector<TokenShard> shards, const LoaderLayout& layout)
      : shards_(std::move(shards)), layout_(layout) {}
  bool Fits(int64_t shard, int64_t position) const;
  void SkipShortShards();

  std::vector<TokenShard> shards_;
  LoaderLayout layout_;
  LoaderCursor cursor_;
};

}  // namespace gpt2

#endif  // GPT2_DATA_DATA_LOADER_H_
