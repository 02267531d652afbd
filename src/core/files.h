// What the tools check of a path a user names before reading it as a file,
// and how they name files and tools in the commands they print.
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

// How a command line printed for the user names our tool `name`: by the
// folder of the running binary where the tool is there too, relative to the
// working folder where below it ("build/bin/gpt2_sample"), else by name.
std::string SiblingTool(const std::string& name);

// `word` as one shell word: as it is where it holds only characters the shell
// takes literally, else in single quotes ('it'\''s'), or $'...' with C escapes
// where it holds a newline or other control character.
std::string ShellWord(const std::string& word);

}  // namespace gpt2

#endif  // GPT2_CORE_FILES_H_
