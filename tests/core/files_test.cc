// Tests for src/core/files.h: a folder given for a file, and the shell words
// and tool paths of the commands the tools print.
#include "src/core/files.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

TEST(NotAFolder, SaysAFolderIsNotAFile) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const absl::Status status = NotAFolder(dir, "a config file");
  EXPECT_EQ(status.message(), dir + " is a folder, not a config file");
  EXPECT_TRUE(NotAFolder(dir + "/no such file here", "x").ok());
}

TEST(ShellWord, PlainWordsStayAsTheyAre) {
  EXPECT_EQ(ShellWord("ROMEO:"), "ROMEO:");
  EXPECT_EQ(ShellWord("logs/run_1/step_00000300.ckpt"),
            "logs/run_1/step_00000300.ckpt");
  EXPECT_EQ(ShellWord("a=b,c@d%e+f"), "a=b,c@d%e+f");
}

TEST(ShellWord, OthersAreQuoted) {
  EXPECT_EQ(ShellWord(""), "''");
  EXPECT_EQ(ShellWord("First Citizen:"), "'First Citizen:'");
  EXPECT_EQ(ShellWord("$HOME `x` \"y\" *"), "'$HOME `x` \"y\" *'");
  EXPECT_EQ(ShellWord("It's"), "'It'\\''s'");
  EXPECT_EQ(ShellWord("a\nb's"), "$'a\\nb\\'s'");
}

// What bash makes of each word is the word again (bash reads the script: the
// $'...' form is bash's, not sh's).
TEST(ShellWord, BashReadsTheWordBack) {
  if (access("/bin/bash", X_OK) != 0) GTEST_SKIP() << "no /bin/bash here";
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("files_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  for (const char* word :
       {"ROMEO:", "First Citizen:", "It's", "$HOME `x` \"y\" * \\", "a\nb's",
        "tab\there", "caf\xc3\xa9 \x01", "''"}) {
    {
      std::ofstream script(dir / "script.sh", std::ios::binary);
      script << "printf %s " << ShellWord(word) << " > "
             << (dir / "out").string() << "\n";
    }
    ASSERT_EQ(
        std::system(("/bin/bash " + (dir / "script.sh").string()).c_str()), 0)
        << ShellWord(word);
    std::ifstream out(dir / "out", std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(out)), {});
    EXPECT_EQ(got, word) << ShellWord(word);
  }
  std::filesystem::remove_all(dir);
}

TEST(SiblingTool, NamesAToolBesideThisBinaryByItsPath) {
  // This test binary's folder holds no tool of this name: the bare name.
  EXPECT_EQ(SiblingTool("no_such_tool_here"), "no_such_tool_here");
  // It holds the test binary itself: a path that ends in its name.
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe");
  const std::string path = SiblingTool(self.filename().string());
  EXPECT_NE(path, self.filename().string());
  EXPECT_TRUE(std::filesystem::equivalent(path, self)) << path;
}

}  // namespace
}  // namespace gpt2
