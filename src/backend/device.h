// Finding out whether a usable CUDA GPU is present, without failing where there
// is no driver (cudaGetDeviceCount returns an error code there, which is not a
// fatal error).
#ifndef GPT2_BACKEND_DEVICE_H_
#define GPT2_BACKEND_DEVICE_H_

#include <string>

namespace gpt2 {

// Number of usable CUDA devices; 0 with a reason in *why when none (no CUDA in
// this build, no driver, no device).
int CudaDeviceCount(std::string* why);

}  // namespace gpt2

#endif  // GPT2_BACKEND_DEVICE_H_
