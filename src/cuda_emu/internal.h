// Private interface between the emulator's runtime (runtime.cc: memory,
// streams, errors, reports) and its scheduler (scheduler.cc: launches,
// fibers, barriers, warp collectives). Not for kernel or test code.
#ifndef GPT2_CUDA_EMU_INTERNAL_H_
#define GPT2_CUDA_EMU_INTERNAL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

namespace cuda_emu {
namespace detail {

// The emulated device: an H100 SXM (sm_90).
constexpr int kMaxThreadsPerBlock = 1024;
constexpr int kMaxBlockDimX = 1024;
constexpr int kMaxBlockDimY = 1024;
constexpr int kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimX = 0x7fffffffu;
constexpr unsigned kMaxGridDimYZ = 65535;
constexpr size_t kSmemPerBlockDefault = 48 * 1024;
constexpr size_t kSmemPerBlockOptin = 227 * 1024;
constexpr size_t kSmemPerSm = 228 * 1024;
constexpr size_t kReservedSmemPerBlock = 1024;
constexpr int kSmCount = 132;
constexpr int kMaxThreadsPerSm = 2048;
constexpr int kMaxBlocksPerSm = 32;
constexpr size_t kGlobalMemBytes = 80ull << 30;

// ---- Errors and reports (runtime.cc) ----
// Prints "[cuda_emu] <text>" to stderr and keeps it for LastReport(). A
// `fault` is a kernel bug: it aborts the process when SetFatal(true).
void Report(const std::string& text, bool fault);
// Records a non-sticky error for cudaGetLastError; returns it.
cudaError_t SetLastError(cudaError_t error);
// The device-wide error a faulting kernel leaves (cudaSuccess if none).
cudaError_t StickyError();
void SetStickyError(cudaError_t error);

// ---- Stream work (runtime.cc; see cuda_emu::SetStreamOrder) ----
// The legacy default stream (0) and the per-thread one, which the emulator
// treats alike: their work runs at once, after the blocking streams'.
inline bool IsLegacyStream(cudaStream_t s) {
  return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread;
}
// Whether work submitted to `stream` is queued (lazy streams, not the legacy
// default stream) rather than run at once.
bool QueuesWork(cudaStream_t stream);
// What the legacy default stream does before its work: runs the queued work
// of every blocking stream (nothing when streams are eager).
void SyncWithLegacyStream();
// Runs every stream's queued work (nothing when streams are eager).
void SyncDevice();
// Runs `op` in `stream`'s order: recorded into the graph while the stream
// captures, queued on a lazy stream, else at once (after
// SyncWithLegacyStream on the legacy stream).
void Submit(cudaStream_t stream, std::function<void()> op);
// ---- Stream capture (runtime.cc) ----
// The graph `stream`'s work is recorded into (null when it is not capturing).
CUgraph_st* CaptureOf(cudaStream_t stream);
// For a call a capture does not allow (a synchronization, an allocation, work
// on the legacy stream): while any capture runs, reports it, invalidates the
// running captures (their end then fails) and returns
// cudaErrorStreamCaptureUnsupported; else cudaSuccess.
cudaError_t RefuseInCapture(const std::string& what);

// ---- Runtime state the launcher consults (runtime.cc) ----
bool IsValidStream(cudaStream_t stream);
// The dynamic shared memory a launch of `func` may request.
size_t MaxDynamicSharedMemory(const void* func);
// Checks the guard bytes around every live allocation; reports each damaged
// one as written by `kernel`, repairs it, and returns false if any was.
bool CheckAllGuards(const std::string& kernel);

// ---- Scheduler settings (scheduler.cc) ----
double SpinTimeoutSeconds();

// Shortens a __FILE__ path to its last component for reports.
const char* Basename(const char* path);

}  // namespace detail
}  // namespace cuda_emu

#endif  // GPT2_CUDA_EMU_INTERNAL_H_
