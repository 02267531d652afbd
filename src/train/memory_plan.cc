#include "src/train/memory_plan.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"

namespace gpt2 {

MemoryPlan PlanMemory(const MemoryPlanInputs& in) {
  const int64_t elem = static_cast<int64_t>(DTypeSize(in.dtype));
  MemoryPlan plan;
  plan.params = in.buffer_elems * elem;
  plan.grads = in.buffer_elems * elem;
  plan.optimizer =
      AdamWOptimizer::StateBytes(in.dtype, in.optimizer_elems, in.bf16_state);
  plan.shard_grads = in.shard_grad_elems * elem;
  plan.activations = Gpt2Model::ActivationBytes(
      in.shape, in.dtype, in.micro_batch, in.seq_len, in.recompute_gelu,
      in.recompute_layernorm, in.residual_fp32);
  return plan;
}

std::string FormatBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    return absl::StrFormat("%.1f GiB", b / (1024.0 * 1024 * 1024));
  }
  if (b >= 1024.0 * 1024)
    return absl::StrFormat("%.1f MiB", b / (1024.0 * 1024));
  return absl::StrFormat("%.0f KiB", b / 1024.0);
}

std::string DescribeMemoryPlan(const MemoryPlan& plan) {
  std::string text = absl::StrCat("params ", FormatBytes(plan.params),
                                  ", grads ", FormatBytes(plan.grads),
                                  ", optimizer ", FormatBytes(plan.optimizer));
  if (plan.shard_grads > 0) {
    absl::StrAppend(&text, ", shard grads ", FormatBytes(plan.shard_grads));
  }
  absl::StrAppend(&text, ", activations ", FormatBytes(plan.activations), "; ",
                  FormatBytes(plan.total()), " in all");
  return text;
}

std::optional<std::string> WhyItDoesNotFit(const MemoryPlanInputs& in,
                                           int64_t sequences_per_step,
                                           int sharing, int64_t free_bytes,
                                           const std::string& where) {
  const auto needs = [&](const MemoryPlanInputs& v) {
    return PlanMemory(v).total() * sharing;
  };
  const int64_t need = needs(in);
  if (need <= free_bytes) return std::nullopt;
  std::string why =
      absl::StrCat("the run needs ", FormatBytes(need), " of memory on ", where,
                   sharing > 1 ? absl::StrCat(" (", sharing, " ranks x ",
                                              FormatBytes(need / sharing), ")")
                               : "",
                   " and ", FormatBytes(free_bytes),
                   " is free: ", DescribeMemoryPlan(PlanMemory(in)),
                   " at train.micro_batch_size ", in.micro_batch, " x seq_len ",
                   in.seq_len, ".");
  // The same total batch with smaller micro-batches (more accumulation).
  std::vector<std::string> ways;
  for (int b = in.micro_batch - 1; b >= 1; --b) {
    if (sequences_per_step % b != 0) continue;
    MemoryPlanInputs smaller = in;
    smaller.micro_batch = b;
    if (needs(smaller) <= free_bytes) {
      ways.push_back(absl::StrCat(
          "--set train.micro_batch_size=", b, " (", FormatBytes(needs(smaller)),
          "; the total batch stays, ", sequences_per_step / b,
          " micro-steps of gradient accumulation per step)"));
      break;
    }
  }
  // Recomputation at the asked micro-batch: the first of GELU, LayerNorm or
  // both (in that order of cost) that fits.
  for (const auto& [gelu, layernorm] :
       {std::pair{true, false}, {false, true}, {true, true}}) {
    MemoryPlanInputs with = in;
    with.recompute_gelu |= gelu;
    with.recompute_layernorm |= layernorm;
    if ((with.recompute_gelu == in.recompute_gelu &&
         with.recompute_layernorm == in.recompute_layernorm) ||
        needs(with) > free_bytes) {
      continue;
    }
    std::vector<std::string> sets;
    if (gelu && !in.recompute_gelu) sets.push_back("train.recompute_gelu=true");
    if (layernorm && !in.recompute_layernorm) {
      sets.push_back("train.recompute_layernorm=true");
    }
    ways.push_back(absl::StrCat("--set ", absl::StrJoin(sets, " --set "), " (",
                                FormatBytes(needs(with)),
                                "; one more elementwise pass per layer "
                                "in the backward)"));
    break;
  }
  if (ways.empty()) {
    MemoryPlanInputs least = in;
    least.micro_batch = 1;
    least.recompute_gelu = least.recompute_layernorm = true;
    absl::StrAppend(
        &why,
        " Even one sequence per micro-step with both recomputations "
        "needs ",
        FormatBytes(needs(least)),
        ": use a device with more memory, more ranks (ZeRO-1 shards the "
        "optimizer state), or a smaller model or train.seq_len.");
  } else {
    absl::StrAppend(&why, " Try ", absl::StrJoin(ways, ", or "), ".");
  }
  return why;
}

}  // namespace gpt2
