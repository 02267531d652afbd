// Helpers shared by the tests: random inputs, finite differences, the data
// directory.
#ifndef GPT2_TESTS_TEST_UTIL_H_
#define GPT2_TESTS_TEST_UTIL_H_

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "src/core/rng.h"
#include "src/data/tokenizer.h"

namespace gpt2::testing {

inline std::vector<double> RandomVector(size_t n, uint64_t seed,
                                        double scale = 1.0) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = scale * rng.Normal();
  return v;
}

// Central differences of a scalar function of x, one element at a time.
inline std::vector<double> NumericGradient(std::vector<double>* x,
                                           const std::function<double()>& loss,
                                           double h = 1e-6) {
  std::vector<double> grad(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    const double saved = (*x)[i];
    (*x)[i] = saved + h;
    const double plus = loss();
    (*x)[i] = saved - h;
    const double minus = loss();
    (*x)[i] = saved;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

// Every element within atol + rtol * |expected|; reports the first few misses.
inline void ExpectClose(const std::vector<double>& actual,
                        const std::vector<double>& expected, double rtol,
                        double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int misses = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_TRUE(std::isfinite(actual[i]))
        << what << "[" << i << "] is " << actual[i];
    // (A NaN expected value would fail no comparison.)
    ASSERT_TRUE(std::isfinite(expected[i]))
        << what << ": the expected [" << i << "] is " << expected[i];
    const double tol = atol + rtol * std::fabs(expected[i]);
    if (std::fabs(actual[i] - expected[i]) > tol && ++misses <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << actual[i]
                    << ", expected " << expected[i];
    }
  }
  EXPECT_EQ(misses, 0) << what << ": " << misses << " of " << actual.size()
                       << " elements out of tolerance";
}

inline double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// A learnable token stream for training tests: a fixed cycle of `cycle` tokens
// (spaced by `step` ids) with 10% uniform noise below `vocab`.
inline std::vector<uint16_t> CyclicTokens(size_t n, uint64_t seed, int cycle,
                                          int step, int vocab = 256) {
  Rng rng(seed);
  std::vector<uint16_t> tokens(n);
  for (size_t i = 0; i < n; ++i) {
    tokens[i] = static_cast<uint16_t>(
        rng.Uniform() < 0.1 ? rng.NextU64() % vocab : (i % cycle) * step);
  }
  return tokens;
}

// A fresh folder under the system temp dir, unique to this process (MPI ranks
// each get their own), for a test's shards and run logs.
inline std::filesystem::path MakeTestDir(const std::string& prefix) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    (prefix + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// A whole file as text ("" where it cannot be read).
inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The data directory the tests read: GPT2_DATA_DIR, set by CTest.
inline std::string DataDir() {
  const char* dir = std::getenv("GPT2_DATA_DIR");
  return dir != nullptr ? dir : "data";
}

// Links GPT-2's tokenizer folder (DataDir()/gpt2) into `dir`, for runs whose
// data directory is `dir`. Empty when done; otherwise why not (the files are
// missing), for GTEST_SKIP.
inline std::string LinkTokenizerInto(const std::filesystem::path& dir) {
  const std::filesystem::path tokenizer =
      std::filesystem::path(DataDir()) / "gpt2";
  if (!std::filesystem::exists(tokenizer / "encoder.json")) {
    return "no GPT-2 tokenizer files in " + tokenizer.string() +
           " (GPT2_DATA_DIR)";
  }
  std::filesystem::create_directory_symlink(
      std::filesystem::absolute(tokenizer), dir / "gpt2");
  return "";
}

// GPT-2's tokenizer from the tests' data directory (GPT2_DATA_DIR, which
// CTest sets; FailedPrecondition where it is not set).
inline absl::StatusOr<Tokenizer> TestTokenizer() {
  const char* dir = std::getenv("GPT2_DATA_DIR");
  if (dir == nullptr) {
    return absl::FailedPreconditionError("GPT2_DATA_DIR is not set");
  }
  return Tokenizer::LoadFromDataDir(dir);
}

}  // namespace gpt2::testing

#endif  // GPT2_TESTS_TEST_UTIL_H_
