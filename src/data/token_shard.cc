#include "src/data/token_shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace gpt2 {

TokenShard::TokenShard(TokenShard&& o) noexcept { *this = std::move(o); }

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this == &o) return *this;
  if (map_ != nullptr) munmap(map_, map_bytes_);
  name_ = std::move(o.name_);
  owned_ = std::move(o.owned_);
  map_ = o.map_;
  map_bytes_ = o.map_bytes_;
  size_ = o.size_;
  data_ = map_ != nullptr ? o.data_ : owned_.data();
  o.map_ = nullptr;
  o.data_ = nullptr;
  o.size_ = 0;
  return *this;
}

TokenShard::~TokenShard() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

TokenShard TokenShard::FromTokens(std::vector<uint16_t> tokens,
                                  std::string name) {
  TokenShard shard;
  shard.name_ = std::move(name);
  shard.owned_ = std::move(tokens);
  shard.data_ = shard.owned_.data();
  shard.size_ = shard.owned_.size();
  return shard;
}

absl::StatusOr<TokenShard> TokenShard::Open(const std::string& path,
                                            int vocab_size) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(
        path, ": cannot open token shard: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(
        absl::StrCat(path, ": cannot stat: ", std::strerror(errno)));
  }
  const size_t file_bytes = static_cast<size_t>(st.st_size);
  const size_t header_bytes = kShardHeaderInts * sizeof(int32_t);
  if (file_bytes < header_bytes) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(
        path, ": truncated token shard: ", file_bytes,
        " bytes is smaller than the ", header_bytes, "-byte header"));
  }
  void* map = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  TokenShard shard;
  shard.name_ = path;
  shard.map_ = map;
  shard.map_bytes_ = file_bytes;
  const int32_t* header = static_cast<const int32_t*>(map);
  if (header[0] != kShardMagic) {
    return absl::DataLossError(absl::StrCat(path, ": bad magic ", header[0],
                                            " (a token shard starts with ",
                                            kShardMagic, ")"));
  }
  if (header[1] != kShardVersion) {
    return absl::DataLossError(
        absl::StrCat(path, ": unsupported shard version ", header[1],
                     " (expected ", kShardVersion, ")"));
  }
  if (header[2] < 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": negative token count ", header[2]));
  }
  const size_t count = static_cast<size_t>(header[2]);
  const size_t expected = header_bytes + count * sizeof(uint16_t);
  if (file_bytes != expected) {
    return absl::DataLossError(absl::StrCat(
        path, ": header says ", count, " tokens (", expected,
        " bytes) but the file has ", file_bytes, " bytes",
        file_bytes < expected ? " (truncated)" : " (trailing data)"));
  }
  shard.data_ = reinterpret_cast<const uint16_t*>(
      static_cast<const char*>(map) + header_bytes);
  shard.size_ = count;
  for (size_t i = 0; i < count; ++i) {
    if (shard.data_[i] >= vocab_size) {
      return absl::DataLossError(
          absl::StrCat(path, ": token ", shard.data_[i], " at index ", i,
                       " is outside the vocab (size ", vocab_size, ")"));
    }
  }
  return shard;
}

absl::Status WriteTokenShard(const std::string& path,
                             absl::Span<const uint16_t> tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", tokens.size(), " tokens do not fit one shard"));
  }
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  bool ok = std::fwrite(header, sizeof(header), 1, f) == 1;
  if (ok && !tokens.empty()) {
    ok = std::fwrite(tokens.data(), sizeof(uint16_t), tokens.size(), f) ==
         tokens.size();
  }
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": write failed: ", why));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ExpandShardPattern(
    const std::string& pattern) {
  glob_t g;
  const int rc = glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  if (files.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no token shards match '", pattern, "'"));
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace gpt2
