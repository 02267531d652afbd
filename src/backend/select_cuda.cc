#include "absl/strings/str_cat.h"
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/backend/select.h"

namespace gpt2 {

absl::StatusOr<BackendChoice> ChooseCudaOrCpuBackend(
    const config::TrainConfig& train, int local_rank) {
  if (train.device() == config::CPU) return ChooseCpuBackend(train, local_rank);
  std::string why_no_gpu;
  const int gpus = CudaDeviceCount(&why_no_gpu);
  if (gpus == 0) {
    if (train.device() == config::CUDA) {
      return absl::FailedPreconditionError(absl::StrCat(
          "train.device is CUDA, but no GPU is usable: ", why_no_gpu,
          " (use device: AUTO to fall back to the CPU)"));
    }
    config::TrainConfig cpu = train;
    cpu.set_device(config::CPU);
    auto choice = ChooseCpuBackend(cpu, local_rank);
    if (choice.ok()) {
      choice->note =
          absl::StrCat("no usable GPU (", why_no_gpu, "): using the CPU",
                       choice->note.empty() ? "" : "; ", choice->note);
    }
    return choice;
  }
  // More ranks than GPUs share them round-robin; the trainer then reduces over
  // MPI (NCCL refuses two ranks on one GPU).
  BackendChoice choice;
  choice.devices_on_node = gpus;
  switch (train.precision()) {
    case config::FP64:
      return absl::InvalidArgumentError(
          "train.precision FP64 is a CPU-only check mode; the CUDA backend "
          "trains in "
          "BF16 or FP32");
    case config::BF16:
    case config::PRECISION_UNSPECIFIED:
      choice.dtype =
          DType::kBF16;  // with fp32 master weights and optimizer state
      break;
    default:
      choice.dtype = DType::kF32;
  }
  choice.backend = MakeCudaBackend(local_rank % gpus);
  return choice;
}

}  // namespace gpt2
