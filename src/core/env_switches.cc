#include "src/core/env_switches.h"

#include <charconv>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gpt2 {

const std::vector<EnvSwitch>& KnownEnvSwitches() {
  static const std::vector<EnvSwitch> known = {
      // Kernel versions and fallbacks (docs/gpu_runbook.md).
      {"GPT2_ATTENTION_GROUP", "N"},
      {"GPT2_ATTENTION_LDMATRIX", "0|1"},
      {"GPT2_ATTENTION_LEAN", "0|1|kv|beside"},
      {"GPT2_ATTENTION_WGMMA", "0|1|beside|regs|wide|split"},
      {"GPT2_ATTENTION_WGMMA_DQ4", "0|1"},
      {"GPT2_ATTENTION_WGMMA_DQ_PIPELINED", "0|1"},
      {"GPT2_ATTENTION_WGMMA_PIPELINED", "0|1"},
      {"GPT2_ATTENTION_WGMMA_REGS", "0|1"},
      {"GPT2_ATTENTION_WGMMA_SPLIT", "0|1"},
      {"GPT2_ATTENTION_WGMMA_WIDE", "0|1"},
      {"GPT2_BIAS_EPILOGUE", "0|1"},
      {"GPT2_CLASSIFIER_BULK", "0|1"},
      {"GPT2_CLASSIFIER_FAST_EXP", "0|1"},
      {"GPT2_CLASSIFIER_PACKED", "0|1"},
      {"GPT2_CLASSIFIER_RING", "0|1"},
      {"GPT2_DECODE_FUSION", "0|1"},
      {"GPT2_DECODE_GRAPHS", "0|1"},
      {"GPT2_DECODE_LOOKAHEAD", "N"},
      {"GPT2_DEVICE_SAMPLING", "0|1"},
      {"GPT2_FP32_MATMUL", "tf32|fp32"},
      {"GPT2_GELU_EPILOGUES", "0|1"},
      {"GPT2_GRADS_OVERWRITE", "0|1"},
      {"GPT2_LAYERNORM_PACKED", "0|1"},
      {"GPT2_LAYERNORM_PREFETCH", "0|1"},
      {"GPT2_LM_HEAD_ROWS", "N"},
      {"GPT2_MATMUL_ALGO_CACHE", "ANY"},
      {"GPT2_MATMUL_AUTOTUNE", "0|1"},
      {"GPT2_MATMUL_AUTOTUNE_CANDIDATES", "N"},
      {"GPT2_MATMUL_AUTOTUNE_SEARCH", "0|1"},
      {"GPT2_NCCL_TIMEOUT_S", "N"},
      {"GPT2_PDL", "0|1"},
      {"GPT2_PORTABLE_ATTENTION", "0|1"},
      {"GPT2_PORTABLE_MATMUL", "0|1"},
      {"GPT2_STREAM_PRIORITY", "0|1"},
      {"GPT2_TRAIN_GRAPHS", "0|1"},
      {"GPT2_UPDATE_BESIDE", "0|1"},
      {"GPT2_UPDATE_ROWS_FIRST", "0|1"},
      {"GPT2_WGRAD_BESIDE", "0|1"},
      // Read by the scripts and tests around the tools.
      {"GPT2_CHROMIUM", "ANY"},
      {"GPT2_DATA_DIR", "ANY"},
      {"GPT2_RUN_PRINT_ONLY", "ANY"},
      {"GPT2_SANITIZE", "ANY"},
      {"GPT2_SERVE_CHECKPOINT", "ANY"},
      {"GPT2_SERVE_PROMPT", "ANY"},
      {"GPT2_SERVE_SCREENSHOT", "ANY"},
      {"GPT2_SERVE_TEST_DELAY_MS", "ANY"},
      {"GPT2_TOKENIZER_VECTORS", "ANY"},
      {"GPT2_TRAIN_ON_GPU", "ANY"},
  };
  return known;
}

namespace {

// The alternatives of "a|b|c".
std::vector<std::string> Alternatives(std::string_view values) {
  std::vector<std::string> out;
  for (size_t at = 0;;) {
    const size_t bar = values.find('|', at);
    out.emplace_back(values.substr(at, bar - at));
    if (bar == std::string_view::npos) return out;
    at = bar + 1;
  }
}

bool Takes(std::string_view values, std::string_view value) {
  // Empty: as if unset, the default (scripts clear a switch that way).
  if (values == "ANY" || value.empty()) return true;
  if (values == "N") {
    int64_t n = 0;
    const auto [end, ec] =
        std::from_chars(value.data(), value.data() + value.size(), n);
    return ec == std::errc() && end == value.data() + value.size() && n >= 1;
  }
  for (const std::string& v : Alternatives(values)) {
    if (v == value) return true;
  }
  return false;
}

std::string Describe(std::string_view values) {
  if (values == "N") return "a whole number from 1 up";
  const std::vector<std::string> v = Alternatives(values);
  if (v.size() == 2) return absl::StrCat(v[0], " or ", v[1]);
  return absl::StrCat("one of ", absl::StrJoin(v, ", "));
}

}  // namespace

EnvProblems CheckEnvSwitches(const char* const* environ) {
  EnvProblems problems;
  if (environ == nullptr) return problems;
  for (const char* const* entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.rfind("GPT2_", 0) != 0) continue;
    const size_t eq = text.find('=');
    const std::string name(text.substr(0, eq));
    const std::string value(eq == std::string_view::npos ? ""
                                                         : text.substr(eq + 1));
    if (name.rfind("GPT2_TEST_", 0) == 0) continue;
    const EnvSwitch* known = nullptr;
    for (const EnvSwitch& s : KnownEnvSwitches()) {
      if (s.name == name) known = &s;
    }
    if (known == nullptr) {
      problems.warnings.push_back(
          absl::StrCat(name,
                       " is set, but no gpt2 tool reads it (a misspelt switch? "
                       "docs/gpu_runbook.md lists them)"));
    } else if (!Takes(known->values, value)) {
      problems.errors.push_back(absl::StrCat(
          name, "=", value, ": ", name, " takes ", Describe(known->values)));
    }
  }
  return problems;
}

}  // namespace gpt2
