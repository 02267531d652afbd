// The GPT2_* switch check the tools run at start-up: misspelt names are
// warned about, values a switch does not take refused with what it takes;
// other variables and test hooks are left alone.
#include "src/core/env_switches.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gpt2 {
namespace {

using ::testing::HasSubstr;
using Lines = std::vector<std::string>;

EnvProblems Check(std::vector<const char*> entries) {
  entries.push_back(nullptr);
  return CheckEnvSwitches(entries.data());
}

TEST(EnvSwitches, AcceptsTheValuesEachSwitchTakes) {
  const EnvProblems p =
      Check({"GPT2_PDL=1", "GPT2_TRAIN_GRAPHS=0", "GPT2_ATTENTION_LEAN=kv",
             "GPT2_ATTENTION_WGMMA=regs", "GPT2_ATTENTION_GROUP=32",
             "GPT2_FP32_MATMUL=tf32", "GPT2_MATMUL_ALGO_CACHE=/tmp/algos.txt",
             "GPT2_TEST_FAIL_AT=3", "PATH=/usr/bin", "HOME=/root", "GPT2",
             "GPT2_ATTENTION_WGMMA=" /* empty: the default */});
  EXPECT_EQ(p.errors, Lines{});
  EXPECT_EQ(p.warnings, Lines{});
}

TEST(EnvSwitches, RefusesValuesASwitchDoesNotTake) {
  const EnvProblems p = Check(
      {"GPT2_UPDATE_BESIDE=yes", "GPT2_ATTENTION_LEAN=2",
       "GPT2_ATTENTION_GROUP=0", "GPT2_DECODE_LOOKAHEAD=four", "GPT2_PDL=on"});
  EXPECT_EQ(p.errors,
            (Lines{"GPT2_UPDATE_BESIDE=yes: GPT2_UPDATE_BESIDE takes 0 or 1",
                   "GPT2_ATTENTION_LEAN=2: GPT2_ATTENTION_LEAN takes one of "
                   "0, 1, kv, beside",
                   "GPT2_ATTENTION_GROUP=0: GPT2_ATTENTION_GROUP takes a whole "
                   "number from 1 up",
                   "GPT2_DECODE_LOOKAHEAD=four: GPT2_DECODE_LOOKAHEAD takes a "
                   "whole number from 1 up",
                   "GPT2_PDL=on: GPT2_PDL takes 0 or 1"}));
  EXPECT_EQ(p.warnings, Lines{});
}

TEST(EnvSwitches, WarnsAboutNamesNothingReads) {
  const EnvProblems p = Check({"GPT2_TRAIN_GRAPH=1", "GPT2_PDL=1"});
  EXPECT_EQ(p.errors, Lines{});
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_THAT(p.warnings[0], HasSubstr("GPT2_TRAIN_GRAPH is set, but no gpt2 "
                                       "tool reads it"));
}

// Every switch the runbook's table lists is known, with a value it takes
// (the table's own, e.g. `GPT2_PDL=1`), so the check never refuses a
// documented setting.
TEST(EnvSwitches, KnowsEverySwitchTheRunbookLists) {
  const std::vector<const char*> documented = {
      "GPT2_PORTABLE_ATTENTION=1",
      "GPT2_ATTENTION_GROUP=8",
      "GPT2_ATTENTION_LEAN=beside",
      "GPT2_ATTENTION_WGMMA=beside",
      "GPT2_ATTENTION_WGMMA_REGS=0",
      "GPT2_ATTENTION_WGMMA_PIPELINED=0",
      "GPT2_ATTENTION_WGMMA_DQ_PIPELINED=1",
      "GPT2_ATTENTION_LDMATRIX=0",
      "GPT2_WGRAD_BESIDE=0",
      "GPT2_BIAS_EPILOGUE=0",
      "GPT2_MATMUL_AUTOTUNE=1",
      "GPT2_PDL=1",
      "GPT2_UPDATE_BESIDE=1",
      "GPT2_TRAIN_GRAPHS=1",
      "GPT2_STREAM_PRIORITY=1",
      "GPT2_MATMUL_ALGO_CACHE=x",
      "GPT2_MATMUL_AUTOTUNE_SEARCH=1",
      "GPT2_MATMUL_AUTOTUNE_CANDIDATES=32",
      "GPT2_LAYERNORM_PACKED=0",
      "GPT2_CLASSIFIER_RING=1",
      "GPT2_CLASSIFIER_PACKED=0",
      "GPT2_LAYERNORM_PREFETCH=0",
      "GPT2_GELU_EPILOGUES=0",
      "GPT2_PORTABLE_MATMUL=1",
      "GPT2_DEVICE_SAMPLING=0",
      "GPT2_DECODE_FUSION=0",
      "GPT2_DECODE_GRAPHS=0",
      "GPT2_FP32_MATMUL=tf32"};
  const EnvProblems p = Check(documented);
  EXPECT_EQ(p.errors, Lines{});
  EXPECT_EQ(p.warnings, Lines{});
}

}  // namespace
}  // namespace gpt2
