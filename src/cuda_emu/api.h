// Host-side controls of the CUDA emulator: the error reports it produced, and
// the knobs tests use (fatal errors, schedule order, parallel blocks).
// Everything else is the ordinary CUDA runtime API from <cuda_runtime.h>.
#ifndef GPT2_CUDA_EMU_API_H_
#define GPT2_CUDA_EMU_API_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace cuda_emu {

// ---- Reports ----
// Every bug the emulator detects (a barrier not all threads reach, a warp
// collective naming an absent lane, a write outside a cudaMalloc buffer, a bad
// launch configuration, ...) is printed to stderr as "[cuda_emu] ..." and kept
// here so a test can assert on its text. Kernel faults also set a sticky error
// (cudaGetLastError, cudaDeviceSynchronize, ... return it until
// cudaDeviceReset), like a faulting kernel on a GPU.

// Text of the most recent report since the last ClearReports(); "" if none.
std::string LastReport();
// Number of reports since the last ClearReports().
int ReportCount();
void ClearReports();

// When fatal, a kernel fault prints its report and aborts the process instead
// of setting a sticky error (the default is non-fatal so tests can inspect
// failures). The environment variable CUDA_EMU_FATAL=1 sets it at start-up.
void SetFatal(bool fatal);
bool Fatal();

// ---- Scheduling ----
// The threads of a block run as cooperative fibers: each runs until it reaches
// a barrier, a warp collective or its end, then the next runnable thread runs.
// The order in which runnable threads are picked is a knob: kForward (thread 0
// first, the default), kReverse, or kRandom (a seeded shuffle per block). A
// kernel that is correct must give the same results under all three; running a
// test under kReverse/kRandom exposes missing barriers that kForward hides.
// CUDA_EMU_SCHEDULE=forward|reverse|random[:seed] sets it at start-up.
enum class Schedule { kForward, kReverse, kRandom };
void SetSchedule(Schedule schedule, uint64_t seed = 0);
Schedule CurrentSchedule();

// Number of host threads that run the blocks of one launch (default 1: blocks
// run one after another in blockIdx order, which is deterministic). More than
// one runs blocks concurrently; atomics stay atomic, reports may then come from
// any failing block. CUDA_EMU_HOST_THREADS=n sets it at start-up.
void SetHostThreads(int n);
int HostThreads();

// With several host threads: thread 0 of a block sleeps up to this many
// microseconds at one barrier in four (a per-host-thread pseudo-random
// sequence), so blocks overtake one another and an order between blocks that
// is assumed but not enforced shows (default 0: off;
// CUDA_EMU_BLOCK_JITTER_US=n sets it at start-up).
void SetBlockJitter(int microseconds);
int BlockJitter();

// A thread that spins (failed atomicCAS, __nanosleep) while no other thread of
// its block makes progress for this long is reported as a livelock instead of
// hanging the test (default 2 s; CUDA_EMU_SPIN_TIMEOUT_MS sets it at start-up).
void SetSpinTimeout(double seconds);

// cp.async copies (src/cuda/async_copy.cuh) land at once by default, which
// shows a copy issued into a buffer that other threads still read; deferred,
// they land at the CpAsyncWait that retires their group, which shows a read
// that comes before its wait. A correct kernel gives the same results either
// way. CUDA_EMU_DEFERRED_COPIES=1 defers them at start-up.
void SetDeferredCopies(bool deferred);

// When stream work runs. kEager (the default): every launch, async copy,
// event record and wait runs before its call returns, so any two streams are
// ordered by the host's calls. kLazy: work waits in its stream's queue until a
// synchronizing call needs it (a stream, event or device synchronize, a query,
// a wait on an event, cudaMemcpy/cudaMemset and launches on the legacy default
// stream, which wait for the blocking streams, cudaFree; all streams at once
// run oldest first). So work a stream does for another runs only once that
// other stream waits for it: a missing join (a wait on an event recorded
// after the producer) shows as the consumer reading what is not yet written.
// kLazyMain: only blocking streams (created without cudaStreamNonBlocking: a
// program's main streams) hold their work; non-blocking ones (side streams)
// run theirs at once, each wait first running what it waits for: a missing
// fork (a side stream's work not made to wait for the main stream's) shows as
// the side stream reading inputs not yet written. Async
// copies from or to pageable host memory read their source at the call and
// write their destination once the stream has run (as CUDA's staging does),
// from or to pinned memory when they run. A correct program gives the same
// results in all three orders. Launch errors of queued kernels surface as the
// sticky error of a later call. CUDA_EMU_STREAMS=lazy|lazy_main sets it at
// start-up. Switching to kEager runs all queued work.
enum class StreamOrder { kEager, kLazy, kLazyMain };
void SetStreamOrder(StreamOrder order);
StreamOrder CurrentStreamOrder();

// Calls that made the host wait for device work since start-up (stream, event
// and device synchronizes, cudaMemcpy and the other synchronous copies, async
// copies into pageable memory, cudaFree). With lazy streams, also how many of
// them had to run queued work to return (`blocking`: the device may not have
// got there yet; a wait for work an earlier wait already ran costs nothing on
// a device that keeps up), and how many of those left work queued behind them
// (the device has the next work at hand while the host takes the result).
struct HostWaits {
  uint64_t waits = 0;
  uint64_t blocking = 0;
  uint64_t blocking_with_work_queued = 0;
};
HostWaits CountHostWaits();

// Gives a cudaMalloc'd buffer a name that out-of-bounds reports print.
void SetBufferName(const void* device_ptr, const std::string& name);

// Number of kernel launches that ran since start-up (for tests of the helper).
uint64_t LaunchCount();

}  // namespace cuda_emu

#endif  // GPT2_CUDA_EMU_API_H_
