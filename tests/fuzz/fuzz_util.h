// Shared by the fuzz targets (tests/fuzz/*_fuzz.cc): each defines
// LLVMFuzzerTestOneInput, which libFuzzer drives in a -DGPT2_FUZZ=ON build
// (launch/fuzz.sh) and fuzz_replay_main.cc drives in every other build (the
// committed corpus and seeded mutations of it, under ctest).
//
// A target returns normally for every input: a parser's error is a Status, as
// the tools report it. Anything else (a crash, a sanitizer report, a
// GPT2_FUZZ_CHECK that fails, an allocation larger than the input can justify)
// is a finding.
#ifndef GPT2_TESTS_FUZZ_FUZZ_UTIL_H_
#define GPT2_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/data/tokenizer.h"

// An invariant of a target (e.g. Decode(Encode(b)) == b): a failure prints the
// condition and aborts, which both drivers report with the input.
#define GPT2_FUZZ_CHECK(cond)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

namespace gpt2::fuzz {

// The bytes as a file the code under test opens by name: an anonymous memory
// file (memfd) reached as /proc/self/fd/N, never on disk, closed by the
// destructor.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A folder of this process's own under $TMPDIR (else /tmp), made on the first
// call and removed at exit, for targets whose code under test writes files or
// reads a folder.
const std::string& ScratchFolder();

// Writes `bytes` as the file `path` (made or emptied); aborts where it cannot.
void WriteFile(const std::string& path, std::string_view bytes);

// GPT-2's tokenizer from $GPT2_DATA_DIR (else ../shared/data), loaded once;
// the process ends with a message where it cannot be.
const Tokenizer& SharedTokenizer();

// Splits the input at the first occurrence of `separator` (a target that reads
// two files takes both from one input); without it, all of it is `first`.
void SplitInput(std::string_view input, std::string_view separator,
                std::string_view* first, std::string_view* second);

}  // namespace gpt2::fuzz

#endif  // GPT2_TESTS_FUZZ_FUZZ_UTIL_H_
