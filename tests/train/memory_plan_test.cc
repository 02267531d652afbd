// The memory plan: it is what the model and the optimizer allocate, the
// refusal names a micro-batch (or recomputation) that does fit, and the host's
// free memory is read as the kernel and a container's cgroup report it.
#include "src/train/memory_plan.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "src/backend/select.h"
#include "src/core/host_memory.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/optim/shard_layout.h"
#include "src/train/config.h"

namespace gpt2 {
namespace {

// L, NH, C, maxT, V, Vp.
ModelShape Small() { return ModelShape{3, 2, 32, 16, 200, 256}; }

MemoryPlanInputs Inputs(const ModelShape& shape, DType dtype, int B, int T) {
  MemoryPlanInputs in;
  in.shape = shape;
  in.dtype = dtype;
  in.micro_batch = B;
  in.seq_len = T;
  in.buffer_elems = TotalParams(BuildParamList(shape));
  in.optimizer_elems = in.buffer_elems;
  return in;
}

// Every switch that changes the activations, against a model and optimizer
// really made on the CPU backend.
TEST(MemoryPlan, IsWhatTheModelAndOptimizerAllocate) {
  const ModelShape shape = Small();
  auto choice = ChooseCpuBackend(config::TrainConfig(), 0);
  ASSERT_TRUE(choice.ok()) << choice.status();
  Backend* backend = choice->backend.get();
  for (const DType dtype : {DType::kF32, DType::kF64}) {
    for (int flags = 0; flags < 4; ++flags) {
      MemoryPlanInputs in = Inputs(shape, dtype, 3, 12);
      in.recompute_gelu = flags & 1;
      in.recompute_layernorm = flags & 2;
      // A ZeRO-1 shard of 3 ranks: padded buffers, a third of the state.
      const ShardLayout shard = ShardLayout::Make(in.buffer_elems, 1, 3);
      in.buffer_elems = shard.padded_total();
      in.optimizer_elems = shard.shard_size;
      const MemoryPlan plan = PlanMemory(in);
      Gpt2Model model(backend, shape, dtype, 3, 12, shard.padded_total(),
                      in.recompute_gelu, in.recompute_layernorm);
      AdamWOptimizer optimizer(backend, model.param_list(), dtype, {}, shard);
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " flags ", flags));
      EXPECT_EQ(plan.activations, model.activation_bytes());
      EXPECT_EQ(plan.optimizer, optimizer.state_bytes());
      EXPECT_EQ(plan.params, model.padded_params().bytes());
      EXPECT_EQ(plan.grads, model.padded_grads().bytes());
    }
  }
}

// What the plan must count, from the shapes alone: every activation tensor
// of GPT-2 (bf16, with f32 statistics), and the optimizer's f32 m, v and
// master weights; recomputation drops L-1 of the per-layer copies.
TEST(MemoryPlan, CountsGpt2sTensors) {
  const ModelShape s = Small();
  const int64_t B = 2, T = 8, BT = B * T, L = s.num_layers, C = s.channels;
  MemoryPlanInputs in = Inputs(s, DType::kBF16, B, T);
  const int64_t act_elems =  // bf16 tensors
      L * BT *
          (C /*ln1*/ + 3 * C /*qkv*/ + C /*atty*/ + C /*ln2*/ + 4 * C /*fch*/ +
           4 * C /*gelu*/) +
      BT * (C /*encoded*/ + 2 * L * C /*residual2, 3*/ + C /*lnf*/ +
            s.padded_vocab_size + C /*branch*/ + C /*d_residual*/ + C /*d_ln*/ +
            3 * C + C + 4 * C + 4 * C /*d_qkv..d_gelu*/);
  const int64_t stat_elems =  // f32
      L * BT * (4 /*ln means, rstds*/ + s.num_heads /*lse*/) + 2 * BT /*lnf*/ +
      BT /*losses*/;
  const int64_t token_bytes = 2 * BT * 4;
  const MemoryPlan plan = PlanMemory(in);
  EXPECT_EQ(plan.activations, 2 * act_elems + 4 * stat_elems + token_bytes);
  EXPECT_EQ(plan.optimizer, 12 * in.optimizer_elems);
  EXPECT_EQ(plan.params, 2 * in.buffer_elems);
  in.recompute_gelu = true;
  EXPECT_EQ(PlanMemory(in).activations,
            plan.activations - 2 * (L - 1) * BT * 4 * C);
  in.recompute_gelu = false;
  in.recompute_layernorm = true;
  EXPECT_EQ(PlanMemory(in).activations,
            plan.activations - 2 * 2 * (L - 1) * BT * C);
  // An f32 residual stream: encoded, residual2/3 and d_residual in f32, plus
  // a bf16 copy of the residual gradient.
  in.recompute_layernorm = false;
  in.residual_fp32 = true;
  EXPECT_EQ(PlanMemory(in).activations,
            plan.activations + 2 * BT * C * (1 + 2 * L + 1) + 2 * BT * C);
}

TEST(MemoryPlan, FitsSaysNothing) {
  const MemoryPlanInputs in = Inputs(Small(), DType::kF32, 4, 16);
  const int64_t need = PlanMemory(in).total();
  EXPECT_FALSE(WhyItDoesNotFit(in, 4, 1, need, "the host").has_value());
  EXPECT_TRUE(WhyItDoesNotFit(in, 4, 1, need - 1, "the host").has_value());
  // Two ranks on the same memory need twice as much.
  EXPECT_TRUE(WhyItDoesNotFit(in, 4, 2, need, "the host").has_value());
  EXPECT_FALSE(WhyItDoesNotFit(in, 4, 2, 2 * need, "the host").has_value());
}

// The advice is the largest micro-batch that divides the sequences of a
// step (so the total batch stays) and fits.
TEST(MemoryPlan, RefusalNamesTheLargestMicroBatchThatFits) {
  MemoryPlanInputs in = Inputs(Small(), DType::kF32, 12, 16);
  const auto need_at = [&](int b) {
    MemoryPlanInputs v = in;
    v.micro_batch = b;
    return PlanMemory(v).total();
  };
  // Room for 5 sequences: 5 does not divide 12, 4 does.
  const auto why = WhyItDoesNotFit(in, 24, 1, need_at(5), "GPU 0 (test)");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("GPU 0 (test)"), std::string::npos) << *why;
  EXPECT_NE(why->find("--set train.micro_batch_size=4 "), std::string::npos)
      << *why;
  EXPECT_NE(why->find("6 micro-steps of gradient accumulation"),
            std::string::npos)
      << *why;
  EXPECT_NE(why->find(absl::StrCat("train.micro_batch_size 12 x seq_len 16")),
            std::string::npos)
      << *why;
  // Room for 1: micro-batch 1.
  const auto one = WhyItDoesNotFit(in, 24, 1, need_at(1), "the host");
  ASSERT_TRUE(one.has_value());
  EXPECT_NE(one->find("--set train.micro_batch_size=1 "), std::string::npos)
      << *one;
}

TEST(MemoryPlan, RefusalOffersRecomputationThatFits) {
  MemoryPlanInputs in = Inputs(Small(), DType::kF32, 4, 16);
  MemoryPlanInputs gelu = in;
  gelu.recompute_gelu = true;
  // Exactly room for the GELU recomputation (a smaller micro-batch too).
  auto why = WhyItDoesNotFit(in, 4, 1, PlanMemory(gelu).total(), "the host");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("--set train.recompute_gelu=true ("), std::string::npos)
      << *why;
  EXPECT_EQ(why->find("recompute_layernorm"), std::string::npos) << *why;
  // Room only for both.
  MemoryPlanInputs both = gelu;
  both.recompute_layernorm = true;
  why = WhyItDoesNotFit(in, 4, 1, PlanMemory(both).total(), "the host");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("--set train.recompute_gelu=true --set "
                      "train.recompute_layernorm=true"),
            std::string::npos)
      << *why;
  // Already on: not offered again; at one sequence nothing is left to try.
  both.micro_batch = 1;
  why = WhyItDoesNotFit(both, 4, 1, PlanMemory(both).total() - 1, "the host");
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(why->find("--set train.recompute"), std::string::npos) << *why;
  EXPECT_NE(why->find("Even one sequence per micro-step"), std::string::npos)
      << *why;
}

TEST(HostMemory, ReadsMeminfoAndTheCgroupLimit) {
  const std::string meminfo =
      "MemTotal:       24684084 kB\nMemFree:         1000 kB\n"
      "MemAvailable:   24152240 kB\nBuffers: 0 kB\n";
  auto m = ParseHostMemory(meminfo, "", "");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_bytes, int64_t{24684084} * 1024);
  EXPECT_EQ(m->available_bytes, int64_t{24152240} * 1024);
  // No limit: cgroup v2 "max", v1's huge number.
  m = ParseHostMemory(meminfo, "max\n", "123\n");
  EXPECT_EQ(m->available_bytes, int64_t{24152240} * 1024);
  m = ParseHostMemory(meminfo, "9223372036854771712\n", "3762827264\n");
  EXPECT_EQ(m->total_bytes, int64_t{24684084} * 1024);
  // A container limit of 8 GiB with 3 GiB used.
  m = ParseHostMemory(meminfo, "8589934592\n", "3221225472\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_bytes, int64_t{8} << 30);
  EXPECT_EQ(m->available_bytes, int64_t{5} << 30);
  // Used past the limit: nothing left.
  m = ParseHostMemory(meminfo, "1000\n", "5000\n");
  EXPECT_EQ(m->available_bytes, 0);
  // Unreadable.
  EXPECT_FALSE(ParseHostMemory("", "", "").has_value());
  EXPECT_FALSE(ParseHostMemory("MemTotal: lots\n", "", "").has_value());
  // This machine's.
  const auto here = ReadHostMemory();
  ASSERT_TRUE(here.has_value());
  EXPECT_GT(here->available_bytes, 0);
  EXPECT_LE(here->available_bytes, here->total_bytes);
}

}  // namespace
}  // namespace gpt2
