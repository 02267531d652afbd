#include "src/core/build_info.h"

namespace gpt2 {

const char* BuildCommit() {
  return
#include "gpt2_build_info.inc"
      ;
}

}  // namespace gpt2
