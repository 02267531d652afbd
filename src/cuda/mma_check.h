// A check of the tensor-core fragment layout that src/cuda/mma.cuh assumes:
// one warp multiplies known matrices through MmaBf16 and the host compares
// the result. Under the emulator it checks the emulation; on a GPU it checks
// that the hardware agrees with the emulation (tests/cuda runs it in both).
#ifndef GPT2_CUDA_MMA_CHECK_H_
#define GPT2_CUDA_MMA_CHECK_H_

#include <string>

namespace gpt2::cuda {

// Runs D = A (16x16) * B (16x8) + C on the current device, on small integers
// (exact in bf16 and fp32), twice: with fragments loaded per the documented
// layout, and with B's columns permuted to catch a swapped register. Returns
// "" when both match the host product, else a description of the first
// mismatch. Needs sm_80 or newer (or the emulator).
std::string CheckMmaLayout();

// Loads B and A fragments from a shared tile of known values with
// LdMatrixBTrans, LdMatrixATrans, LdMatrixB and LdMatrixA and compares every
// lane's registers with the layout above; "" when they match. Needs sm_80 or
// newer (or the emulator).
std::string CheckLdMatrixLayout();

// Runs common.cuh's WarpSum and WarpMax over one warp of floats of mixed
// magnitudes and compares every lane's result, bit for bit, with the xor
// butterfly done on the host: on a GPU the shuffles, under the emulator its
// one-collective twin. "" when all match.
std::string CheckWarpReductions();

// Compute capability major of the current device (0 where there is none),
// asked once per device.
int CurrentMajor();

// Whether kernels are launched programmatically (GPT2_PDL=1 on an sm_90+
// device; src/cuda/launch.h); false in the emulator.
bool ProgrammaticLaunchOn();

// Whether the current device runs this build's wgmma kernels
// (src/cuda/wgmma.cuh): compiled for sm_90a and running on compute
// capability 9.0 (or the emulator). Asked of the device once per call.
bool WgmmaBuilt();

// Runs the four forms of Wgmma64x64 (A from registers or shared memory, B
// K-major or MN-major, accumulating or not) on small integers in the
// kernels' shared-memory layout and compares each with the host product.
// "" when all match; else the first mismatch, and which other reading of
// the layout (offsets swapped, B transposed) the device's result fits, if
// any. kNoWgmmaHere where WgmmaBuilt is false.
inline constexpr const char* kNoWgmmaHere =
    "no wgmma here (needs the sm_90a build on a 9.0 device)";
std::string CheckWgmmaLayout();

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_MMA_CHECK_H_
