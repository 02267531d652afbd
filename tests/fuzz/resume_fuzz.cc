// src/train/checkpointing: a checkpoint as --resume reads it
// (RestoreTrainingCheckpoint) into a run of a tiny model (L=1, C=4, T=4, V=8,
// 8 tokens a step, fp32, the CPU backend), twice: into the whole optimizer
// state (one process) and into rank 1's shard of a world of 3 (ZeRO-1), so
// that shard ranges of any saved layout are read. Any bytes give the run's
// progress or an error; a restored cursor is one the loader takes or refuses,
// never one it serves out of bounds. The seeds are that model's checkpoints
// saved by gpt2_ddp, one process and two ZeRO-1 ranks.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "src/backend/select.h"
#include "src/data/data_loader.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/optim/shard_layout.h"
#include "src/train/checkpointing.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

struct Run {
  gpt2::config::RunConfig config;
  std::unique_ptr<gpt2::Backend> backend;
  std::unique_ptr<gpt2::Gpt2Model> model;
  std::unique_ptr<gpt2::AdamWOptimizer> whole, shard;
};

Run& TheRun() {
  static Run* run = [] {
    auto* r = new Run;
    gpt2::config::ModelConfig* m = r->config.mutable_model();
    m->set_num_layers(1);
    m->set_num_heads(1);
    m->set_channels(4);
    m->set_max_seq_len(4);
    m->set_vocab_size(8);
    m->set_padded_vocab_size(8);
    gpt2::config::TrainConfig* t = r->config.mutable_train();
    t->set_micro_batch_size(1);
    t->set_seq_len(4);
    t->set_total_batch_tokens(8);
    t->set_precision(gpt2::config::FP32);
    t->set_device(gpt2::config::CPU);
    absl::StatusOr<gpt2::BackendChoice> choice = gpt2::ChooseCpuBackend(*t, 0);
    GPT2_FUZZ_CHECK(choice.ok());
    r->backend = std::move(choice->backend);
    const gpt2::ModelShape shape{1, 1, 4, 4, 8, 8};
    r->model = std::make_unique<gpt2::Gpt2Model>(r->backend.get(), shape,
                                                 gpt2::DType::kF32, 1, 4);
    const int64_t n = r->model->num_params();
    const gpt2::AdamWHyper hyper;
    r->whole = std::make_unique<gpt2::AdamWOptimizer>(
        r->backend.get(), r->model->param_list(), gpt2::DType::kF32, hyper,
        gpt2::ShardLayout::Whole(n));
    r->shard = std::make_unique<gpt2::AdamWOptimizer>(
        r->backend.get(), r->model->param_list(), gpt2::DType::kF32, hyper,
        gpt2::ShardLayout::Make(n, 1, 3));
    return r;
  }();
  return *run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run& run = TheRun();
  const gpt2::fuzz::MemFile file(data, size);
  for (gpt2::AdamWOptimizer* optimizer : {run.whole.get(), run.shard.get()}) {
    const absl::StatusOr<gpt2::TrainProgress> progress =
        gpt2::RestoreTrainingCheckpoint(file.path(), run.config,
                                        run.model.get(), optimizer,
                                        run.backend.get());
    if (!progress.ok()) {
      GPT2_FUZZ_CHECK(!progress.status().message().empty());
      continue;
    }
    // The trainer hands the cursor to its loader: over 64 tokens here.
    std::vector<uint16_t> tokens(64, 1);
    std::vector<gpt2::TokenShard> shards;
    shards.push_back(gpt2::TokenShard::FromTokens(tokens, "train"));
    gpt2::LoaderLayout layout;
    layout.seq_len = 4;
    layout.grad_accum_steps = 2;
    absl::StatusOr<gpt2::DataLoader> loader =
        gpt2::DataLoader::Create(std::move(shards), layout);
    GPT2_FUZZ_CHECK(loader.ok());
    if (loader->SetCursor(progress->cursor).ok()) {
      int32_t inputs[4], targets[4];
      loader->Next(inputs, targets);
      for (int i = 0; i < 4; ++i) GPT2_FUZZ_CHECK(inputs[i] == 1);
    }
  }
  return 0;
}
