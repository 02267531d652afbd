// cuBLASLt algorithm choices kept in a file (GPT2_MATMUL_ALGO_CACHE=PATH): a
// run that times its matmuls' algorithms (GPT2_MATMUL_AUTOTUNE,
// GPT2_MATMUL_AUTOTUNE_SEARCH) appends each shape's pick, and a later run on
// the same device and library reads it instead of timing again: no start-up
// cost, and the same algorithms, so the same bits, run after run (and across
// a resume).
//
// One line a choice: "CONTEXT<TAB>KEY<TAB>ALGO", the key's integers
// comma-separated, the algorithm's bytes in hex; each appended with one
// write. Lines of another context (device, library version) or malformed (a
// write cut short) are skipped; for a key written twice the last line wins.
// Plain C++ (the algorithm is opaque bytes here), so it is tested on the CPU.
#ifndef GPT2_OPS_MATMUL_ALGO_CACHE_H_
#define GPT2_OPS_MATMUL_ALGO_CACHE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gpt2 {

class MatmulAlgoCache {
 public:
  // Reads `path` if it exists (a missing file is an empty cache).
  MatmulAlgoCache(std::string path, std::string context);

  // The bytes last stored for `key` in this context, if any.
  std::optional<std::string> Find(const std::vector<int64_t>& key) const;
  // Remembers `algo` for `key` and appends its line to the file; false, with
  // one message to stderr, where the file cannot be written (the choice is
  // still remembered for this run).
  bool Add(const std::vector<int64_t>& key, const std::string& algo);

  // Choices read from the file, and lines skipped (other contexts or
  // malformed), when it was opened.
  int loaded() const { return loaded_; }
  int skipped() const { return skipped_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, context_;
  std::map<std::vector<int64_t>, std::string> choices_;
  int loaded_ = 0, skipped_ = 0;
  bool warned_ = false;
};

}  // namespace gpt2

#endif  // GPT2_OPS_MATMUL_ALGO_CACHE_H_
