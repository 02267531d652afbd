// src/data/data_loader: the loader over any shards and layout, and any
// cursor (a checkpoint restores one). The input's first bytes pick B, T, the
// world size, the rank (sometimes out of range), the accumulation and up to
// three shards' lengths; the rest are the tokens; after them, three int64s
// are a cursor to restore. Create and SetCursor give a loader or an error;
// every micro-batch Next serves is the one the header's comment defines:
// rows [(micro_step * world + rank) * B, + B) of the step's window at the
// cursor, inputs and targets one token apart, the window inside its shard.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "src/data/data_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 6) return 0;
  gpt2::LoaderLayout layout;
  layout.micro_batch_size = 1 + data[0] % 4;
  layout.seq_len = 1 + data[1] % 16;
  layout.world_size = 1 + data[2] % 4;
  layout.rank = data[3] % 5;
  layout.grad_accum_steps = 1 + data[4] % 3;
  const int num_shards = 1 + data[5] % 3;
  size_t at = 6;
  std::vector<size_t> lengths;
  for (int s = 0; s < num_shards && at < size; ++s) {
    lengths.push_back(static_cast<size_t>(data[at++]) * 4);
  }
  std::vector<std::vector<uint16_t>> tokens;
  std::vector<gpt2::TokenShard> shards;
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<uint16_t> t(lengths[s]);
    for (size_t k = 0; k < t.size(); ++k) {
      t[k] = static_cast<uint16_t>(at < size ? data[at++]
                                             : static_cast<uint8_t>(k * 7 + s));
    }
    tokens.push_back(t);
    shards.push_back(gpt2::TokenShard::FromTokens(std::move(t),
                                                  "shard" + std::to_string(s)));
  }
  absl::StatusOr<gpt2::DataLoader> loader =
      gpt2::DataLoader::Create(std::move(shards), layout);
  if (!loader.ok()) {
    GPT2_FUZZ_CHECK(!loader.status().message().empty());
    return 0;
  }
  GPT2_FUZZ_CHECK(layout.rank < layout.world_size);
  if (size - at >= 24) {
    gpt2::LoaderCursor cursor;
    std::memcpy(&cursor.shard, data + at, 8);
    std::memcpy(&cursor.position, data + at + 8, 8);
    std::memcpy(&cursor.micro_step, data + at + 16, 8);
    if (!loader->SetCursor(cursor).ok()) return 0;
    GPT2_FUZZ_CHECK(loader->cursor() == cursor);
  }
  const int64_t B = layout.micro_batch_size, T = layout.seq_len;
  std::vector<int32_t> inputs(B * T), targets(B * T);
  const int64_t micro_batches =
      (loader->steps_per_epoch() + 2) * layout.grad_accum_steps;
  for (int64_t n = 0; n < micro_batches && n < 4096; ++n) {
    const gpt2::LoaderCursor c = loader->cursor();
    const std::vector<uint16_t>& shard = tokens[static_cast<size_t>(c.shard)];
    GPT2_FUZZ_CHECK(c.position >= 0 &&
                    c.position <= static_cast<int64_t>(shard.size()) -
                                      layout.step_tokens() - 1);
    loader->Next(inputs.data(), targets.data());
    const int64_t start =
        c.position + (c.micro_step * layout.world_size + layout.rank) * B * T;
    for (int64_t i = 0; i < B * T; ++i) {
      GPT2_FUZZ_CHECK(inputs[i] == shard[start + i]);
      GPT2_FUZZ_CHECK(targets[i] == shard[start + i + 1]);
    }
  }
  return 0;
}
