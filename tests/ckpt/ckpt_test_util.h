// Helpers the checkpoint tests share: scratch folders, a tiny model's
// parameter list with random values, and raw file access for corrupting
// files on purpose.
#ifndef GPT2_TESTS_CKPT_CKPT_TEST_UTIL_H_
#define GPT2_TESTS_CKPT_CKPT_TEST_UTIL_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/checkpoint.pb.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/rng.h"
#include "src/model/params.h"

namespace gpt2::testing {

// A fresh folder, removed with everything in it when the object dies.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ =
        std::string(base != nullptr && base[0] ? base : "/tmp") +
        "/gpt2_ckpt_test_XXXXXX";
    path_ = mkdtemp(templ.data()) != nullptr ? templ : "";
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed";
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// L=2, NH=2, C=8, maxT=16, V=50, Vp=64: 2400 parameters.
inline ModelShape TinyShape() { return ModelShape{2, 2, 8, 16, 50, 64}; }

inline ckpt::Header HeaderFor(const ModelShape& s, int64_t step) {
  ckpt::Header h;
  *h.mutable_config()->mutable_model() = ModelConfigOf(s);
  h.set_step(step);
  h.set_tokens_seen(step * 512);
  h.set_world_size(1);
  return h;
}

template <typename T>
std::vector<T> RandomValues(int64_t n, uint64_t seed, double scale = 0.02) {
  Rng rng(seed);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = static_cast<T>(scale * rng.Normal());
  return v;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Replaces the file with a new one (rewriting a truncated file in place makes
// ext4 flush it on close, slowing tests that write thousands of files).
inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

}  // namespace gpt2::testing

#endif  // GPT2_TESTS_CKPT_CKPT_TEST_UTIL_H_
