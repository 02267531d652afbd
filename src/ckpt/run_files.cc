#include "src/ckpt/run_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "step_";
constexpr char kSuffix[] = ".ckpt";
constexpr char kTempSuffix[] = ".ckpt.tmp";

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat(dir, ": cannot sync the folder: ", error));
  }
  ::close(fd);
  return absl::OkStatus();
}

// A plain file name: no folder part, not "." or "..".
bool IsPlainName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

std::string CheckpointDir(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

std::string CheckpointFileName(int64_t step) {
  return absl::StrFormat("%s%08d%s", kPrefix, step, kSuffix);
}

std::string CheckpointPath(const std::string& run_dir, int64_t step) {
  return (fs::path(CheckpointDir(run_dir)) / CheckpointFileName(step)).string();
}

int64_t CheckpointStep(const std::string& file_name) {
  if (!absl::StartsWith(file_name, kPrefix) ||
      !absl::EndsWith(file_name, kSuffix)) {
    return -1;
  }
  const std::string digits = file_name.substr(
      sizeof(kPrefix) - 1,
      file_name.size() - (sizeof(kPrefix) - 1) - (sizeof(kSuffix) - 1));
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(c);
      })) {
    return -1;
  }
  int64_t step = -1;
  return absl::SimpleAtoi(digits, &step) ? step : -1;
}

absl::Status UpdateLatest(const std::string& run_dir,
                          const std::string& file_name) {
  const std::string dir = CheckpointDir(run_dir);
  if (!IsPlainName(file_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latest must name a file in ", dir, ", got '", file_name, "'"));
  }
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(dir) / file_name, ec)) {
    return absl::NotFoundError(absl::StrCat(
        dir, "/", file_name, ": no such checkpoint; latest not updated"));
  }
  const std::string latest = (fs::path(dir) / kLatestFileName).string();
  const std::string temp = latest + ".tmp";
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(temp, ": cannot create: ", std::strerror(errno)));
  }
  const std::string text = file_name + "\n";
  std::string error;  // the first failure
  size_t done = 0;
  while (error.empty() && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? std::strerror(errno) : "short write";
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (error.empty() && ::fsync(fd) != 0) error = std::strerror(errno);
  if (::close(fd) != 0 && error.empty()) error = std::strerror(errno);
  if (error.empty() && ::rename(temp.c_str(), latest.c_str()) != 0)
    error = std::strerror(errno);
  if (!error.empty()) {
    ::unlink(temp.c_str());
    return absl::ResourceExhaustedError(
        absl::StrCat(latest, ": cannot update: ", error,
                     "; it still names the previous checkpoint"));
  }
  return SyncDir(dir);
}

namespace {

// The checkpoint the pointer file `latest` (in a checkpoints folder `dir`)
// names; `missing` is the error when there is no such file.
absl::StatusOr<std::string> ReadLatestIn(const std::string& dir,
                                         absl::Status missing) {
  const std::string latest = (fs::path(dir) / kLatestFileName).string();
  std::ifstream in(latest, std::ios::binary);
  if (!in) return missing;
  std::string text(256, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string name(absl::StripAsciiWhitespace(text));
  if (!IsPlainName(name) || CheckpointStep(name) < 0) {
    return absl::DataLossError(
        absl::StrCat(latest, ": does not name a checkpoint file (holds '",
                     absl::CHexEscape(name.substr(0, 64)), "')"));
  }
  const std::string path = (fs::path(dir) / name).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(latest, ": names ", name,
                                            ", which does not exist in ", dir));
  }
  return path;
}

// Whether `path` is a `latest` pointer file itself (what a user who lists a
// checkpoints folder sees beside the step files), rather than a checkpoint.
bool IsLatestFile(const std::string& path) {
  std::error_code ec;
  return fs::path(path).filename() == kLatestFileName &&
         fs::is_regular_file(path, ec);
}

// The checkpoint a `latest` pointer file names, from the folder it is in.
absl::StatusOr<std::string> ReadLatestFile(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  return ReadLatestIn(dir.string(),
                      absl::NotFoundError(absl::StrCat(path, ": cannot read")));
}

}  // namespace

absl::StatusOr<std::string> ReadLatest(const std::string& run_dir) {
  const std::string dir = CheckpointDir(run_dir);
  return ReadLatestIn(dir, absl::NotFoundError(absl::StrCat(
                               (fs::path(dir) / kLatestFileName).string(),
                               ": no such file: run ", run_dir,
                               " has no complete checkpoint to resume from")));
}

absl::StatusOr<std::string> ResolveResume(const std::string& arg,
                                          const std::string& run_dir) {
  if (arg.empty()) {
    return absl::InvalidArgumentError(
        "--resume needs 'latest' or a checkpoint path");
  }
  if (arg == "latest") return ReadLatest(run_dir);
  if (IsLatestFile(arg)) return ReadLatestFile(arg);
  std::error_code ec;
  if (!fs::is_regular_file(arg, ec)) {
    return absl::NotFoundError(absl::StrCat(arg, ": no such checkpoint file"));
  }
  return arg;
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  std::error_code ec;
  if (IsLatestFile(path)) return ReadLatestFile(path);
  // Anything else but a folder is for CheckpointReader::Open to open or
  // refuse.
  if (!fs::is_directory(path, ec)) return path;
  if (fs::exists(fs::path(CheckpointDir(path)) / kLatestFileName, ec)) {
    return ReadLatest(path);
  }
  fs::path folder = fs::path(path).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();  // "a/b/"
  if (folder.filename() == "checkpoints" &&
      fs::exists(folder / kLatestFileName, ec)) {
    return ReadLatest(folder.parent_path().string());
  }
  const bool hugging_face = fs::exists(folder / "model.safetensors", ec);
  return absl::NotFoundError(absl::StrCat(
      path, " is a folder without ", CheckpointDir(path), "/", kLatestFileName,
      " or ", kLatestFileName,
      ": give a checkpoint file, a run folder, or its checkpoints folder",
      hugging_face ? " (this one holds a Hugging Face model.safetensors: "
                     "gpt2_ckpt import --from hf makes a checkpoint of it)"
                   : ""));
}

absl::Status PruneCheckpoints(const std::string& run_dir, int keep_last) {
  GPT2_ASSIGN_OR_RETURN(const std::string latest_path, ReadLatest(run_dir));
  // The newest must be complete before anything older goes.
  GPT2_RETURN_IF_ERROR(CheckpointReader::Open(latest_path).status());
  const std::string latest_name = fs::path(latest_path).filename().string();
  const int64_t latest_step = CheckpointStep(latest_name);
  const std::string dir = CheckpointDir(run_dir);

  std::vector<std::pair<int64_t, std::string>> checkpoints;  // (step, name)
  std::vector<std::string> stale_temps;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name, kTempSuffix)) {
      // Left by a save that never committed; a save of a later step may
      // still be running, so only older ones go.
      const int64_t step =
          CheckpointStep(name.substr(0, name.size() - 4 /* ".tmp" */));
      if (step >= 0 && step <= latest_step) stale_temps.push_back(name);
      continue;
    }
    // keep_last counts this run's checkpoints up to `latest`; a newer step's
    // file is another run's (a fresh run in a reused folder, an abandoned
    // one a resume went back from): left alone, it is not counted (it made
    // this run's own checkpoints go, all but `latest`).
    const int64_t step = CheckpointStep(name);
    if (step >= 0 && step <= latest_step) checkpoints.emplace_back(step, name);
  }
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot list: ", ec.message()));
  }
  std::sort(checkpoints.rbegin(), checkpoints.rend());  // newest first
  std::vector<std::string> doomed = stale_temps;
  if (keep_last >= 1) {
    for (size_t i = static_cast<size_t>(keep_last); i < checkpoints.size();
         ++i) {
      if (checkpoints[i].second != latest_name)
        doomed.push_back(checkpoints[i].second);
    }
  }
  for (const std::string& name : doomed) {
    fs::remove(fs::path(dir) / name, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat(dir, "/", name, ": cannot remove: ", ec.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace gpt2
