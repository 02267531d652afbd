// src/data/corpus (gpt2_prepro): a corpus file as documents, and a text's
// tokens encoded in parallel pieces. The first input byte picks the file's
// kind (even: .txt, odd: .jsonl with the field "text") and the piece size
// (1 to 128 bytes: small, so that the cuts fall everywhere); the rest is the
// file. A text file comes back as pieces that concatenate to it (less a byte
// order mark), only the first starting the document, unless it is not text
// (NUL bytes, a compressed file's magic: refused); a .jsonl file as its lines'
// "text" strings or an error naming a line; and EncodeInParallel gives exactly
// Encode's ids.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/data/corpus.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool jsonl = data[0] & 1;
  const size_t piece_bytes = 1 + (data[0] >> 1);
  const std::string_view content(reinterpret_cast<const char*>(data + 1),
                                 size - 1);
  const std::string path =
      gpt2::fuzz::ScratchFolder() + (jsonl ? "/corpus.jsonl" : "/corpus.txt");
  gpt2::fuzz::WriteFile(path, content);
  std::string joined;
  int documents = 0, pieces = 0;
  const absl::Status status = gpt2::ForEachDocument(
      path, "text",
      [&](std::string_view text, const std::string& where,
          bool starts_document) {
        GPT2_FUZZ_CHECK(!where.empty());
        documents += starts_document;
        ++pieces;
        if (!jsonl) {
          GPT2_FUZZ_CHECK(starts_document == (pieces == 1));
          joined.append(text);
        }
        return absl::OkStatus();
      },
      piece_bytes);
  // Not text: a NUL byte in the first 512, or a compressed file's magic
  // (refused, naming why); a UTF-8 byte order mark is skipped.
  const std::string_view head = content.substr(0, 512);
  bool not_text = head.find('\0') != std::string_view::npos;
  for (const std::string_view magic :
       {std::string_view("\x1f\x8b"), std::string_view("BZh"),
        std::string_view("\x28\xB5\x2F\xFD"), std::string_view("PK\x03\x04")}) {
    not_text = not_text || head.substr(0, magic.size()) == magic;
  }
  if (not_text) {
    GPT2_FUZZ_CHECK(!status.ok());
    GPT2_FUZZ_CHECK(status.message().find(": not text: ") !=
                    std::string_view::npos);
  } else if (!jsonl) {
    GPT2_FUZZ_CHECK(status.ok());
    const std::string_view bom = "\xEF\xBB\xBF";
    GPT2_FUZZ_CHECK(
        joined == (content.substr(0, 3) == bom ? content.substr(3) : content));
    GPT2_FUZZ_CHECK(documents == (pieces > 0 ? 1 : 0));
  } else if (!status.ok()) {
    GPT2_FUZZ_CHECK(!status.message().empty());
  }
  const gpt2::Tokenizer& tokenizer = gpt2::fuzz::SharedTokenizer();
  GPT2_FUZZ_CHECK(gpt2::EncodeInParallel(tokenizer, content, piece_bytes) ==
                  tokenizer.Encode(content));
  return 0;
}
