// Converting a checkpoint's weights to and from other programs' files:
// llm.c's model file (import and export) and a Hugging Face GPT-2 folder
// (export and import). All stream tensor by tensor; none needs the whole model
// in memory.
#ifndef GPT2_CKPT_EXPORT_H_
#define GPT2_CKPT_EXPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/ckpt/checkpoint.h"
#include "src/model/params.h"

namespace gpt2 {

// llm.c's model file: int32 header[256] = {20240326, version, maxT, V, L, NH,
// C, Vp, 0...}, then the 16 parameter tensors in the parameter list's order
// (the same order as llm.c's), fp32 for version 3, bf16 for version 5.
inline constexpr int kLlmcModelMagic = 20240326;
inline constexpr int kLlmcVersionF32 = 3;
inline constexpr int kLlmcVersionBF16 = 5;

// Writes `out_path` as an llm.c version 3 (fp32) model file.
absl::Status ExportLlmc(CheckpointReader* reader, const std::string& out_path);

// Reads an llm.c model file (version 3 or 5) into a weights-only checkpoint
// whose config has the file's model section and other sections default. The
// file does not say how far its weights were trained: `step` (>= 0) is
// recorded as the checkpoint's step.
absl::Status ImportLlmc(const std::string& llmc_path,
                        const std::string& ckpt_path,
                        const CheckpointWriterOptions& options = {},
                        int64_t step = 0);

// Writes out_dir/model.safetensors (fp32, Hugging Face GPT-2 names, Conv1D
// weights transposed to (in, out), wte cut to V rows; lm_head is tied to wte
// and not stored), config.json and tokenizer_config.json. With a non-empty
// `data_dir`, copies its gpt2/encoder.json and gpt2/vocab.bpe to vocab.json
// and merges.txt.
absl::Status ExportHf(CheckpointReader* reader, const std::string& out_dir,
                      const std::string& data_dir);
// The files ExportHf writes (the last two only with a data_dir).
inline constexpr const char* kHfExportFiles[] = {
    "model.safetensors", "config.json", "tokenizer_config.json", "vocab.json",
    "merges.txt"};

// Reads a Hugging Face GPT-2 (a folder holding model.safetensors, or the
// .safetensors file itself; config.json beside it gives the shape) into a
// weights-only fp32 checkpoint, as ImportLlmc does. Tensor names may carry
// "transformer." or not (Hugging Face's gpt2 file has none); F32, F16 and BF16
// are read; the attention-mask buffers and the tied lm_head.weight are
// skipped, and any other tensor is an error. Without config.json the shape
// comes from the tensors with n_head = n_embd / 64, and `note` (if not null)
// says so.
absl::Status ImportHf(const std::string& path, const std::string& ckpt_path,
                      const CheckpointWriterOptions& options = {},
                      int64_t step = 0, std::string* note = nullptr);

// A Hugging Face GPT-2 in memory: its shape (vocab padded as ImportHf pads
// it) and its parameters in the flat layout of BuildParamList(shape), fp32.
struct HfModel {
  ModelShape shape;
  std::vector<float> params;
};
// What ImportHf reads, straight into memory (no checkpoint file): for
// sampling and --init_from.
absl::StatusOr<HfModel> ReadHf(const std::string& path,
                               std::string* note = nullptr);

// Whether `path` is what ImportHf reads: a folder holding model.safetensors,
// or a file that starts like a safetensors file (an 8-byte length, then '{').
bool IsHfModel(const std::string& path);

}  // namespace gpt2

#endif  // GPT2_CKPT_EXPORT_H_
