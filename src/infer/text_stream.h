// Samples' text as it grows, for streaming it: each call gives what each
// sample gained since the last, up to its last whole UTF-8 character (a token
// can end inside one; the rest of it comes with the next token) and short of
// any ending that could be the start of a stop sequence (held until the next
// tokens tell), and at the end what is left. The pieces, joined, are the
// samples' text byte for byte (SampleText: cut before a stop sequence).
#ifndef GPT2_INFER_TEXT_STREAM_H_
#define GPT2_INFER_TEXT_STREAM_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "src/data/tokenizer.h"
#include "src/infer/generate.h"

namespace gpt2::infer {

class TextStream {
 public:
  TextStream(const Tokenizer* tokenizer, int samples,
             std::vector<std::string> stop = {})
      : tokenizer_(tokenizer), stop_(std::move(stop)), sent_(samples, 0) {}

  // The text each sample gained since the last call ("" where none).
  std::vector<std::string> Take(const std::vector<GeneratedSample>& samples);
  // The text not yet taken (a character cut by the last token), once the
  // samples are final.
  std::vector<std::string> Rest(const std::vector<GeneratedSample>& samples);

 private:
  std::string Text(const GeneratedSample& sample) const;

  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  std::vector<size_t> sent_;  // bytes of each sample's text taken
};

// The length of the longest prefix of `bytes` that does not end inside a
// UTF-8 character.
size_t WholeCharacters(const std::string& bytes);

// The length of the longest ending of `text` that is the start (not the
// whole) of one of the `stop` sequences.
size_t StopPrefixAtEnd(const std::string& text,
                       const std::vector<std::string>& stop);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_TEXT_STREAM_H_
