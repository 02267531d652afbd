// Choosing the backend and storage type for a run from train.device and
// train.precision. The CPU-only chooser lives in the core library; the one that
// can pick CUDA lives with the CUDA backend (gpt2_cuda), and tools built with
// CUDA pass it to the trainer.
#ifndef GPT2_BACKEND_SELECT_H_
#define GPT2_BACKEND_SELECT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/backend/backend.h"

namespace gpt2 {

struct BackendChoice {
  std::unique_ptr<Backend> backend;
  DType dtype = DType::kF32;  // params, activations and gradients
  std::string note;  // printed in the run header when the choice needs a word
  int devices_on_node = 0;  // GPUs this node has (0 for the CPU backend)
};

// local_rank picks the GPU of a multi-GPU node.
using BackendChooser = absl::StatusOr<BackendChoice> (*)(
    const config::TrainConfig& train, int local_rank);

// The CPU backend (fp32, or fp64 for checks). device: CUDA is an error naming
// the reason.
absl::StatusOr<BackendChoice> ChooseCpuBackend(const config::TrainConfig& train,
                                               int local_rank);

// CUDA when asked for or (device: AUTO) when a GPU is usable, else the CPU.
// Defined in gpt2_cuda.
absl::StatusOr<BackendChoice> ChooseCudaOrCpuBackend(
    const config::TrainConfig& train, int local_rank);

}  // namespace gpt2

#endif  // GPT2_BACKEND_SELECT_H_
