// The decoder a sampling tool's --device and --precision flags ask for: the
// CPU's own, or the backend decoder over the CUDA backend (in CUDA builds),
// which keeps the backend alive beside it. Shared by gpt2_sample and
// gpt2_serve.
#ifndef GPT2_TOOLS_DECODER_CHOICE_H_
#define GPT2_TOOLS_DECODER_CHOICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "src/backend/backend.h"
#include "src/infer/decoder.h"
#ifdef GPT2_HAVE_CUDA
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#endif

namespace gpt2 {

// The help of the --device, --precision and --data_dir flags the sampling
// tools share.
inline constexpr char kDecodeDeviceHelp[] =
    "auto (GPU 0 if a usable GPU is there, else the CPU), cpu, or cuda (GPU 0, "
    "in a CUDA build): where the model decodes.";
inline constexpr char kDecodePrecisionHelp[] =
    "bf16 or fp32 weights (on a GPU the activations too; on the CPU they stay "
    "fp32, and bf16 weights halve what each token reads).";
inline constexpr char kTokenizerDataDirHelp[] =
    "Data directory holding gpt2/encoder.json and gpt2/vocab.bpe (the "
    "tokenizer). Default: $GPT2_DATA_DIR, else ./data.";

struct DecoderWithBackend {
  std::unique_ptr<Backend> backend;  // null for the CPU decoder
  std::unique_ptr<infer::Decoder> decoder;
};

inline absl::StatusOr<DecoderWithBackend> MakeDecoderFor(
    const std::string& device, const std::string& precision,
    const ModelShape& shape, const std::vector<float>& params, int max_batch) {
  DecoderWithBackend out;
  if (device == "auto") {
    // A usable GPU if there is one (in a CUDA build), else the CPU.
#ifdef GPT2_HAVE_CUDA
    std::string why;
    if (CudaDeviceCount(&why) > 0) {
      return MakeDecoderFor("cuda", precision, shape, params, max_batch);
    }
#endif
    return MakeDecoderFor("cpu", precision, shape, params, max_batch);
  }
  if (precision != "bf16" && precision != "fp32") {
    return absl::InvalidArgumentError("--precision must be bf16 or fp32");
  }
  if (device == "cpu") {
    // bf16 weights halve what each decode step streams from memory (activations
    // stay fp32).
    out.decoder =
        infer::MakeCpuDecoder(shape, params, max_batch,
                              precision == "bf16" ? DType::kBF16 : DType::kF32);
    return out;
  }
#ifdef GPT2_HAVE_CUDA
  if (device == "cuda") {
    std::string why;
    if (CudaDeviceCount(&why) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda: no usable GPU: ", why));
    }
    out.backend = MakeCudaBackend(0);
    out.decoder = infer::MakeBackendDecoder(
        out.backend.get(), precision == "bf16" ? DType::kBF16 : DType::kF32,
        shape, params, max_batch);
    return out;
  }
#endif
  if (device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--device ", device, " is not a device: auto, cpu or cuda"));
  }
  return absl::InvalidArgumentError(
      "--device cuda is not available in this build (built without CUDA; "
      "auto or cpu)");
}

}  // namespace gpt2

#endif  // GPT2_TOOLS_DECODER_CHOICE_H_
