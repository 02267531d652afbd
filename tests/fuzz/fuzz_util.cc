#include "tests/fuzz/fuzz_util.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "google/protobuf/stubs/logging.h"

namespace gpt2::fuzz {
namespace {

// Protobuf logs every string field of invalid UTF-8 it refuses to parse (a
// damaged checkpoint's header): millions of lines over a fuzzing run. The
// parse still fails, and the code under test reports that.
[[maybe_unused]] const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace

MemFile::MemFile(const uint8_t* data, size_t size) {
  fd_ = memfd_create("gpt2_fuzz", MFD_CLOEXEC);
  if (fd_ < 0) {
    std::fprintf(stderr, "memfd_create: %s\n", std::strerror(errno));
    std::abort();
  }
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd_, data + done, size - done);
    if (n <= 0) {
      std::fprintf(stderr, "memfd write: %s\n", std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemFile::~MemFile() { close(fd_); }

const std::string& ScratchFolder() {
  static const std::string* folder = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") +
                          "/gpt2_fuzz_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp: %s\n", std::strerror(errno));
      std::abort();
    }
    // Removed when the process ends normally (a crash leaves it for a look).
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(ScratchFolder(), ignored);
    });
    return new std::string(pattern);
  }();
  return *folder;
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  GPT2_FUZZ_CHECK(out.good());
}

const Tokenizer& SharedTokenizer() {
  static const Tokenizer* tokenizer = [] {
    const char* env = std::getenv("GPT2_DATA_DIR");
    const std::string dir =
        env != nullptr && *env != '\0' ? env : "../shared/data";
    absl::StatusOr<Tokenizer> loaded = Tokenizer::LoadFromDataDir(dir);
    if (!loaded.ok()) {
      std::fprintf(stderr,
                   "fuzz: the tokenizer (set GPT2_DATA_DIR to the data "
                   "directory): %s\n",
                   std::string(loaded.status().message()).c_str());
      std::exit(2);
    }
    return new Tokenizer(*std::move(loaded));
  }();
  return *tokenizer;
}

void SplitInput(std::string_view input, std::string_view separator,
                std::string_view* first, std::string_view* second) {
  const size_t at = input.find(separator);
  if (at == std::string_view::npos) {
    *first = input;
    *second = {};
    return;
  }
  *first = input.substr(0, at);
  *second = input.substr(at + separator.size());
}

}  // namespace gpt2::fuzz
