#include "src/optim/adamw_optimizer.h"

#include <algorithm>

#include "src/core/error.h"

namespace gpt2 {

AdamWOptimizer::AdamWOptimizer(Backend* backend,
                               const std::vector<ParamSpec>& params,
                               DType dtype, const AdamWHyper& hyper,
                               const ShardLayout& shard)
    : backend_(backend), params_(params), hyper_(hyper), shard_(shard) {
  GPT2_CHECK_MSG(
      !hyper_.bf16_state || dtype != DType::kBF16 || hyper_.rounding_seed != 0,
      "a bf16 optimizer state rounds stochastically: it needs a "
      "rounding seed");
  m_ = backend_->Alloc(StateDType(dtype, hyper_.bf16_state), shard_.shard_size);
  v_ = backend_->Alloc(StateDType(dtype, hyper_.bf16_state), shard_.shard_size);
  if (HasMaster(dtype, hyper_.bf16_state))
    master_ = backend_->Alloc(DType::kF32, shard_.shard_size);
  args_.beta1 = hyper_.beta1;
  args_.beta2 = hyper_.beta2;
  args_.eps = hyper_.eps;
  args_.grad_clip = hyper_.grad_clip;
  args_.rounding_seed = hyper_.rounding_seed;
  args_.weight_decay = hyper_.weight_decay;
  // One call a step over the shard, in runs of tensors that decay or do not
  // (the parts of the tensors inside the shard, in the buffer's order).
  const int64_t begin = shard_.begin(), end = shard_.end();
  args_.index = begin;
  for (const ParamSpec& p : params_) {
    const int64_t lo = std::max(begin, p.offset);
    const int64_t hi = std::min(end, p.offset + p.numel);
    if (lo >= hi) continue;
    const int64_t covered = args_.runs.empty() ? 0 : args_.runs.back().end;
    GPT2_CHECK_MSG(lo == begin + covered,
                   "the parameter list leaves a gap in the buffer");
    if (!args_.runs.empty() && args_.runs.back().decayed == p.decayed) {
      args_.runs.back().end = hi - begin;
    } else {
      args_.runs.push_back({hi - begin, p.decayed});
    }
  }
  GPT2_CHECK_MSG(end == begin || (!args_.runs.empty() &&
                                  args_.runs.back().end == end - begin),
                 "the parameter list does not cover the shard");
  // The forward's groups, each slice cut to the shard.
  int num_layers = 0;
  for (const ParamSpec& p : params_) {
    if (p.per_layer && p.layer_numel() > 0)
      num_layers = static_cast<int>(p.numel / p.layer_numel());
  }
  for (const auto& group : ForwardUpdateGroups(params_, num_layers)) {
    AdamWArgs part = args_;
    part.runs.clear();
    for (const ParamSlice& s : group) {
      const int64_t lo = std::max(begin, s.offset);
      const int64_t hi = std::min(end, s.offset + s.numel);
      if (lo < hi) part.runs.push_back({hi - begin, s.decayed, lo - begin});
    }
    if (!part.runs.empty()) group_args_.push_back(std::move(part));
  }
}

int64_t AdamWOptimizer::StateBytes(DType dtype, int64_t shard_size,
                                   bool bf16_state) {
  const int64_t per_param = 2 * DTypeSize(StateDType(dtype, bf16_state)) +
                            (HasMaster(dtype, bf16_state) ? 4 : 0);
  return per_param * shard_size;
}

AdamWOptimizer::AdamWOptimizer(Backend* backend,
                               const std::vector<ParamSpec>& params,
                               DType dtype, const AdamWHyper& hyper)
    : AdamWOptimizer(backend, params, dtype, hyper,
                     ShardLayout::Whole(TotalParams(params))) {}

AdamWOptimizer::~AdamWOptimizer() {
  backend_->Free(m_);
  backend_->Free(v_);
  backend_->Free(master_);
}

void AdamWOptimizer::Step(Tensor params, Tensor shard_grads,
                          Tensor norm_squared, double lr, int64_t step) {
  Queue(params, shard_grads, norm_squared, lr, step, Tensor{});
}

void AdamWOptimizer::StepAtStagedValues(Tensor params, Tensor shard_grads,
                                        Tensor norm_squared, Tensor step_values,
                                        const GatheredRows& gathered) {
  GPT2_CHECK_MSG(step_values.data != nullptr, "no step values");
  Queue(params, shard_grads, norm_squared, 0.0, 1, step_values, gathered);
}

namespace {

// runs (of a call numbering its elements from 0) without the elements in
// [lo, hi), each with its begin.
std::vector<AdamWRun> RunsOutside(const std::vector<AdamWRun>& runs, int64_t lo,
                                  int64_t hi) {
  std::vector<AdamWRun> out;
  int64_t begin = 0;
  for (const AdamWRun& run : runs) {
    if (run.begin >= 0) begin = run.begin;
    if (begin < lo) out.push_back({std::min(run.end, lo), run.decayed, begin});
    if (run.end > hi)
      out.push_back({run.end, run.decayed, std::max(begin, hi)});
    begin = run.end;
  }
  return out;
}

}  // namespace

void AdamWOptimizer::StageStepValues(Tensor step_values, double lr,
                                     int64_t step) {
  AdamWArgs now = args_;
  now.lr = lr;
  now.step = step;
  const AdamWStepValues values = MakeAdamWStepValues(now);
  GPT2_CHECK_MSG(step_values.bytes() == sizeof(values),
                 "step values: an AdamWStepValues (6 x i32)");
  backend_->Upload(step_values, &values);
}

void AdamWOptimizer::Queue(Tensor params, Tensor shard_grads,
                           Tensor norm_squared, double lr, int64_t step,
                           Tensor step_values, const GatheredRows& gathered) {
  const int64_t begin = shard_.begin(), n = shard_.end() - begin;
  if (n == 0) return;
  const Tensor param = params.Slice(begin, n);
  const Tensor master = has_master() ? master_.Slice(0, n) : Tensor{};
  const Tensor grad = shard_grads.Slice(0, n);
  if (updates_beside()) {
    backend_->BeginUpdatesBeside();
    const Tensor m = m_.Slice(0, n), v = v_.Slice(0, n);
    // The gathered table's elements [lo, hi) and its call (marked rows first,
    // the others last).
    const bool split = gathered.param >= 0;
    int64_t lo = 0, hi = 0;
    AdamWArgs table = args_;
    if (split) {
      const ParamSpec& spec = params_.at(gathered.param);
      lo = spec.offset - begin;
      hi = lo + spec.numel;
      GPT2_CHECK_MSG(lo >= 0 && hi <= n && spec.shape.size() == 2,
                     "the gathered table ", spec.name,
                     " is not a whole matrix of the shard");
      table.lr = lr;
      table.step = step;
      table.step_values = step_values;
      table.runs = {{hi, spec.decayed, lo}};
      table.row_marks = gathered.marks;
      table.row_width = spec.shape[1];
      table.marked_rows = true;
      backend_->MarkAdamWRows(gathered.marks, gathered.tokens, table);
      backend_->AdamW(param, master, m, v, grad, norm_squared, table);
    }
    for (AdamWArgs& part : group_args_) {
      part.lr = lr;
      part.step = step;
      part.step_values = step_values;
      if (!split) {
        backend_->AdamW(param, master, m, v, grad, norm_squared, part);
        continue;
      }
      AdamWArgs rest = part;
      rest.runs = RunsOutside(part.runs, lo, hi);
      if (!rest.runs.empty())
        backend_->AdamW(param, master, m, v, grad, norm_squared, rest);
    }
    if (split) {
      table.marked_rows = false;
      backend_->AdamW(param, master, m, v, grad, norm_squared, table);
    }
    backend_->EndUpdatesBeside();
    return;
  }
  args_.lr = lr;
  args_.step = step;
  args_.step_values = step_values;
  backend_->AdamW(param, master, m_.Slice(0, n), v_.Slice(0, n), grad,
                  norm_squared, args_);
}

void AdamWOptimizer::InitMasterFromParams(Tensor params) {
  if (!has_master()) return;
  const int64_t n = shard_.end() - shard_.begin();
  if (n > 0)
    backend_->Cast(master_.Slice(0, n), params.Slice(shard_.begin(), n));
}

}  // namespace gpt2
