// gpt2_prepro's corpus pieces: parallel encoding gives Encode's ids, shards
// hold the stream in order with the val tail held back, inputs expand to
// their files, and JSON-lines documents are read or refused by line.
#include "src/data/corpus.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/data/token_shard.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<uint16_t> ShardTokens(const std::string& path) {
  auto shard = TokenShard::Open(path, 65536);
  EXPECT_TRUE(shard.ok()) << shard.status();
  if (!shard.ok()) return {};
  return {shard->tokens().begin(), shard->tokens().end()};
}

class CorpusTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTestDir("gpt2_corpus_test"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }
  fs::path dir_;
};

// Cut at small pieces, Tiny Shakespeare and a text full of the places where
// a cut would change the pieces (spaces and blank lines around line breaks,
// CRLF, non-ASCII and Unicode spaces) encode to exactly Encode's ids.
TEST_F(CorpusTest, ParallelEncodingIsEncode) {
  auto tokenizer = testing::TestTokenizer();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::string shakespeare = testing::ReadFile(
      fs::path(testing::DataDir()) / "tinyshakespeare/input.txt");
  ASSERT_GT(shakespeare.size(), 1000000u);
  EXPECT_EQ(EncodeInParallel(*tokenizer, shakespeare, 4096),
            tokenizer->Encode(shakespeare));
  std::string tricky;
  const char* lines[] = {"word \n",  "  indented\n", "\n",  "\n\n",
                         "a\r\nb\n", "x\n'tis\n",    "é\n", "\xe3\x80\x80\n",
                         "1999\n",   "tab\t\n",      "ok\n"};
  for (int i = 0; i < 400; ++i) {
    tricky += lines[i % 11];
    tricky += lines[(i * 7) % 11];
    tricky += "The end of line " + std::to_string(i) + "\n";
  }
  for (const size_t piece : {16, 64, 1000}) {
    EXPECT_EQ(EncodeInParallel(*tokenizer, tricky, piece),
              tokenizer->Encode(tricky))
        << piece;
  }
  // A text file read in pieces (as a file too big for memory is): the pieces
  // are the file, in order, only the first starts the document, and their
  // ids joined are the whole file's.
  Write(dir_ / "big.txt", tricky);
  for (const size_t piece : {10, 300, 100000}) {
    std::string joined;
    std::vector<int> ids;
    int pieces = 0;
    const auto take = [&](std::string_view text, const std::string&,
                          bool starts) {
      EXPECT_EQ(starts, pieces == 0);
      ++pieces;
      joined += text;
      for (int id : tokenizer->Encode(text)) ids.push_back(id);
      return absl::OkStatus();
    };
    ASSERT_TRUE(ForEachDocument(Path("big.txt"), "text", take, piece).ok());
    EXPECT_EQ(joined, tricky);
    EXPECT_EQ(ids, tokenizer->Encode(tricky)) << piece;
    if (piece < 1000) EXPECT_GT(pieces, 5) << piece;
    if (piece > tricky.size()) EXPECT_EQ(pieces, 1);
  }
}

TEST_F(CorpusTest, ShardsHoldTheStreamWithTheValTailHeldBack) {
  ShardWriter writer(dir_.string(), "c", 100, 30);
  std::vector<int> all;
  for (int chunk = 0; chunk < 40; ++chunk) {
    std::vector<int> ids;
    for (int k = 0; k < chunk % 13 + 1; ++k) ids.push_back(all.size() + k);
    all.insert(all.end(), ids.begin(), ids.end());
    ASSERT_TRUE(writer.Add(ids).ok());
  }
  ASSERT_TRUE(writer.Finish().ok());
  const int total = static_cast<int>(all.size());  // 253
  ASSERT_EQ(writer.tokens(), total);
  ASSERT_EQ(writer.written().size(), 4u);  // 100, 100, 23 train; 30 val
  std::vector<int> read;
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(writer.written()[s].first,
              dir_.string() + "/c_train_00000" + std::to_string(s) + ".bin");
    for (uint16_t t : ShardTokens(writer.written()[s].first)) read.push_back(t);
  }
  EXPECT_EQ(writer.written()[2].second, total - 200 - 30);
  EXPECT_EQ(writer.written()[3].first, dir_.string() + "/c_val.bin");
  for (uint16_t t : ShardTokens(Path("c_val.bin"))) read.push_back(t);
  EXPECT_EQ(read, all);

  // One shard keeps the plain name; no val shard without val tokens.
  ShardWriter lone(dir_.string(), "lone", 1000, 0);
  ASSERT_TRUE(lone.Add({5, 6, 7}).ok());
  ASSERT_TRUE(lone.Finish().ok());
  ASSERT_EQ(lone.written().size(), 1u);
  EXPECT_EQ(ShardTokens(Path("lone_train.bin")),
            (std::vector<uint16_t>{5, 6, 7}));
  EXPECT_FALSE(fs::exists(Path("lone_train_000000.bin")));
  // Every token to val: an error; ids beyond uint16: an error.
  ShardWriter greedy(dir_.string(), "g", 10, 5);
  ASSERT_TRUE(greedy.Add({1, 2, 3, 4, 5}).ok());
  EXPECT_NE(greedy.Finish().message().find("leaves no train tokens"),
            std::string::npos);
  EXPECT_FALSE(ShardWriter(dir_.string(), "x", 10, 0).Add({70000}).ok());
}

// A run that fails (or is stopped) part-way leaves an earlier run's shards
// under the same name as they were: its own were staged in a hidden folder,
// which is removed (a stopped run's by the next run).
TEST_F(CorpusTest, AFailedRunLeavesTheEarlierRunsShardsAsTheyWere) {
  {
    ShardWriter first(dir_.string(), "c", 10, 5);
    std::vector<int> ids(55, 7);
    ASSERT_TRUE(first.Add(ids).ok());
    ASSERT_TRUE(first.Finish().ok());
  }
  std::map<std::string, std::vector<uint16_t>> before;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    before[entry.path().filename().string()] = ShardTokens(entry.path());
  }
  ASSERT_EQ(before.size(), 6u);  // c_train_000000..4, c_val
  {
    ShardWriter failing(dir_.string(), "c", 4, 0);
    std::vector<int> ids(30, 9);
    ASSERT_TRUE(failing.Add(ids).ok());  // 7 shards staged
    EXPECT_TRUE(fs::exists(dir_ / ".c.partial"));
    // No Finish: the run failed.
  }
  std::map<std::string, std::vector<uint16_t>> after;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    after[entry.path().filename().string()] = ShardTokens(entry.path());
  }
  EXPECT_EQ(after, before);
  // A stopped run's staging folder (a killed process removes nothing): the
  // next run removes it, and says so.
  fs::create_directories(dir_ / ".c.partial");
  Write(dir_ / ".c.partial" / "c_train_000000.bin", "half a shard");
  ShardWriter next(dir_.string(), "c", 100, 0);
  ASSERT_TRUE(next.Add({1, 2, 3}).ok());
  ASSERT_TRUE(next.Finish().ok());
  EXPECT_TRUE(next.cleaned_stopped_run());
  EXPECT_FALSE(fs::exists(dir_ / ".c.partial"));
  EXPECT_EQ(ShardTokens(dir_ / "c_train.bin"),
            (std::vector<uint16_t>{1, 2, 3}));
}

// A second run under the same name leaves only its own shards: an earlier
// run's numbered shards past this run's last, its lone or val shard, go; other
// names stay.
TEST_F(CorpusTest, AnEarlierRunsShardsUnderTheSameNameAreRemoved) {
  auto write_run = [&](int64_t tokens, int64_t shard_tokens, int64_t val) {
    ShardWriter writer(dir_.string(), "c", shard_tokens, val);
    std::vector<int> ids(tokens);
    for (int64_t i = 0; i < tokens; ++i) ids[i] = static_cast<int>(i);
    EXPECT_TRUE(writer.Add(ids).ok());
    EXPECT_TRUE(writer.Finish().ok());
    return writer.removed();
  };
  EXPECT_TRUE(write_run(55, 10, 5).empty());  // c_train_000000..4, c_val
  Write(dir_ / "c_train_notes.bin", "not a shard name of ours");
  Write(dir_ / "cc_train_000000.bin", "another name");
  Write(dir_ / "c_train_000000.bin.bak", "not ours either");
  // Now 3 shards and no val.
  const std::vector<std::string> removed = write_run(30, 10, 0);
  std::vector<std::string> names;
  for (const std::string& path : removed) {
    names.push_back(fs::path(path).filename().string());
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"c_train_000003.bin",
                                      "c_train_000004.bin", "c_val.bin"}));
  for (const char* name :
       {"c_train_000000.bin", "c_train_000002.bin", "c_train_notes.bin",
        "cc_train_000000.bin", "c_train_000000.bin.bak"}) {
    EXPECT_TRUE(fs::exists(dir_ / name)) << name;
  }
  for (const char* name :
       {"c_train_000003.bin", "c_train_000004.bin", "c_val.bin"}) {
    EXPECT_FALSE(fs::exists(dir_ / name)) << name;
  }
  // Then one lone shard (staged as c_train_000000.bin, then renamed): the
  // three numbered ones go.
  EXPECT_EQ(write_run(4, 10, 0).size(), 3u);
  EXPECT_TRUE(fs::exists(dir_ / "c_train.bin"));
  EXPECT_FALSE(fs::exists(dir_ / "c_train_000000.bin"));
  // And numbered again: the lone one goes.
  EXPECT_EQ(write_run(20, 10, 0),
            std::vector<std::string>{(dir_ / "c_train.bin").string()});
}

TEST_F(CorpusTest, InputsExpandToTheirFiles) {
  Write(dir_ / "in/b.txt", "b");
  Write(dir_ / "in/a.jsonl", "{\"text\": \"a\"}\n");
  Write(dir_ / "in/sub/c.txt", "c");
  Write(dir_ / "in/notes.md", "ignored");
  Write(dir_ / "other/z.txt", "z");
  auto files = ExpandCorpusInputs(
      {Path("in"), Path("other/*.txt"), Path("in/notes.md")});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files,
            (std::vector<std::string>{Path("in/a.jsonl"), Path("in/b.txt"),
                                      Path("in/sub/c.txt"), Path("other/z.txt"),
                                      Path("in/notes.md")}));
  fs::create_directories(dir_ / "empty");
  EXPECT_NE(ExpandCorpusInputs({Path("empty")})
                .status()
                .message()
                .find("holds no .txt, .jsonl or .ndjson files"),
            std::string::npos);
  EXPECT_NE(ExpandCorpusInputs({Path("none/*.txt")})
                .status()
                .message()
                .find("matches no file"),
            std::string::npos);
  EXPECT_NE(ExpandCorpusInputs({Path("missing.txt")})
                .status()
                .message()
                .find("no such file"),
            std::string::npos);
}

// What a folder of someone's own files may hold: JSON lines under other
// extensions or in capitals, a link that loops or points nowhere (it threw
// filesystem_error, ending gpt2_prepro), compressed or binary files, a byte
// order mark.
TEST_F(CorpusTest, OddFilesAreReadOrRefusedWithTheReason) {
  Write(dir_ / "odd/A.JSONL", "{\"text\": \"a\"}\n");
  Write(dir_ / "odd/b.ndjson", "{\"text\": \"b\"}\n");
  Write(dir_ / "odd/c.txt", "c");
  fs::create_symlink("loop.txt", dir_ / "odd/loop.txt");  // itself
  fs::create_symlink("gone.txt", dir_ / "odd/dangling.txt");
  auto files = ExpandCorpusInputs({Path("odd")});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files,
            (std::vector<std::string>{Path("odd/A.JSONL"), Path("odd/b.ndjson"),
                                      Path("odd/c.txt")}));
  EXPECT_TRUE(IsJsonLinesFile(Path("odd/A.JSONL")));
  EXPECT_TRUE(IsJsonLinesFile(Path("odd/b.ndjson")));
  EXPECT_FALSE(IsJsonLinesFile(Path("odd/c.txt")));

  std::vector<std::string> docs;
  auto collect = [&](std::string_view doc, const std::string&, bool) {
    docs.emplace_back(doc);
    return absl::OkStatus();
  };
  Write(dir_ / "bom.txt", "\xEF\xBB\xBFtext");
  Write(dir_ / "bom.jsonl", "\xEF\xBB\xBF{\"text\": \"line\"}\n");
  ASSERT_TRUE(ForEachDocument(Path("bom.txt"), "text", collect).ok());
  ASSERT_TRUE(ForEachDocument(Path("bom.jsonl"), "text", collect).ok());
  EXPECT_EQ(docs, (std::vector<std::string>{"text", "line"}));

  Write(dir_ / "z.txt", std::string("\x1f\x8b\x08\x00rest", 8));
  EXPECT_NE(ForEachDocument(Path("z.txt"), "text", collect)
                .message()
                .find("z.txt: not text: it is gzip-compressed"),
            std::string::npos);
  Write(dir_ / "u16.txt", std::string("h\0i\0", 4));
  EXPECT_NE(ForEachDocument(Path("u16.txt"), "text", collect)
                .message()
                .find("NUL byte (at byte 1)"),
            std::string::npos);
}

TEST_F(CorpusTest, JsonLinesAreOneDocumentPerLine) {
  Write(dir_ / "d.jsonl",
        "{\"text\": \"first\\nline\", \"id\": 1}\n\n"
        "{\"id\": 2, \"text\": \"caf\\u00e9\"}\r\n");
  std::vector<std::string> docs, wheres;
  auto collect = [&](std::string_view doc, const std::string& where,
                     bool starts) {
    EXPECT_TRUE(starts);
    docs.emplace_back(doc);
    wheres.push_back(where);
    return absl::OkStatus();
  };
  ASSERT_TRUE(ForEachDocument(Path("d.jsonl"), "text", collect).ok());
  EXPECT_EQ(docs, (std::vector<std::string>{"first\nline", "caf\xc3\xa9"}));
  EXPECT_EQ(wheres[1], Path("d.jsonl") + ":3");
  // Another field name; a line without it; a line that is not JSON.
  Write(dir_ / "e.jsonl", "{\"content\": \"x\"}\n{\"text\": \"y\"}\n");
  docs.clear();
  EXPECT_NE(ForEachDocument(Path("e.jsonl"), "content", collect)
                .message()
                .find("e.jsonl:2: not a JSON object with a string \"content\""),
            std::string::npos);
  EXPECT_EQ(docs, (std::vector<std::string>{"x"}));
  const absl::Status missing = ForEachDocument(
      Path("e.jsonl"), "text", [](std::string_view, const std::string&, bool) {
        return absl::OkStatus();
      });
  EXPECT_NE(missing.message().find("e.jsonl:1: not a JSON object with a "
                                   "string \"text\""),
            std::string::npos)
      << missing;
  Write(dir_ / "f.jsonl", "{\"text\": \"ok\"}\n{\"text\": \n");
  const absl::Status not_json =
      ForEachDocument(Path("f.jsonl"), "text", collect);
  EXPECT_NE(not_json.message().find("f.jsonl:2: not JSON"), std::string::npos);
  // The line is f.jsonl:2's; the parser's "line 1" is not repeated.
  EXPECT_EQ(not_json.message().find("line 1"), std::string::npos) << not_json;
  // Why a line is not one: no such field, or not a string; an empty
  // document is passed over.
  Write(dir_ / "g.jsonl", "{\"text\": \"\"}\n{\"text\": 5}\n");
  docs.clear();
  const absl::Status number = ForEachDocument(Path("g.jsonl"), "text", collect);
  EXPECT_NE(number.message().find("g.jsonl:2: not a JSON object with a string "
                                  "\"text\" (its \"text\" is not a string"),
            std::string::npos)
      << number;
  EXPECT_TRUE(docs.empty());
  EXPECT_NE(missing.message().find("(no field \"text\""), std::string::npos)
      << missing;
  // A text file is one document, as it is.
  Write(dir_ / "t.txt", "whole\n\nfile");
  docs.clear();
  ASSERT_TRUE(ForEachDocument(Path("t.txt"), "text", collect).ok());
  EXPECT_EQ(docs, (std::vector<std::string>{"whole\n\nfile"}));
}

}  // namespace
}  // namespace gpt2
