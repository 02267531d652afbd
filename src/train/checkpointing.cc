#include "src/train/checkpointing.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/export.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/ckpt/run_files.h"
#include "src/core/build_info.h"
#include "src/core/error.h"
#include "src/train/config.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

// Host bytes of a backend tensor.
std::vector<char> ToHost(Backend* backend, Tensor t) {
  std::vector<char> host(t.bytes());
  backend->Download(host.data(), t);
  return host;
}

}  // namespace

absl::StatusOr<SaveReport> SaveTrainingCheckpoint(
    const std::string& run_dir, const config::RunConfig& config,
    const TrainProgress& progress, const Gpt2Model& model,
    const AdamWOptimizer& optimizer, Backend* backend, Communicator* comm) {
  const auto start = Clock::now();
  const bool rank0 = comm->rank() == 0;
  const std::vector<ParamSpec>& list = model.param_list();
  const ShardLayout& shard = optimizer.shard();
  const DType state_dtype = optimizer.m().dtype;
  SaveReport report;
  report.path = CheckpointPath(run_dir, progress.step);

  // Only rank 0 writes; a failure there is reported after the collectives
  // below, so the other ranks are never left waiting in one.
  absl::Status status;
  std::optional<CheckpointWriter> writer;
  if (rank0) {
    ckpt::Header header;
    *header.mutable_config() = config;
    header.set_step(progress.step);
    header.set_optimizer_steps(progress.optimizer_steps);
    header.set_tokens_seen(progress.tokens_seen);
    header.set_train_tokens(progress.train_tokens);
    header.set_lr(progress.lr);
    for (int r = 0; r < comm->world_size(); ++r) {
      ckpt::LoaderCursor* c = header.add_loader();
      c->set_rank(r);
      c->set_shard(progress.cursor.shard);
      c->set_position(progress.cursor.position);
      c->set_micro_step(progress.cursor.micro_step);
    }
    header.mutable_rng()->set_seed(config.train().seed());
    header.mutable_rng()->set_algorithm("xoshiro256** (init only)");
    header.set_world_size(comm->world_size());
    header.set_zero_stage(shard.world_size > 1 ? 1 : 0);
    header.set_shard_size(shard.world_size > 1 ? shard.shard_size : 0);
    header.set_param_dtype(ToProtoDType(model.dtype()));
    header.set_optimizer_dtype(ToProtoDType(state_dtype));
    header.set_has_optimizer_state(true);
    header.set_has_master_weights(optimizer.has_master());
    header.set_num_params(model.num_params());
    header.set_created_by(absl::StrCat("gpt2_ddp (build ", BuildCommit(), ")"));
    auto created = CheckpointWriter::Create(report.path, header);
    if (created.ok()) {
      writer.emplace(std::move(*created));
    } else {
      status = created.status();
    }
  }
  if (rank0 && status.ok()) {
    const std::vector<char> params = ToHost(backend, model.params());
    status =
        WriteFlatRange(&*writer, list, TensorFamily::kParams, model.dtype(), 0,
                       params.data(), model.num_params());
  }
  std::vector<TensorFamily> families = {TensorFamily::kAdamM,
                                        TensorFamily::kAdamV};
  if (optimizer.has_master()) families.push_back(TensorFamily::kMaster);
  for (TensorFamily family : families) {
    const Tensor state = family == TensorFamily::kAdamM   ? optimizer.m()
                         : family == TensorFamily::kAdamV ? optimizer.v()
                                                          : optimizer.master();
    if (shard.world_size == 1) {  // every rank holds all of it
      if (rank0 && status.ok()) {
        const std::vector<char> host = ToHost(backend, state);
        status = WriteFlatRange(&*writer, list, family, state_dtype, 0,
                                host.data(), shard.shard_size);
      }
      continue;
    }
    // ZeRO-1: the shards come to rank 0 one at a time.
    std::vector<char> buffer(state.bytes());
    for (int r = 0; r < shard.world_size; ++r) {
      if (r == comm->rank()) buffer = ToHost(backend, state);
      comm->Broadcast(Tensor{buffer.data(), state_dtype, shard.shard_size}, r);
      if (rank0 && status.ok()) {
        status = WriteFlatRange(&*writer, list, family, state_dtype,
                                r * shard.shard_size, buffer.data(),
                                shard.shard_size);
      }
    }
  }
  if (!rank0) return report;
  if (status.ok()) status = writer->Commit();
  if (status.ok())
    status = UpdateLatest(run_dir, CheckpointFileName(progress.step));
  if (status.ok())
    status = PruneCheckpoints(run_dir, config.checkpoint().keep_last());
  if (!status.ok()) {
    return absl::Status(
        status.code(),
        absl::StrCat("saving the checkpoint at step ", progress.step,
                     " failed: ", status.message()));
  }
  std::error_code ec;
  report.bytes =
      static_cast<int64_t>(std::filesystem::file_size(report.path, ec));
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

absl::StatusOr<TrainProgress> RestoreTrainingCheckpoint(
    const std::string& path, const config::RunConfig& config, Gpt2Model* model,
    AdamWOptimizer* optimizer, Backend* backend) {
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  const ckpt::Header& header = reader.header();
  const std::vector<ParamSpec>& list = model->param_list();
  GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kParams));
  if (!header.has_optimizer_state()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path,
        ": holds weights only, no optimizer state, so it cannot resume a run; "
        "start from its weights with --init_from"));
  }
  GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kAdamM));
  GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kAdamV));
  const auto& saved_train = header.config().train();
  const int64_t saved_total = saved_train.total_batch_tokens() != 0
                                  ? saved_train.total_batch_tokens()
                                  : int64_t{saved_train.micro_batch_size()} *
                                        saved_train.seq_len() *
                                        header.world_size();
  const int64_t total = config.train().total_batch_tokens();
  if (total != 0 && saved_total != 0 && total != saved_total) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": saved with train.total_batch_tokens ",
                     saved_total, ", this run has ", total,
                     "; a resumed run must keep the total batch (the data "
                     "order depends on it)"));
  }
  if (header.loader_size() == 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": no loader cursor in the header"));
  }

  std::vector<double> params(model->num_params());
  GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, TensorFamily::kParams,
                                     DType::kF64, 0, model->num_params(),
                                     params.data()));
  model->SetParams(params);
  // This rank's shard of the moments, whatever layout they were saved under.
  const ShardLayout& shard = optimizer->shard();
  // Master weights come from the file when it has them, else from the params.
  std::vector<TensorFamily> families = {TensorFamily::kAdamM,
                                        TensorFamily::kAdamV};
  if (optimizer->has_master() && header.has_master_weights()) {
    GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kMaster));
    families.push_back(TensorFamily::kMaster);
  } else {
    optimizer->InitMasterFromParams(model->params());
  }
  for (TensorFamily family : families) {
    Tensor state = family == TensorFamily::kAdamM   ? optimizer->m()
                   : family == TensorFamily::kAdamV ? optimizer->v()
                                                    : optimizer->master();
    std::vector<char> host(state.bytes());
    GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, family, state.dtype,
                                       shard.begin(), shard.shard_size,
                                       host.data()));
    backend->Upload(state, host.data());
  }
  TrainProgress progress;
  progress.step = header.step();
  progress.optimizer_steps =
      header.has_optimizer_steps() ? header.optimizer_steps() : header.step();
  progress.lr = header.lr();
  progress.tokens_seen = header.tokens_seen();
  progress.train_tokens = header.train_tokens();
  progress.config_changes = ConfigChanges(header.config(), config);
  // Cursors do not depend on the rank (see the loader): rank 0's serves every
  // world size.
  progress.cursor.shard = header.loader(0).shard();
  progress.cursor.position = header.loader(0).position();
  progress.cursor.micro_step = header.loader(0).micro_step();
  return progress;
}

absl::Status InitWeightsFrom(const std::string& path, Gpt2Model* model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // A file is told apart by its first bytes: our magic, llm.c's, or a
  // safetensors header (IsHfModel, which also takes a Hugging Face folder).
  const bool hf = IsHfModel(path);
  char head[8] = {};
  if (!hf) {
    std::ifstream in(path, std::ios::binary);
    if (!in || fs::is_directory(path, ec))
      return absl::NotFoundError(
          absl::StrCat(path,
                       ": cannot open --init_from file (or folder with "
                       "model.safetensors)"));
    in.read(head, sizeof(head));
  }
  int32_t magic = 0;
  std::memcpy(&magic, head, sizeof(magic));
  const bool llmc = magic == kLlmcModelMagic;
  if (!llmc && !hf && std::memcmp(head, kCheckpointMagic, 8) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": --init_from takes a gpt2_ddp checkpoint, an llm.c model file "
        "(e.g. gpt2_124M.bin) or a Hugging Face GPT-2 (its folder or "
        "model.safetensors); this is none of them"));
  }
  if (hf) {  // straight into memory
    GPT2_ASSIGN_OR_RETURN(const HfModel weights, ReadHf(path));
    const std::vector<ParamSpec>& list = model->param_list();
    if (static_cast<int64_t>(weights.params.size()) != TotalParams(list) ||
        BuildParamList(weights.shape).size() != list.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": a GPT-2 of L=", weights.shape.num_layers,
          " C=", weights.shape.channels, " maxT=", weights.shape.max_seq_len,
          " V=", weights.shape.vocab_size, " (", weights.params.size(),
          " parameters); the config's model has ", TotalParams(list)));
    }
    const std::vector<ParamSpec> theirs = BuildParamList(weights.shape);
    for (size_t i = 0; i < list.size(); ++i) {
      if (theirs[i].shape != list[i].shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor '", list[i].name,
            "' has another shape than the "
            "config's model (L=",
            weights.shape.num_layers, " C=", weights.shape.channels,
            " maxT=", weights.shape.max_seq_len,
            " V=", weights.shape.vocab_size, " there)"));
      }
    }
    model->SetParams(
        std::vector<double>(weights.params.begin(), weights.params.end()));
    return absl::OkStatus();
  }
  std::string checkpoint = path;
  std::string converted;
  if (llmc) {
    // Converted to a weights-only checkpoint first.
    converted = (fs::temp_directory_path() /
                 absl::StrCat("gpt2_init_from_", ::getpid(), ".ckpt"))
                    .string();
    const absl::Status imported = ImportLlmc(path, converted);
    if (!imported.ok()) {
      fs::remove(converted, ec);
      return imported;
    }
    checkpoint = converted;
  }
  auto state = LoadModelCheckpoint(checkpoint, model->param_list(), false);
  if (!converted.empty()) fs::remove(converted, ec);
  if (!state.ok() && !converted.empty()) {
    // Named by the file the user gave, not by the conversion's.
    return absl::Status(
        state.status().code(),
        absl::StrReplaceAll(state.status().message(), {{converted, path}}));
  }
  if (!state.ok()) return state.status();
  model->SetParams(state->params);
  return absl::OkStatus();
}

}  // namespace gpt2
