#include "src/infer/text_stream.h"

#include <algorithm>

#include "src/core/error.h"

namespace gpt2::infer {

size_t WholeCharacters(const std::string& bytes) {
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(bytes[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further
    const size_t length = c < 0x80             ? 1
                          : (c & 0xE0) == 0xC0 ? 2
                          : (c & 0xF0) == 0xE0 ? 3
                          : (c & 0xF8) == 0xF0 ? 4
                                               : 1;  // not UTF-8: as it is
    return length > back ? n - back : n;
  }
  return n;
}

size_t StopPrefixAtEnd(const std::string& text,
                       const std::vector<std::string>& stop) {
  size_t longest = 0;
  for (const std::string& s : stop) {
    if (s.empty()) continue;
    for (size_t n = std::min(s.size() - 1, text.size()); n > longest; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

std::string TextStream::Text(const GeneratedSample& sample) const {
  // The samples come from a decoder of the tokenizer's vocabulary: an id out
  // of it is a programming error, as Decode treats it.
  absl::StatusOr<std::string> text = SampleText(*tokenizer_, sample);
  GPT2_CHECK_MSG(text.ok(), text.status().message());
  return *std::move(text);
}

std::vector<std::string> TextStream::Take(
    const std::vector<GeneratedSample>& samples) {
  std::vector<std::string> gained(samples.size());
  for (size_t i = 0; i < samples.size() && i < sent_.size(); ++i) {
    std::string text = Text(samples[i]);
    // A stopped sample's text is final; another's may end in a stop
    // sequence's start.
    if (samples[i].text_bytes < 0) {
      text.resize(text.size() - StopPrefixAtEnd(text, stop_));
    }
    const size_t whole = WholeCharacters(text);
    if (whole > sent_[i]) {
      gained[i] = text.substr(sent_[i], whole - sent_[i]);
      sent_[i] = whole;
    }
  }
  return gained;
}

std::vector<std::string> TextStream::Rest(
    const std::vector<GeneratedSample>& samples) {
  std::vector<std::string> rest(samples.size());
  for (size_t i = 0; i < samples.size() && i < sent_.size(); ++i) {
    const std::string text = Text(samples[i]);
    rest[i] = text.substr(std::min(sent_[i], text.size()));
    sent_[i] = text.size();
  }
  return rest;
}

}  // namespace gpt2::infer
