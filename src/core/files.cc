#include "src/core/files.h"

#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace gpt2 {

absl::Status NotAFolder(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a folder, not ", std::string(what)));
  }
  return absl::OkStatus();
}

std::string SiblingTool(const std::string& name) {
  std::error_code ec;
  const std::filesystem::path exe =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec || !std::filesystem::exists(exe.parent_path() / name, ec)) return name;
  std::filesystem::path dir = exe.parent_path();
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  if (!ec) {
    const std::filesystem::path rel = dir.lexically_relative(cwd);
    if (!rel.empty() && *rel.begin() != "..") dir = rel;
  }
  return (dir / name).string();
}

std::string ShellWord(const std::string& word) {
  const bool plain = !word.empty() && absl::c_all_of(word, [](unsigned char c) {
    return absl::ascii_isalnum(c) || std::strchr("@%+=:,./_-", c) != nullptr;
  });
  if (plain) return word;
  if (absl::c_any_of(word,
                     [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    return absl::StrCat("$'", absl::CEscape(word), "'");
  }
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

}  // namespace gpt2
