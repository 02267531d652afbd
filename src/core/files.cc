#include "src/core/files.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace gpt2 {

absl::Status NotAFolder(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a folder, not ", std::string(what)));
  }
  return absl::OkStatus();
}

}  // namespace gpt2
