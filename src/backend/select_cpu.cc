#include "absl/strings/str_cat.h"
#include "src/backend/select.h"

namespace gpt2 {

absl::StatusOr<BackendChoice> ChooseCpuBackend(const config::TrainConfig& train,
                                               int local_rank) {
  BackendChoice choice;
  if (train.device() == config::CUDA) {
    return absl::FailedPreconditionError(
        "train.device is CUDA, but this build has no CUDA backend (it was "
        "built "
        "without the CUDA toolkit); use device: CPU or AUTO");
  }
  if (train.device() != config::CPU)
    choice.note = "this build has no CUDA backend: using the CPU";
  choice.backend = MakeCpuBackend();
  switch (train.precision()) {
    case config::FP64:
      choice.dtype = DType::kF64;
      break;
    case config::BF16:
      choice.dtype = DType::kF32;
      absl::StrAppend(
          &choice.note, choice.note.empty() ? "" : "; ",
          "bf16 is a CUDA precision: the CPU backend trains in fp32");
      break;
    default:
      choice.dtype = DType::kF32;
  }
  return choice;
}

}  // namespace gpt2
