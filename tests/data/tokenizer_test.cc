// Tests for the GPT-2 tokenizer (and the SHA-256 helper it is checked with):
// known answers on Tiny Shakespeare, tiktoken-generated vectors, hand-checked
// pre-tokenization, byte-exact round trips and load errors.
//
// Needs the data directory (gpt2/encoder.json, gpt2/vocab.bpe,
// tinyshakespeare/input.txt) from $GPT2_DATA_DIR, else from the compile
// definition GPT2_TEST_DATA_DIR; and tests/data/tokenizer_vectors.txt from
// $GPT2_TOKENIZER_VECTORS, else GPT2_SOURCE_DIR "/tests/data/...", else the
// same path relative to the working directory. Missing data fails the tests.
#include "src/data/tokenizer.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "src/core/sha256.h"

namespace gpt2 {
namespace {

// Like gmock's HasSubstr, without needing gmock.
::testing::AssertionResult Contains(const std::string& text,
                                    const std::string& part) {
  if (text.find(part) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "\"" << text << "\" does not contain \"" << part << "\"";
}

std::string DataDir() {
  if (const char* dir = std::getenv("GPT2_DATA_DIR"); dir && *dir) return dir;
#ifdef GPT2_TEST_DATA_DIR
  return GPT2_TEST_DATA_DIR;
#else
  return "";
#endif
}

std::string VectorsPath() {
  if (const char* path = std::getenv("GPT2_TOKENIZER_VECTORS"); path && *path) {
    return path;
  }
#ifdef GPT2_SOURCE_DIR
  return std::string(GPT2_SOURCE_DIR) + "/tests/data/tokenizer_vectors.txt";
#else
  return "tests/data/tokenizer_vectors.txt";
#endif
}

bool ReadFile(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *contents = buffer.str();
  return true;
}

void WriteFile(const std::string& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// Loads the tokenizer once for the whole binary; every test that needs it
// fails (rather than skips) when the data is missing.
const Tokenizer* SharedTokenizer() {
  static const auto* result = new absl::StatusOr<Tokenizer>([] {
    const std::string dir = DataDir();
    if (dir.empty()) {
      return absl::StatusOr<Tokenizer>(absl::FailedPreconditionError(
          "no data directory: set GPT2_DATA_DIR (or build with "
          "-DGPT2_TEST_DATA_DIR=...)"));
    }
    return Tokenizer::LoadFromDataDir(dir);
  }());
  return result->ok() ? &result->value() : nullptr;
}

std::string LoadStatus() {
  const std::string dir = DataDir();
  if (dir.empty()) return "GPT2_DATA_DIR is not set";
  return Tokenizer::LoadFromDataDir(dir).status().ToString();
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = SharedTokenizer();
    ASSERT_NE(tok_, nullptr)
        << "cannot load the GPT-2 tokenizer: " << LoadStatus();
  }
  const Tokenizer* tok_ = nullptr;
};

std::string FromHex(std::string_view hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes += static_cast<char>(
        std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return bytes;
}

std::string Escape(std::string_view bytes) {
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// SHA-256

TEST(Sha256Test, StandardVectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---------------------------------------------------------------------------
// Known answers

TEST_F(TokenizerTest, VocabularyBasics) {
  EXPECT_EQ(tok_->vocab_size(), 50257);
  EXPECT_EQ(tok_->DecodeToken(198), "\n");
  EXPECT_EQ(tok_->DecodeToken(220), " ");
  EXPECT_EQ(tok_->DecodeToken(0), "!");
  EXPECT_EQ(tok_->DecodeToken(Tokenizer::kEndOfText), "<|endoftext|>");
}

TEST_F(TokenizerTest, ReferenceSentence) {
  const std::vector<int> expected = {15496, 995,   11,   428,   318,
                                     402,   11571, 12,   17,    0,
                                     628,   220,   3274, 22307, 25};
  const std::string text = "Hello world, this is GPT-2!\n\n  First Citizen:";
  EXPECT_EQ(tok_->Encode(text), expected);
  EXPECT_EQ(tok_->Decode(expected), text);
}

TEST_F(TokenizerTest, TinyShakespeare) {
  const std::string path = DataDir() + "/tinyshakespeare/input.txt";
  std::string text;
  ASSERT_TRUE(ReadFile(path, &text)) << "cannot read " << path;

  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = tok_->Encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::cout << "Tiny Shakespeare: " << text.size() << " bytes -> " << ids.size()
            << " tokens in " << seconds * 1000 << " ms\n";

  ASSERT_EQ(ids.size(), 338025u);
  const std::vector<int> first = {5962, 22307, 25,   198,  8421, 356,  5120,
                                  597,  2252,  11,   3285, 502,  2740, 13,
                                  198,  198,   3237, 25,   198,  5248};
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 20), first);
  std::string stream;
  stream.reserve(ids.size() * 2);
  for (int id : ids) {
    stream += static_cast<char>(id & 0xff);
    stream += static_cast<char>(id >> 8);
  }
  EXPECT_EQ(Sha256Hex(stream),
            "25c01b32b32f41897a6359dd222ec114992dc30c357bcafbfe6c56672f76cd31");
  EXPECT_EQ(tok_->Decode(ids), text);
}

TEST_F(TokenizerTest, EndOfText) {
  const std::vector<int> as_text = {27, 91, 437, 1659, 5239, 91, 29};
  EXPECT_EQ(tok_->Encode("<|endoftext|>"), as_text);
  EXPECT_EQ(tok_->EncodeWithSpecial("<|endoftext|>"),
            std::vector<int>{Tokenizer::kEndOfText});
  EXPECT_EQ(tok_->EncodeWithSpecial("a<|endoftext|>b"),
            (std::vector<int>{64, Tokenizer::kEndOfText, 65}));
  EXPECT_EQ(
      tok_->EncodeWithSpecial("<|endoftext|><|endoftext|>\n"),
      (std::vector<int>{Tokenizer::kEndOfText, Tokenizer::kEndOfText, 198}));
  EXPECT_EQ(tok_->Encode("<|endoftext|><|endoftext|>\n"),
            (std::vector<int>{27, 91, 437, 1659, 5239, 91, 6927, 91, 437, 1659,
                              5239, 91, 29, 198}));
  EXPECT_EQ(tok_->EncodeWithSpecial(""), std::vector<int>{});
  EXPECT_EQ(tok_->EncodeWithSpecial("no special"), tok_->Encode("no special"));
  EXPECT_EQ(tok_->Decode({64, Tokenizer::kEndOfText, 65}), "a<|endoftext|>b");
}

// Expected ids from tiktoken itself (see the file's header line).
TEST_F(TokenizerTest, TiktokenVectors) {
  const std::string path = VectorsPath();
  std::string contents;
  ASSERT_TRUE(ReadFile(path, &contents))
      << "cannot read " << path << " (set GPT2_TOKENIZER_VECTORS)";
  std::istringstream lines(contents);
  std::string line;
  int count = 0, line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << path << ":" << line_number;
    const std::string input = FromHex(std::string_view(line).substr(0, tab));
    std::vector<int> expected;
    std::istringstream id_stream(line.substr(tab + 1));
    for (int id; id_stream >> id;) expected.push_back(id);
    EXPECT_EQ(tok_->Encode(input), expected)
        << path << ":" << line_number << " input \"" << Escape(input) << "\"";
    EXPECT_EQ(tok_->Decode(expected), input) << path << ":" << line_number;
    ++count;
  }
  EXPECT_GE(count, 200) << "too few vectors in " << path;
}

// ---------------------------------------------------------------------------
// Pre-tokenization

struct PreTokenizeCase {
  std::string text;
  std::vector<std::string> pieces;
};

TEST(PreTokenizeTest, HandCheckedCases) {
  const std::vector<PreTokenizeCase> cases = {
      {"", {}},
      {"Hello, world!", {"Hello", ",", " world", "!"}},
      // Contractions: lowercase, ASCII apostrophe, only at a piece start.
      {"I'm", {"I", "'m"}},
      {"they'll", {"they", "'ll"}},
      {"we've he'd you're", {"we", "'ve", " he", "'d", " you", "'re"}},
      {"DON'T", {"DON", "'", "T"}},
      {"don't", {"don", "'t"}},
      {"x's's", {"x", "'s", "'s"}},
      {"''s", {"''", "s"}},
      {" 's", {" '", "s"}},
      {"it\xE2\x80\x99s", {"it", "\xE2\x80\x99", "s"}},  // U+2019 is not '
      // Numbers: one run of any length, a space may lead it.
      {"2024", {"2024"}},
      {"in 2024!", {"in", " 2024", "!"}},
      {"3.14", {"3", ".", "14"}},
      {"abc123", {"abc", "123"}},
      {"\xD9\xA1\xD9\xA2 \xE2\x85\xA7", {"\xD9\xA1\xD9\xA2", " \xE2\x85\xA7"}},
      // Whitespace: a run before a word gives its last character back.
      {"a  b", {"a", " ", " b"}},
      {"a\n\n b", {"a", "\n\n", " b"}},
      {"a\n\nb", {"a", "\n", "\n", "b"}},
      {"   a", {"  ", " a"}},
      {"a  ", {"a", "  "}},
      {"a \n", {"a", " \n"}},
      {" ", {" "}},
      {"\tx", {"\t", "x"}},
      {"a\t\tb", {"a", "\t", "\t", "b"}},
      {"x \ty", {"x", " ", "\t", "y"}},
      {"x\t y", {"x", "\t", " y"}},
      {"a\r\nb", {"a", "\r", "\n", "b"}},
      {"!\n\n  First", {"!", "\n\n ", " First"}},
      // Other Unicode whitespace is \s but cannot lead a word.
      {"a\xC2\xA0"
       "b",
       {"a", "\xC2\xA0", "b"}},
      {"a \xC2\xA0"
       "b",
       {"a", " ", "\xC2\xA0", "b"}},
      {"x\xE3\x80\x80y", {"x", "\xE3\x80\x80", "y"}},
      {"\xE2\x80\x8B", {"\xE2\x80\x8B"}},  // U+200B is not White_Space
      // Letters of other scripts; combining marks are not letters.
      {"h\xC3\xA9llo w\xC3\xB6rld", {"h\xC3\xA9llo", " w\xC3\xB6rld"}},
      {"e\xCC\x81", {"e", "\xCC\x81"}},
      {"\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",
       {"\xE4\xBD\xA0\xE5\xA5\xBD", "\xEF\xBC\x8C",
        "\xE4\xB8\x96\xE7\x95\x8C"}},
      {"hi \xF0\x9F\x91\x8B there", {"hi", " \xF0\x9F\x91\x8B", " there"}},
      {"<|endoftext|>", {"<|", "endoftext", "|>"}},
      // Invalid UTF-8: each bad byte is a lone "other" character.
      {"\xFF", {"\xFF"}},
      {"a\xFF"
       "b",
       {"a", "\xFF", "b"}},
      {" \xFF\xFE!", {" \xFF\xFE!"}},
      {"\xE2\x82"
       "a",
       {"\xE2\x82", "a"}},                 // truncated sequence
      {"\xED\xA0\x80", {"\xED\xA0\x80"}},  // encoded surrogate
      {"\xC0\xAF"
       "x",
       {"\xC0\xAF", "x"}},  // overlong
  };
  for (const PreTokenizeCase& c : cases) {
    const std::vector<std::string_view> got =
        tokenizer_internal::PreTokenize(c.text);
    EXPECT_EQ(std::vector<std::string>(got.begin(), got.end()), c.pieces)
        << "text \"" << Escape(c.text) << "\"";
  }
}

// ---------------------------------------------------------------------------
// Round trips

// Random byte strings from a mix of generators: raw bytes (mostly invalid
// UTF-8), valid text of many kinds, control characters, whitespace runs.
std::string RandomText(std::mt19937& rng) {
  static const std::vector<std::string> kAtoms = {
      "a",
      "Z",
      "q",
      "7",
      "0",
      " ",
      "  ",
      "\n",
      "\t",
      "\r\n",
      "'",
      "'s",
      "'ll",
      "!",
      ".",
      ",",
      "?",
      "-",
      "\x01",
      "\x1f",
      "\x7f",
      "\xC2\xA0",
      "\xE3\x80\x80",
      "\xC3\xA9",
      "\xCC\x81",
      "\xE4\xB8\xAD",
      "\xD9\xA1",
      "\xE2\x85\xA7",
      "\xF0\x9F\x98\x80",
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
      "\xE2\x80\x8D",
      "\xEF\xB8\x8F",
      "<|endoftext|>",
      "\xFF",
      "\xC0",
      "\xE2\x82",
      "\xED\xA0\x80",
      "\xF4\x90\x80\x80",
      "\x80"};
  auto uniform = [&rng](int n) {
    return static_cast<int>(rng() % static_cast<uint32_t>(n));
  };
  std::string s;
  const int kind = uniform(4);
  const int length = uniform(kind == 3 ? 400 : 60);
  for (int i = 0; i < length; ++i) {
    switch (kind) {
      case 0:  // any byte
        s += static_cast<char>(uniform(256));
        break;
      case 1:  // atoms
      case 2:
        s += kAtoms[uniform(static_cast<int>(kAtoms.size()))];
        break;
      default:  // long runs of one atom
        s += kAtoms[uniform(8) == 0 ? uniform(static_cast<int>(kAtoms.size()))
                                    : uniform(6)];
        break;
    }
  }
  return s;
}

TEST_F(TokenizerTest, RandomBytesRoundTrip) {
  std::mt19937 rng(20240601);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string text = RandomText(rng);
    std::string joined;
    for (std::string_view piece : tokenizer_internal::PreTokenize(text)) {
      ASSERT_FALSE(piece.empty());
      joined += piece;
    }
    ASSERT_EQ(joined, text) << "pieces do not tile \"" << Escape(text) << "\"";
    const std::vector<int> ids = tok_->Encode(text);
    for (int id : ids) {
      ASSERT_TRUE(id >= 0 && id < Tokenizer::kEndOfText) << id;
    }
    ASSERT_EQ(tok_->Decode(ids), text) << "\"" << Escape(text) << "\"";
    ASSERT_EQ(tok_->Decode(tok_->EncodeWithSpecial(text)), text);
  }
}

TEST_F(TokenizerTest, EveryByteAndLongRuns) {
  for (int b = 0; b < 256; ++b) {
    const std::string text(1, static_cast<char>(b));
    const std::vector<int> ids = tok_->Encode(text);
    ASSERT_EQ(ids.size(), 1u) << b;
    EXPECT_EQ(tok_->DecodeToken(ids[0]), text);
  }
  // 128 KiB in one piece must stay fast: the heap merge is O(n log n), where
  // a quadratic merge would take many seconds here.
  const std::string run(1 << 17, 'a');
  EXPECT_EQ(tok_->Decode(tok_->Encode(run)), run);
  const std::string spaces(1 << 17, ' ');
  EXPECT_EQ(tok_->Decode(tok_->Encode(spaces)), spaces);
}

// The linear and heap merge strategies must pick the same merges.
TEST_F(TokenizerTest, MergeStrategiesAgree) {
  std::unordered_map<std::string, int> ranks;
  for (int id = 0; id < Tokenizer::kEndOfText; ++id) {
    ranks.emplace(tok_->DecodeToken(id), id);
  }
  auto rank = [&ranks](std::string_view bytes) {
    const auto it = ranks.find(std::string(bytes));
    return it == ranks.end() ? -1 : it->second;
  };
  std::mt19937 rng(7);
  static const char kLetters[] = "aeinorst hlz";
  for (int trial = 0; trial < 2000; ++trial) {
    std::string piece;
    const int length = 2 + static_cast<int>(rng() % 150);
    for (int i = 0; i < length; ++i) piece += kLetters[rng() % 12];
    EXPECT_EQ(tokenizer_internal::MergeParts(piece, rank, false),
              tokenizer_internal::MergeParts(piece, rank, true))
        << piece;
  }
  // Ties go to the leftmost pair: "aaa" with only "aa" known is [aa][a].
  auto toy = [](std::string_view bytes) { return bytes == "aa" ? 0 : -1; };
  const std::vector<size_t> expected = {0, 2, 3};
  EXPECT_EQ(tokenizer_internal::MergeParts("aaa", toy, false), expected);
  EXPECT_EQ(tokenizer_internal::MergeParts("aaa", toy, true), expected);
}

// ---------------------------------------------------------------------------
// Decode errors

TEST_F(TokenizerTest, DecodeCheckedRejectsOutOfRange) {
  EXPECT_EQ(tok_->DecodeChecked({15496, 995}).value(), "Hello world");
  const auto too_big = tok_->DecodeChecked({15496, 50257});
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(too_big.status().message()), "50257"));
  EXPECT_FALSE(tok_->DecodeChecked({-1}).ok());
}

TEST_F(TokenizerTest, DecodeOutOfRangeIsFatal) {
  EXPECT_EXIT(tok_->Decode({50300}), ::testing::ExitedWithCode(1),
              "out of range");
  EXPECT_EXIT(tok_->DecodeToken(-1), ::testing::ExitedWithCode(1),
              "out of range");
}

// ---------------------------------------------------------------------------
// Load errors

class TokenizerLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(DataDir().empty()) << "GPT2_DATA_DIR is not set";
    encoder_ = DataDir() + "/gpt2/encoder.json";
    vocab_ = DataDir() + "/gpt2/vocab.bpe";
    ASSERT_TRUE(ReadFile(encoder_, &encoder_text_))
        << "cannot read " << encoder_;
    ASSERT_TRUE(ReadFile(vocab_, &vocab_text_)) << "cannot read " << vocab_;
    tmp_ = ::testing::TempDir() + "/tokenizer_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  // Loads with a replaced encoder.json or vocab.bpe; returns the error text.
  std::string LoadError(const std::string* encoder, const std::string* vocab) {
    std::string encoder_path = encoder_, vocab_path = vocab_;
    if (encoder != nullptr) {
      encoder_path = tmp_ + "_encoder.json";
      WriteFile(encoder_path, *encoder);
    }
    if (vocab != nullptr) {
      vocab_path = tmp_ + "_vocab.bpe";
      WriteFile(vocab_path, *vocab);
    }
    const auto result = Tokenizer::Load(encoder_path, vocab_path);
    EXPECT_FALSE(result.ok());
    return result.ok() ? "" : std::string(result.status().message());
  }

  std::string encoder_, vocab_, encoder_text_, vocab_text_, tmp_;
};

TEST_F(TokenizerLoadTest, MissingFilesNameThePath) {
  auto result = Tokenizer::Load("/nonexistent/encoder.json", vocab_);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(result.status().message()),
                       "/nonexistent/encoder.json"));
  result = Tokenizer::Load(encoder_, "/nonexistent/vocab.bpe");
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(Contains(std::string(result.status().message()),
                       "/nonexistent/vocab.bpe"));
  result = Tokenizer::LoadFromDataDir("/nonexistent");
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(Contains(std::string(result.status().message()),
                       "/nonexistent/gpt2/encoder.json"));
}

TEST_F(TokenizerLoadTest, MalformedJsonNamesFileAndPosition) {
  std::string bad = encoder_text_;
  bad.insert(1, "\n  oops");  // line 2, column 3
  std::string message = LoadError(&bad, nullptr);
  EXPECT_TRUE(Contains(message, tmp_ + "_encoder.json"));
  EXPECT_TRUE(Contains(message, "line 2, column 3"));

  const std::string truncated = encoder_text_.substr(0, 1000);
  message = LoadError(&truncated, nullptr);
  EXPECT_TRUE(Contains(message, "_encoder.json"));
  EXPECT_TRUE(Contains(message, "malformed JSON"));

  const std::string bad_escape = "{\"\\uZZZZ\": 0}";
  EXPECT_TRUE(Contains(LoadError(&bad_escape, nullptr), "\\u escape"));

  const std::string too_few = "{\"a\": 0}";
  EXPECT_TRUE(Contains(LoadError(&too_few, nullptr), "expected 50257 tokens"));
}

TEST_F(TokenizerLoadTest, MalformedVocabNamesFileAndLine) {
  std::string no_header = vocab_text_.substr(vocab_text_.find('\n') + 1);
  std::string message = LoadError(nullptr, &no_header);
  EXPECT_TRUE(Contains(message, "_vocab.bpe: line 1"));

  std::string bad_line = vocab_text_;
  const size_t line3 = bad_line.find('\n', bad_line.find('\n') + 1) + 1;
  bad_line.insert(line3, "x");  // "xĠ a" does not make token 257
  message = LoadError(nullptr, &bad_line);
  EXPECT_TRUE(Contains(message, "_vocab.bpe: line 3"));

  std::string missing_merge = vocab_text_;
  missing_merge.erase(missing_merge.rfind('\n', missing_merge.size() - 2));
  message = LoadError(nullptr, &missing_merge);
  EXPECT_TRUE(Contains(message, "merges"));
}

}  // namespace
}  // namespace gpt2
