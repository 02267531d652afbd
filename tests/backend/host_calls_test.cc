// FormatHostCallTimes: the line a first step (trainer) or a warm-up step
// (gpt2_bench) prints of where its host time went.
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/backend.h"

namespace gpt2 {
namespace {

OpTiming Call(const char* op, double ms, int64_t calls) {
  OpTiming t;
  t.op = op;
  t.ms = ms;
  t.calls = calls;
  return t;
}

TEST(HostCallTimes, NamesTheFiveSlowestThenTheRest) {
  const std::vector<OpTiming> calls = {Call("matmul_fwd", 120.25, 37),
                                       Call("matmul_bwd", 80.0, 37),
                                       Call("classifier", 30.0, 1),
                                       Call("attention_bwd", 20.0, 12),
                                       Call("attention_fwd", 10.0, 12),
                                       Call("layernorm_bwd", 2.0, 25),
                                       Call("adamw", 1.5, 1)};
  EXPECT_EQ(FormatHostCallTimes("first step", calls),
            "first step, host time inside ops (launches, library set-up, "
            "kernels loaded on first use): matmul_fwd 120.2 ms (37 calls), "
            "matmul_bwd 80.0 ms (37 calls), classifier 30.0 ms (1 call), "
            "attention_bwd 20.0 ms (12 calls), attention_fwd 10.0 ms (12 "
            "calls), 2 more ops 3.5 ms; 263.8 ms in all");
  EXPECT_EQ(FormatHostCallTimes("warm-up", {Call("adamw", 1.0, 1)}),
            "warm-up, host time inside ops (launches, library set-up, kernels "
            "loaded on first use): adamw 1.0 ms (1 call); 1.0 ms in all");
}

}  // namespace
}  // namespace gpt2
