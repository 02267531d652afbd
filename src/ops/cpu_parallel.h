// When the CPU ops go multithreaded. Below this much work per call, starting an
// OpenMP team costs more than it saves (and on a loaded 2-core machine, far
// more).
#ifndef GPT2_OPS_CPU_PARALLEL_H_
#define GPT2_OPS_CPU_PARALLEL_H_

#include <cstdint>

namespace gpt2::cpu {
inline constexpr int64_t kParallelMinWork = int64_t{1} << 16;
}  // namespace gpt2::cpu

#endif  // GPT2_OPS_CPU_PARALLEL_H_
