// Unicode code point classes for GPT-2's pre-tokenizer regex: \p{L}, \p{N} and
// \s (White_Space). The tables behind it are generated into unicode_tables.cc
// by gen_unicode_tables.py, pinned to the Unicode version tiktoken uses.
#ifndef GPT2_DATA_UNICODE_TABLES_H_
#define GPT2_DATA_UNICODE_TABLES_H_

#include <cstdint>

namespace gpt2 {

// The values are fixed: the generator writes them as numbers into its ASCII
// table.
enum class CharClass : uint8_t {
  kOther = 0,       // none of the below: punctuation, symbols, marks, ...
  kLetter = 1,      // general category L* (Lu, Ll, Lt, Lm, Lo)
  kNumber = 2,      // general category N* (Nd, Nl, No)
  kWhitespace = 3,  // Unicode White_Space property (Rust regex's \s)
};

// Class of a Unicode scalar value; anything above U+10FFFF is kOther.
CharClass ClassifyCodepoint(char32_t cp);

// The Unicode version the tables were generated from, e.g. "15.0.0".
extern const char kUnicodeTablesVersion[];

}  // namespace gpt2

#endif  // GPT2_DATA_UNICODE_TABLES_H_
