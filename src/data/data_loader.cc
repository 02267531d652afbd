#include "src/data/data_loader.h"

#include "absl/strings/str_cat.h"

namespace gpt2 {

absl::StatusOr<DataLoader> DataLoader::Create(std::vector<TokenShard> shards,
                                              const LoaderLayout& layout) {
  if (layout.micro_batch_size < 1 || layout.seq_len < 1 ||
      layout.world_size < 1 || layout.rank < 0 ||
      layout.rank >= layout.world_size || layout.grad_accum_steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad loader layout: B=", layout.micro_batch_size, " T=", layout.seq_len,
        " rank=", layout.rank, " world=", layout.world_size,
        " accum=", layout.grad_accum_steps));
  }
  if (shards.empty())
    return absl::InvalidArgumentError("no token shards to load");
  DataLoader loader(std::move(shards), layout);
  bool any_fits = false;
  for (size_t s = 0; s < loader.shards_.size(); ++s)
    any_fits |= loader.Fits(s, 0);
  if (!any_fits) {
    return absl::InvalidArgumentError(
        absl::StrCat(loader.shards_[0].name(), ": ", loader.shards_[0].size(),
                     " tokens; one step needs ", layout.step_tokens() + 1,
                     " (accum * world * B * T + 1) in a single shard"));
  }
  loader.Reset();
  return loader;
}

bool DataLoader::Fits(int64_t shard, int64_t position) const {
  // Written so that no position (a cursor from a checkpoint) can overflow.
  const int64_t size = static_cast<int64_t>(shards_[shard].size());
  return position >= 0 && position <= size - layout_.step_tokens() - 1;
}

void DataLoader::SkipShortShards() {
  while (!Fits(cursor_.shard, cursor_.position)) {
    cursor_.shard = (cursor_.shard + 1) % static_cast<int64_t>(shards_.size());
    cursor_.position = 0;
  }
}

void DataLoader::Next(int32_t* inputs, int32_t* targets) {
  const int64_t rows = layout_.micro_batch_size;
  const int64_t T = layout_.seq_len;
  const int64_t row_block =
      cursor_.micro_step * layout_.world_size + layout_.rank;
  const uint16_t* window = shards_[cursor_.shard].tokens().data() +
                           cursor_.position + row_block * rows * T;
  for (int64_t i = 0; i < rows * T; ++i) {
    inputs[i] = window[i];
    targets[i] = window[i + 1];
  }
  if (++cursor_.micro_step == layout_.grad_accum_steps) {
    cursor_.micro_step = 0;
    cursor_.position += layout_.step_tokens();
    SkipShortShards();
  }
}

absl::Status DataLoader::SetCursor(const LoaderCursor& c) {
  if (c.shard < 0 || c.shard >= static_cast<int64_t>(shards_.size()) ||
      c.position < 0 || c.micro_step < 0 ||
      c.micro_step >= layout_.grad_accum_steps || !Fits(c.shard, c.position)) {
    return absl::OutOfRangeError(absl::StrCat(
        "loader cursor (shard ", c.shard, ", position ", c.position,
        ", micro-step ", c.micro_step, ") does not fit the data"));
  }
  cursor_ = c;
  return absl::OkStatus();
}

int64_t DataLoader::total_tokens() const {
  int64_t total = 0;
  for (const TokenShard& s : shards_) total += s.size();
  return total;
}

int64_t DataLoader::steps_per_epoch() const {
  int64_t steps = 0;
  for (const TokenShard& s : shards_) {
    const int64_t n = static_cast<int64_t>(s.size()) - 1;
    if (n > 0) steps += n / layout_.step_tokens();
  }
  return steps;
}

}  // namespace gpt2
