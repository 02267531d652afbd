// The fuzz targets' driver where libFuzzer is not linked (every build but
// -DGPT2_FUZZ=ON): runs each file of the given corpus folders, then --runs
// inputs made from them by seeded mutations (bit flips, interesting bytes and
// integers, insertions, deletions, copies, splices, the target's dictionary
// words), the same inputs for the same --seed. Every allocation made inside a
// target is bounded (--max_alloc_mb, plus 64 times the input's size): a
// length read from the input must not size a buffer beyond what the input
// holds. On a crash, a failed check or an allocation over the bound, the
// input is written to --crash_dir (default: the current folder) as
// crash-<target>-<hash>, which replays by giving it as a PATH.
//
//   json_fuzz [--runs N] [--seed S] [--max_len BYTES] [--dict FILE] PATH...
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// ---- the allocation bound
// ----------------------------------------------------
std::atomic<size_t> g_alloc_limit{0};  // 0: not inside a target
std::atomic<size_t> g_largest{0};

void CheckAllocation(size_t size);

// ---- what a crash writes out
// --------------------------------------------------- The current input, kept
// where a signal handler can reach it.
const uint8_t* g_input = nullptr;
size_t g_input_size = 0;
char g_crash_path[4096] = {};

uint64_t Fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t k = 0; k < size; ++k) h = (h ^ data[k]) * 1099511628211ull;
  return h;
}

// Async-signal-safe: open, write, close, and a message through write(2).
void SaveInput() {
  if (g_input == nullptr || g_crash_path[0] == '\0') return;
  const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_input_size) {
    const ssize_t n = write(fd, g_input + done, g_input_size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  const char before[] = "fuzz: the input is saved as ";
  (void)!write(2, before, sizeof(before) - 1);
  (void)!write(2, g_crash_path, strlen(g_crash_path));
  (void)!write(2, "\n", 1);
}

void OnFatalSignal(int signal) {
  const char message[] = "fuzz: the target died on a signal\n";
  (void)!write(2, message, sizeof(message) - 1);
  SaveInput();
  ::signal(signal, SIG_DFL);
  raise(signal);
}

void CheckAllocation(size_t size) {
  const size_t limit = g_alloc_limit.load(std::memory_order_relaxed);
  if (limit == 0) return;
  size_t seen = g_largest.load(std::memory_order_relaxed);
  while (size > seen && !g_largest.compare_exchange_weak(seen, size)) {
  }
  if (size > limit) {
    g_alloc_limit.store(0);
    std::fprintf(stderr,
                 "fuzz: an allocation of %zu bytes inside the target, over "
                 "the bound of %zu for an input of %zu bytes\n",
                 size, limit, g_input_size);
    std::abort();
  }
}

// ---- seeded mutations
// -----------------------------------------------------------
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : Next() % n; }
};

using Bytes = std::vector<uint8_t>;

// libFuzzer's dictionary format: one word a line, `name="value"` or
// `"value"`, with \\, \" and \xNN escapes; # comments.
std::vector<Bytes> ReadDictionary(const std::string& path) {
  std::vector<Bytes> words;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "fuzz: cannot read the dictionary %s\n", path.c_str());
    std::exit(2);
  }
  std::string line;
  while (std::getline(in, line)) {
    const size_t open = line.find('"');
    const size_t close = line.rfind('"');
    if (line.empty() || line[0] == '#' || open == std::string::npos ||
        close <= open) {
      continue;
    }
    Bytes word;
    for (size_t k = open + 1; k < close; ++k) {
      if (line[k] == '\\' && k + 1 < close) {
        if (line[k + 1] == 'x' && k + 3 < close) {
          word.push_back(static_cast<uint8_t>(
              std::stoi(line.substr(k + 2, 2), nullptr, 16)));
          k += 3;
        } else {
          word.push_back(static_cast<uint8_t>(line[++k]));
        }
      } else {
        word.push_back(static_cast<uint8_t>(line[k]));
      }
    }
    if (!word.empty()) words.push_back(std::move(word));
  }
  return words;
}

void Mutate(Rng& rng, const std::vector<Bytes>& corpus,
            const std::vector<Bytes>& dictionary, size_t max_len, Bytes* b) {
  static const uint8_t kBytes[] = {0,   1,   0x7f, 0x80, 0xff, '"',  '{', '}',
                                   '[', ']', ',',  ':',  '\\', '\n', '0', '9',
                                   '-', 'e', '.',  ' ',  'u',  '=',  '#'};
  static const int64_t kIntegers[] = {
      0,         1,        -1,         2,         3,         5,
      64,        255,      256,        1024,      4096,      32767,
      65535,     65536,    0x7fffffff, INT32_MIN, 1ll << 32, INT64_MAX,
      INT64_MIN, 20240520, 20240326};
  const int rounds = 1 + static_cast<int>(rng.Below(5));
  for (int r = 0; r < rounds; ++r) {
    const size_t n = b->size();
    switch (rng.Below(10)) {
      case 0:  // flip a bit
        if (n > 0)
          (*b)[rng.Below(n)] ^= static_cast<uint8_t>(1u << rng.Below(8));
        break;
      case 1:  // an interesting byte
        if (n > 0) (*b)[rng.Below(n)] = kBytes[rng.Below(sizeof(kBytes))];
        break;
      case 2: {  // insert random bytes
        const size_t count = 1 + rng.Below(8);
        Bytes insert(count);
        for (uint8_t& x : insert) x = static_cast<uint8_t>(rng.Next());
        b->insert(b->begin() + static_cast<std::ptrdiff_t>(rng.Below(n + 1)),
                  insert.begin(), insert.end());
        break;
      }
      case 3:  // delete a range
        if (n > 0) {
          const size_t at = rng.Below(n);
          const size_t count = 1 + rng.Below(std::min<size_t>(n - at, 64));
          b->erase(b->begin() + static_cast<std::ptrdiff_t>(at),
                   b->begin() + static_cast<std::ptrdiff_t>(at + count));
        }
        break;
      case 4:  // copy a range elsewhere
        if (n > 0) {
          const size_t at = rng.Below(n);
          const size_t count = 1 + rng.Below(std::min<size_t>(n - at, 64));
          const Bytes piece(
              b->begin() + static_cast<std::ptrdiff_t>(at),
              b->begin() + static_cast<std::ptrdiff_t>(at + count));
          b->insert(b->begin() + static_cast<std::ptrdiff_t>(rng.Below(n + 1)),
                    piece.begin(), piece.end());
        }
        break;
      case 5: {  // splice: this input's head, another's tail
        const Bytes& other = corpus[rng.Below(corpus.size())];
        const size_t keep = rng.Below(n + 1);
        const size_t from = rng.Below(other.size() + 1);
        b->resize(keep);
        b->insert(b->end(), other.begin() + static_cast<std::ptrdiff_t>(from),
                  other.end());
        break;
      }
      case 6:  // an interesting integer, little-endian, 2, 4 or 8 bytes
        if (n > 0) {
          const int64_t value = kIntegers[rng.Below(std::size(kIntegers))];
          const size_t width = size_t{2} << rng.Below(3);
          const size_t at = rng.Below(n);
          for (size_t k = 0; k < width && at + k < n; ++k) {
            (*b)[at + k] =
                static_cast<uint8_t>(static_cast<uint64_t>(value) >> (8 * k));
          }
        }
        break;
      case 7:  // an interesting integer as decimal text
      {
        const std::string text =
            std::to_string(kIntegers[rng.Below(std::size(kIntegers))]);
        b->insert(b->begin() + static_cast<std::ptrdiff_t>(rng.Below(n + 1)),
                  text.begin(), text.end());
      } break;
      case 8:  // a dictionary word, inserted or over the bytes there
        if (!dictionary.empty()) {
          const Bytes& word = dictionary[rng.Below(dictionary.size())];
          const size_t at = rng.Below(n + 1);
          if (rng.Below(2) == 0 || at + word.size() > n) {
            b->insert(b->begin() + static_cast<std::ptrdiff_t>(at),
                      word.begin(), word.end());
          } else {
            std::copy(word.begin(), word.end(),
                      b->begin() + static_cast<std::ptrdiff_t>(at));
          }
        }
        break;
      default:  // truncate
        b->resize(rng.Below(n + 1));
        break;
    }
    if (b->size() > max_len) b->resize(max_len);
  }
}

int Usage(const char* argv0, int status = 2) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: %s [--runs N] [--seed S] [--max_len BYTES] "
               "[--max_alloc_mb MB] [--dict FILE] [--crash_dir DIR] PATH...\n"
               "Runs a fuzz target over the files of each PATH (a file or a "
               "folder), then over N seeded mutations of them.\n",
               argv0);
  return status;
}

// A whole non-negative decimal number, else the usage and exit 2.
uint64_t Number(const char* argv0, const std::string& option,
                const std::string& text) {
  uint64_t value = 0;
  const bool digits = !text.empty() && text.size() <= 19 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
  if (digits) value = std::stoull(text);
  if (!digits) {
    std::fprintf(stderr, "fuzz: %s takes a whole number, got '%s'\n",
                 option.c_str(), text.c_str());
    std::exit(Usage(argv0));
  }
  return value;
}

}  // namespace

// Every operator new of the process goes through the bound.
void* operator new(size_t size) {
  CheckAllocation(size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  CheckAllocation(size);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return operator new(size, std::nothrow);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
  long long runs = 1000;
  uint64_t seed = 1;
  size_t max_len = 0;
  size_t max_alloc_mb = 64;
  std::string dict_path, crash_dir = ".";
  std::vector<std::string> paths;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    auto value = [&]() -> std::string {
      if (k + 1 >= argc) std::exit(Usage(argv[0]));
      return argv[++k];
    };
    if (arg == "--runs") {
      runs = static_cast<long long>(Number(argv[0], arg, value()));
    } else if (arg == "--seed") {
      seed = (Number(argv[0], arg, value()));
    } else if (arg == "--max_len") {
      max_len = (Number(argv[0], arg, value()));
    } else if (arg == "--max_alloc_mb") {
      max_alloc_mb = (Number(argv[0], arg, value()));
    } else if (arg == "--dict") {
      dict_path = value();
    } else if (arg == "--crash_dir") {
      crash_dir = value();
    } else if (arg == "--help" || arg == "-h") {
      return Usage(argv[0], 0);
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "fuzz: unknown option %s\n", arg.c_str());
      return Usage(argv[0]);
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.empty()) return Usage(argv[0]);

  std::vector<Bytes> corpus;
  std::vector<std::string> names;
  for (const std::string& path : paths) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const auto& file : files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "fuzz: cannot read %s\n", file.c_str());
        return 2;
      }
      corpus.emplace_back(std::istreambuf_iterator<char>(in),
                          std::istreambuf_iterator<char>());
      names.push_back(file.string());
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "fuzz: no inputs in the given paths\n");
    return 2;
  }
  size_t largest_seed = 0;
  for (const Bytes& b : corpus) largest_seed = std::max(largest_seed, b.size());
  if (max_len == 0) max_len = std::max<size_t>(4096, 2 * largest_seed);
  const std::vector<Bytes> dictionary =
      dict_path.empty() ? std::vector<Bytes>{} : ReadDictionary(dict_path);

  const std::string target = std::filesystem::path(argv[0]).filename().string();
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    ::signal(s, OnFatalSignal);
  }
  const auto run = [&](const Bytes& input) {
    g_input = input.data();
    g_input_size = input.size();
    std::snprintf(
        g_crash_path, sizeof(g_crash_path), "%s/crash-%s-%016llx",
        crash_dir.c_str(), target.c_str(),
        static_cast<unsigned long long>(Fnv1a(input.data(), input.size())));
    g_alloc_limit.store(max_alloc_mb * 1024 * 1024 + 64 * input.size());
    LLVMFuzzerTestOneInput(input.data(), input.size());
    g_alloc_limit.store(0);
  };

  const auto start = std::chrono::steady_clock::now();
  for (const Bytes& input : corpus) run(input);
  Rng rng{seed};
  Bytes input;
  for (long long r = 0; r < runs; ++r) {
    input = corpus[rng.Below(corpus.size())];
    Mutate(rng, corpus, dictionary, max_len, &input);
    run(input);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf(
      "%s: %zu corpus inputs and %lld mutations (seed %llu, up to %zu bytes) "
      "passed in %.1f s; the largest allocation inside the target %zu "
      "bytes\n",
      target.c_str(), corpus.size(), runs,
      static_cast<unsigned long long>(seed), max_len, seconds,
      g_largest.load());
  return 0;
}
