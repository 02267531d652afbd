// What the tools check of a path a user names before reading it as a file.
#ifndef GPT2_CORE_FILES_H_
#define GPT2_CORE_FILES_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace gpt2 {

// OkStatus unless `path` names a folder: then InvalidArgument "<path> is a
// folder, not <what>". (std::ifstream opens a folder and reads it as empty,
// so a folder given for a file came out as an empty config, text or list,
// and the error named something else.)
absl::Status NotAFolder(const std::string& path, std::string_view what);

}  // namespace gpt2

#endif  // GPT2_CORE_FILES_H_
