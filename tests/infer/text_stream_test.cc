// Streaming text: a character split across tokens is held back until whole,
// the pieces and the rest spell the text byte for byte.
#include "src/infer/text_stream.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gpt2::infer {
namespace {

TEST(TextStream, WholeCharacters) {
  EXPECT_EQ(WholeCharacters(""), 0u);
  EXPECT_EQ(WholeCharacters("abc"), 3u);
  EXPECT_EQ(WholeCharacters("a\xc3"), 1u);              // é cut after 1 of 2
  EXPECT_EQ(WholeCharacters("a\xc3\xa9"), 3u);          // é whole
  EXPECT_EQ(WholeCharacters("a\xe2\x82"), 1u);          // € cut after 2 of 3
  EXPECT_EQ(WholeCharacters("\xf0\x9f\x98"), 0u);       // 😀 cut after 3 of 4
  EXPECT_EQ(WholeCharacters("\xf0\x9f\x98\x80"), 4u);   // 😀 whole
  EXPECT_EQ(WholeCharacters("a\x80\x80\x80\x80"), 5u);  // no lead: as it is
}

TEST(TextStream, HoldsBackASplitCharacter) {
  const char* data = std::getenv("GPT2_DATA_DIR");
  ASSERT_TRUE(data != nullptr) << "GPT2_DATA_DIR is not set";
  auto tokenizer = Tokenizer::LoadFromDataDir(data);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // "café ☕" as tokens whose bytes cut é and ☕ in two: GPT-2's byte
  // tokens for é's two bytes, and ☕ (e2 98 95) as e2 | 98 95.
  auto id_of_byte = [&](unsigned char b) {
    const std::vector<int> ids = tokenizer->Encode(std::string(1, b));
    // A lone byte that is not UTF-8 still encodes to its byte token.
    EXPECT_EQ(ids.size(), 1u);
    return ids[0];
  };
  const std::vector<int> caf = tokenizer->Encode("caf");
  std::vector<int32_t> tokens(caf.begin(), caf.end());
  tokens.push_back(id_of_byte(0xc3));
  tokens.push_back(id_of_byte(0xa9));
  tokens.push_back(tokenizer->Encode(" ")[0]);
  tokens.push_back(id_of_byte(0xe2));
  tokens.push_back(id_of_byte(0x98));
  tokens.push_back(id_of_byte(0x95));
  ASSERT_EQ(tokenizer->Decode(std::vector<int>(tokens.begin(), tokens.end())),
            "caf\xc3\xa9 \xe2\x98\x95");

  TextStream stream(&*tokenizer, 1);
  std::vector<GeneratedSample> samples(1);
  std::vector<std::string> pieces;
  for (size_t n = caf.size(); n <= tokens.size(); ++n) {
    samples[0].tokens.assign(tokens.begin(), tokens.begin() + n);
    pieces.push_back(stream.Take(samples)[0]);
  }
  EXPECT_EQ(pieces, (std::vector<std::string>{"caf", "", "\xc3\xa9", " ", "",
                                              "", "\xe2\x98\x95"}));
  EXPECT_EQ(stream.Rest(samples)[0], "");
  // A sample that ends inside a character: the rest has its bytes.
  TextStream cut(&*tokenizer, 2);
  std::vector<GeneratedSample> two(2);
  two[0].tokens.assign(tokens.begin(), tokens.begin() + caf.size() + 1);
  two[1].tokens.assign(tokens.begin(), tokens.end());
  std::vector<std::string> taken = cut.Take(two);
  EXPECT_EQ(taken[0], "caf");
  EXPECT_EQ(taken[1], "caf\xc3\xa9 \xe2\x98\x95");
  const std::vector<std::string> rest = cut.Rest(two);
  EXPECT_EQ(rest[0], "\xc3");
  EXPECT_EQ(rest[1], "");
  EXPECT_EQ(cut.Take(two), (std::vector<std::string>{"", ""}));
}

}  // namespace
}  // namespace gpt2::infer
