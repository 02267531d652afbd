// The GPT2_* switch check the tools run at start-up: misspelt names are
// warned about, values a switch does not take refused with what it takes;
// other variables and test hooks are left alone.
#include "src/core/env_switches.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
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

// Every setting the runbook's switch table names (docs/gpu_runbook.md: rows
// "| `GPT2_X=V` / `=W` | ...", its placeholders N and PATH as a number and a
// path) is known and takes the table's values, so the check never refuses a
// documented setting; the table is read, not copied here.
TEST(EnvSwitches, KnowsEverySwitchTheRunbookLists) {
  std::ifstream runbook(std::string(GPT2_SOURCE_DIR) + "/docs/gpu_runbook.md");
  ASSERT_TRUE(runbook.good()) << "cannot read docs/gpu_runbook.md";
  const std::regex row(R"(^\| `(GPT2_[A-Z0-9_]+)=([^`]*)`([^|]*)\|)");
  const std::regex more(R"(`=([^`]*)`)");
  std::vector<std::string> settings;
  for (std::string line; std::getline(runbook, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    const std::string name = m[1];
    std::vector<std::string> values = {m[2]};
    const std::string rest = m[3];
    for (auto it = std::sregex_iterator(rest.begin(), rest.end(), more);
         it != std::sregex_iterator(); ++it)
      values.push_back((*it)[1]);
    for (std::string v : values) {
      if (v == "N") v = "8";
      if (v == "PATH") v = "/tmp/x";
      settings.push_back(name + "=" + v);
    }
  }
  ASSERT_GE(settings.size(), 28u) << "the runbook's switch table was not found";
  std::vector<const char*> entries;
  for (const std::string& s : settings) entries.push_back(s.c_str());
  const EnvProblems p = Check(entries);
  EXPECT_EQ(p.errors, Lines{});
  EXPECT_EQ(p.warnings, Lines{});
}

// The other way: every switch that takes set values (not ANY: paths, prompts,
// the scripts' and tests' hooks) is named in the README or a page of docs/,
// so a user can find what it does.
TEST(EnvSwitches, EverySwitchIsDocumented) {
  std::vector<std::string> files = {"/README.md"};
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(GPT2_SOURCE_DIR) + "/docs")) {
    if (entry.path().extension() == ".md")
      files.push_back("/docs/" + entry.path().filename().string());
  }
  ASSERT_GE(files.size(), 3u) << "docs/*.md not found";
  std::string docs;
  for (const std::string& file : files) {
    std::ifstream in(std::string(GPT2_SOURCE_DIR) + file);
    ASSERT_TRUE(in.good()) << "cannot read " << file;
    docs.append(std::istreambuf_iterator<char>(in), {});
  }
  for (const EnvSwitch& s : KnownEnvSwitches()) {
    if (s.values == "ANY") continue;
    EXPECT_NE(docs.find(std::string(s.name) + "="), std::string::npos)
        << s.name << " is not named (as " << s.name
        << "=...) in README.md or docs/*.md";
  }
}

}  // namespace
}  // namespace gpt2
