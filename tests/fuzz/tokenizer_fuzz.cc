// src/data/tokenizer: any bytes through Encode and EncodeWithSpecial must come
// back through Decode unchanged, every id in range; the pre-tokenizer's pieces
// must concatenate back to the text; and any ids (two bytes each, from the
// same input) through DecodeChecked must give a Status for an id out of range,
// never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt2::Tokenizer& tokenizer = gpt2::fuzz::SharedTokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::string joined;
  for (std::string_view piece : gpt2::tokenizer_internal::PreTokenize(text)) {
    GPT2_FUZZ_CHECK(!piece.empty());
    joined.append(piece);
    // The two merge strategies agree, under a made-up rank table of short
    // strings (ties, where two strings hash alike, go leftmost in both).
    const auto rank = [](std::string_view s) {
      if (s.size() > 6) return -1;
      uint32_t h = 2166136261u;
      for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
      return h % 4 == 0 ? -1 : static_cast<int>(h % 100003);
    };
    const std::vector<size_t> linear =
        gpt2::tokenizer_internal::MergeParts(piece, rank, false);
    const std::vector<size_t> heap =
        gpt2::tokenizer_internal::MergeParts(piece, rank, true);
    GPT2_FUZZ_CHECK(linear == heap);
    GPT2_FUZZ_CHECK(!linear.empty() && linear.front() == 0 &&
                    linear.back() == piece.size());
  }
  GPT2_FUZZ_CHECK(joined == text);

  const std::vector<int> ids = tokenizer.Encode(text);
  for (int id : ids) {
    GPT2_FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size());
    GPT2_FUZZ_CHECK(id != gpt2::Tokenizer::kEndOfText);
  }
  GPT2_FUZZ_CHECK(tokenizer.Decode(ids) == text);
  GPT2_FUZZ_CHECK(ids.size() <= size);

  const std::vector<int> special = tokenizer.EncodeWithSpecial(text);
  GPT2_FUZZ_CHECK(tokenizer.Decode(special) == text);

  std::vector<int> raw;
  for (size_t k = 0; k + 1 < size; k += 2) {
    raw.push_back(static_cast<int>(data[k] | (data[k + 1] << 8)));
  }
  const absl::StatusOr<std::string> decoded = tokenizer.DecodeChecked(raw);
  bool in_range = true;
  for (int id : raw) in_range &= id < tokenizer.vocab_size();
  GPT2_FUZZ_CHECK(decoded.ok() == in_range);
  return 0;
}
