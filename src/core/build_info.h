// Which source the binaries were built from, for the run header, checkpoints
// and --version: a run's logs and files say what made them.
#ifndef GPT2_CORE_BUILD_INFO_H_
#define GPT2_CORE_BUILD_INFO_H_

namespace gpt2 {

// The git commit of the source tree at build time (12 hex digits), with
// "-dirty" where tracked files differed from it; "unknown (...)" outside a
// git checkout. Refreshed at every build (cmake/build_info.cmake).
const char* BuildCommit();

}  // namespace gpt2

#endif  // GPT2_CORE_BUILD_INFO_H_
