#include "src/core/threads.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace gpt2 {

void UsePassiveOpenMpWait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): carry on with the default policy.
}

int ShareCpusAmongLocalRanks(int local_ranks) {
  if (local_ranks <= 1 || std::getenv("OMP_NUM_THREADS") != nullptr)
    return omp_get_max_threads();
  cpu_set_t mask;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0 || online < 1)
    return omp_get_max_threads();
  const int mine = CPU_COUNT(&mask);
  if (mine >= online) omp_set_num_threads(std::max(1, mine / local_ranks));
  return omp_get_max_threads();
}

}  // namespace gpt2
