// Streaming text: a character split across tokens is held back until whole,
// the pieces and the rest spell the text byte for byte.
#include "src/infer/text_stream.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/infer/generate.h"
#include "tests/test_util.h"

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
  auto tokenizer = testing::TestTokenizer();
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

TEST(TextStream, StopPrefixAtEnd) {
  const std::vector<std::string> stop = {"\n\n", "END"};
  EXPECT_EQ(StopPrefixAtEnd("", stop), 0u);
  EXPECT_EQ(StopPrefixAtEnd("abc", stop), 0u);
  EXPECT_EQ(StopPrefixAtEnd("abc\n", stop), 1u);
  EXPECT_EQ(StopPrefixAtEnd("abcEN", stop), 2u);
  EXPECT_EQ(StopPrefixAtEnd("abcE", stop), 1u);
  // A whole sequence is not a start of one (the generation cut it already).
  EXPECT_EQ(StopPrefixAtEnd("abEND", stop), 0u);
  EXPECT_EQ(StopPrefixAtEnd("x\n", {"\n\n\n", "\n"}), 1u);
  EXPECT_EQ(StopPrefixAtEnd("x\n\n", {"\n\n\n"}), 2u);
  EXPECT_EQ(StopPrefixAtEnd("abc", {}), 0u);
}

// With stop sequences, text that may be a sequence's start is held until the
// next tokens tell; a stopped sample's text ends before its sequence.
TEST(TextStream, HoldsBackWhatMayStartAStopSequence) {
  auto tokenizer = testing::TestTokenizer();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<int32_t> tokens;
  for (const char* piece :
       {"First", " Citizen", ":", "\n", "Before", "\n", "\n", "All"}) {
    const std::vector<int> ids = tokenizer->Encode(piece);
    ASSERT_EQ(ids.size(), 1u) << piece;
    tokens.push_back(ids[0]);
  }
  TextStream stream(&*tokenizer, 1, {"\n\n"});
  std::vector<GeneratedSample> samples(1);
  std::vector<std::string> pieces;
  for (size_t n = 1; n <= 7; ++n) {
    samples[0].tokens.assign(tokens.begin(), tokens.begin() + n);
    if (n == 7) {  // what Generate does: the text cut before "\n\n"
      samples[0].finish = FinishReason::kStop;
      samples[0].text_bytes = std::string("First Citizen:\nBefore").size();
    }
    pieces.push_back(stream.Take(samples)[0]);
  }
  EXPECT_EQ(pieces, (std::vector<std::string>{"First", " Citizen", ":", "",
                                              "\nBefore", "", ""}));
  EXPECT_EQ(stream.Rest(samples)[0], "");
  auto text = SampleText(*tokenizer, samples[0]);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "First Citizen:\nBefore");
  // A sample that ends for another reason gets what was held at the end.
  TextStream held(&*tokenizer, 1, {"\n\nX"});
  samples[0] = GeneratedSample{};
  samples[0].tokens.assign(tokens.begin(), tokens.begin() + 6);
  EXPECT_EQ(held.Take(samples)[0], "First Citizen:\nBefore");
  EXPECT_EQ(held.Rest(samples)[0], "\n");
}

}  // namespace
}  // namespace gpt2::infer
