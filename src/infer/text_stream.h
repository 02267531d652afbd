// Samples' text as it grows, for streaming it: each call gives what each
// sample gained since the last, up to its last whole UTF-8 character (a token
// can end inside one; the rest of it comes with the next token), and at the
// end what is left. The pieces, joined, are the samples' text byte for byte.
#ifndef GPT2_INFER_TEXT_STREAM_H_
#define GPT2_INFER_TEXT_STREAM_H_

#include <cstddef>
#include <string>
#include <vector>

#include "src/data/tokenizer.h"
#include "src/infer/generate.h"

namespace gpt2::infer {

class TextStream {
 public:
  TextStream(const Tokenizer* tokenizer, int samples)
      : tokenizer_(tokenizer), sent_(samples, 0) {}

  // The text each sample gained since the last call ("" where none).
  std::vector<std::string> Take(const std::vector<GeneratedSample>& samples);
  // The text not yet taken (a character cut by the last token), once the
  // samples are final.
  std::vector<std::string> Rest(const std::vector<GeneratedSample>& samples);

 private:
  std::string Text(const GeneratedSample& sample) const;

  const Tokenizer* tokenizer_;
  std::vector<size_t> sent_;  // bytes of each sample's text taken
};

// The length of the longest prefix of `bytes` that does not end inside a
// UTF-8 character.
size_t WholeCharacters(const std::string& bytes);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_TEXT_STREAM_H_
