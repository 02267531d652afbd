// The emulated CUDA runtime: memory (cudaMalloc poison, copies of every kind,
// bounds checks), streams and events, device properties, error strings.
// Runs on the CPU emulator, not a GPU.
#include <cuda_runtime.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "src/cuda_emu/api.h"
#include "tests/cuda_emu/emu_test_util.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

using ::testing::HasSubstr;

using EmuRuntime = EmuTest;

TEST_F(EmuRuntime, MallocIsAlignedAndPoisoned) {
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 1000), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  std::vector<unsigned char> host(1000);
  ASSERT_EQ(cudaMemcpy(host.data(), p, 1000, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (unsigned char c : host) ASSERT_EQ(c, 0xff);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
}

TEST_F(EmuRuntime, CopiesOfEveryKind) {
  std::vector<int> a = {1, 2, 3, 4}, b(4, 0);
  DeviceBuffer<int> d1(4), d2(4);
  ASSERT_EQ(cudaMemcpy(d1.get(), a.data(), 16, cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d2.get(), d1.get(), 16, cudaMemcpyDeviceToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(b.data(), d2.get(), 16, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(b, a);
  std::vector<int> c(4, 0);
  ASSERT_EQ(cudaMemcpy(c.data(), d1.get(), 16, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(c, a);
  std::vector<int> h(4, 0);
  ASSERT_EQ(cudaMemcpy(h.data(), a.data(), 16, cudaMemcpyHostToHost),
            cudaSuccess);
  EXPECT_EQ(h, a);
  ASSERT_EQ(cudaMemset(d1.get(), 0, 16), cudaSuccess);
  EXPECT_EQ(d1.Download(), std::vector<int>(4, 0));
}

TEST_F(EmuRuntime, CopyBoundsAndDirectionAreChecked) {
  DeviceBuffer<int> d(4);
  std::vector<int> host(8, 0);
  EXPECT_EQ(cudaMemcpy(d.get(), host.data(), 20, cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("run past its end"));
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not sticky
  // Host and device swapped.
  EXPECT_EQ(cudaMemcpy(host.data(), d.get(), 16, cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_THAT(cuda_emu::LastReport(),
              HasSubstr("not in any cudaMalloc buffer"));
  EXPECT_EQ(cudaMemset(d.get() + 2, 0, 9), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST_F(EmuRuntime, FreeOfUnknownPointerAndDoubleFree) {
  int x = 0;
  EXPECT_EQ(cudaFree(&x), cudaErrorInvalidValue);
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 8), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("double free"));
  cudaGetLastError();
}

// Writes past a buffer that no launch caught are still found when it is freed
// (under AddressSanitizer, at the write: the guard bytes are poisoned).
TEST_F(EmuRuntime, FreeChecksGuards) {
  unsigned char* p = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), 10), cudaSuccess);
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_DEATH(p[10] = 0, "use-after-poison");
  EXPECT_EQ(cudaFree(p), cudaSuccess);
#else
  p[10] = 0;  // host code scribbling past the end
  EXPECT_EQ(cudaFree(p), cudaErrorIllegalAddress);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("past its end"));
#endif
}

TEST_F(EmuRuntime, PinnedHostMemory) {
  int* h = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&h), 4 * sizeof(int)),
            cudaSuccess);
  for (int i = 0; i < 4; ++i) h[i] = i;
  DeviceBuffer<int> d(4);
  ASSERT_EQ(cudaMemcpy(d.get(), h, 16, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(d.Download(), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue)
      << "pinned memory needs cudaFreeHost";
  EXPECT_EQ(cudaFreeHost(h), cudaSuccess);
  cudaGetLastError();
}

TEST_F(EmuRuntime, StreamsAndEventsKeepOrder) {
  cudaStream_t s1, s2;
  ASSERT_EQ(cudaStreamCreate(&s1), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t start, produced, end;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&produced), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&end), cudaSuccess);

  DeviceBuffer<int> a(256), b(256);
  std::vector<int> zeros(256, 0), got(256, -5);
  ASSERT_EQ(cudaEventRecord(start, s1), cudaSuccess);
  ASSERT_EQ(
      cudaMemcpyAsync(a.get(), zeros.data(), 1024, cudaMemcpyHostToDevice, s1),
      cudaSuccess);
  ASSERT_EQ(LaunchFill(2, 128, 0, s1, a.get(), 42), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(produced, s1), cudaSuccess);
  // s2 consumes what s1 produced, after waiting for the event.
  ASSERT_EQ(cudaStreamWaitEvent(s2, produced, 0), cudaSuccess);
  ASSERT_EQ(
      cudaMemcpyAsync(b.get(), a.get(), 1024, cudaMemcpyDeviceToDevice, s2),
      cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(a.get(), 0, 1024, s2), cudaSuccess);
  ASSERT_EQ(
      cudaMemcpyAsync(got.data(), b.get(), 1024, cudaMemcpyDeviceToHost, s2),
      cudaSuccess);
  ASSERT_EQ(cudaEventRecord(end, s2), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s2), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(end), cudaSuccess);
  EXPECT_EQ(got, std::vector<int>(256, 42));
  EXPECT_EQ(a.Download(), zeros);

  float ms = -1.0f, back = 1.0f;
  ASSERT_EQ(cudaEventElapsedTime(&ms, start, end), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  ASSERT_EQ(cudaEventElapsedTime(&back, end, start), cudaSuccess);
  EXPECT_LE(back, 0.0f);
  EXPECT_EQ(cudaEventQuery(end), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s1), cudaSuccess);

  for (cudaEvent_t e : {start, produced, end})
    EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s1), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s2), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s2), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
}

TEST_F(EmuRuntime, EventErrors) {
  cudaEvent_t unrecorded, recorded, no_timing;
  ASSERT_EQ(cudaEventCreate(&unrecorded), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&recorded), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&no_timing, cudaEventDisableTiming),
            cudaSuccess);
  ASSERT_EQ(cudaEventRecord(recorded, 0), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(no_timing, 0), cudaSuccess);
  float ms;
  EXPECT_EQ(cudaEventElapsedTime(&ms, unrecorded, recorded),
            cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventElapsedTime(&ms, recorded, no_timing),
            cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventDestroy(unrecorded), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(unrecorded, 0), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
}

TEST_F(EmuRuntime, HostFunctionRunsInStreamOrder) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  DeviceBuffer<int> d(32);
  ASSERT_EQ(LaunchFill(1, 32, 0, s, d.get(), 3), cudaSuccess);
  int calls = 0;
  ASSERT_EQ(cudaLaunchHostFunc(
                s, [](void* p) { ++*static_cast<int*>(p); }, &calls),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// ---- Lazy streams (cuda_emu::SetStreamOrder) ----
// Emulated device memory is host memory: these tests look at it directly to
// see whether queued work has run, which no GPU program may do.

TEST_F(EmuRuntime, LazyStreamsRunWorkWhenItIsNeeded) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  DeviceBuffer<int> d(std::vector<int>(64, 0));
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 7), cudaSuccess);
  EXPECT_EQ(d.get()[0], 0) << "the launch ran before anything needed it";
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(d.get()[63], 7);
  // cudaMemcpy (the legacy stream) waits for the blocking streams' work.
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 8), cudaSuccess);
  EXPECT_EQ(d.get()[0], 7);
  EXPECT_EQ(d.Download(), std::vector<int>(64, 8));
  // A host function runs in its stream's order, not at its call.
  int calls = 0;
  ASSERT_EQ(cudaLaunchHostFunc(
                s, [](void* p) { ++*static_cast<int*>(p); }, &calls),
            cudaSuccess);
  EXPECT_EQ(calls, 0);
  // A query does not wait: "not ready" while work is queued (which then runs,
  // so that a poller gets to the end).
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cudaStreamQuery(s), cudaSuccess);
  // Destroying a stream runs what it still holds.
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 9), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(d.get()[5], 9);
}

// A program's main stream (created first, blocking), a non-blocking side
// stream and an event between them, destroyed at the end of the test.
struct MainAndSide {
  MainAndSide() {
    EXPECT_EQ(cudaStreamCreate(&main_stream), cudaSuccess);
    EXPECT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking),
              cudaSuccess);
    EXPECT_EQ(cudaEventCreate(&event), cudaSuccess);
  }
  ~MainAndSide() {
    EXPECT_EQ(cudaEventDestroy(event), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(main_stream), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(side), cudaSuccess);
  }
  cudaStream_t main_stream = nullptr, side = nullptr;
  cudaEvent_t event = nullptr;
};

TEST_F(EmuRuntime, LazyStreamsAreOrderedOnlyByEvents) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  MainAndSide streams;
  cudaStream_t main_stream = streams.main_stream, side = streams.side;
  cudaEvent_t produced = streams.event;
  DeviceBuffer<int> a(std::vector<int>(64, 0)), b(std::vector<int>(64, 0));

  // The legacy stream does not wait for a non-blocking stream.
  ASSERT_EQ(LaunchFill(1, 64, 0, side, a.get(), 5), cudaSuccess);
  EXPECT_EQ(a.Download(), std::vector<int>(64, 0));
  ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
  EXPECT_EQ(a.Download(), std::vector<int>(64, 5));

  // A join: main waits for the side stream's event, then reads a.
  ASSERT_EQ(LaunchFill(1, 64, 0, side, a.get(), 9), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(produced, side), cudaSuccess);
  ASSERT_EQ(LaunchFill(1, 64, 0, side, a.get(), 10), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(main_stream, produced, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(b.get(), a.get(), 256, cudaMemcpyDeviceToDevice,
                            main_stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(main_stream), cudaSuccess);
  EXPECT_EQ(b.Download(), std::vector<int>(64, 9))
      << "main ran up to the event's record on the side stream, no further";
  ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
  EXPECT_EQ(a.Download(), std::vector<int>(64, 10));

  // No join: main's copy runs before the side stream's fill.
  ASSERT_EQ(LaunchFill(1, 64, 0, side, a.get(), 11), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(b.get(), a.get(), 256, cudaMemcpyDeviceToDevice,
                            main_stream),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(b.Download(), std::vector<int>(64, 10));
  EXPECT_EQ(a.Download(), std::vector<int>(64, 11));

  // Timing a record that has not run is "not ready"; querying it runs it.
  cudaEvent_t start, end;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&end), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(start, main_stream), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(end, main_stream), cudaSuccess);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, end), cudaErrorNotReady);
  EXPECT_EQ(cudaEventQuery(end), cudaErrorNotReady);
  EXPECT_EQ(cudaEventQuery(end), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, end), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  cudaEventDestroy(start);
  cudaEventDestroy(end);
  cudaGetLastError();

  // An event destroyed before its record runs is harmless.
  cudaEvent_t dropped;
  ASSERT_EQ(cudaEventCreate(&dropped), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(dropped, main_stream), cudaSuccess);
  ASSERT_EQ(cudaEventDestroy(dropped), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(produced), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(main_stream), cudaSuccess);
}

// Stream capture: work issued to a capturing stream, and to a stream that
// joins the capture by waiting on an event recorded in it, is recorded, not
// run; each launch of the instantiated graph runs it in issue order (so the
// side stream's copy sees the first fill, not the second), in the eager and
// the lazy stream orders.
TEST_F(EmuRuntime, CapturedWorkRunsAtEachGraphLaunch) {
  for (const auto order :
       {cuda_emu::StreamOrder::kEager, cuda_emu::StreamOrder::kLazy}) {
    cuda_emu::SetStreamOrder(order);
    MainAndSide streams;
    cudaStream_t s = streams.main_stream, side = streams.side;
    cudaEvent_t join;
    ASSERT_EQ(cudaEventCreate(&join), cudaSuccess);
    DeviceBuffer<int> a(std::vector<int>(64, 0)), b(std::vector<int>(64, -1));
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
              cudaSuccess);
    ASSERT_EQ(LaunchFill(1, 64, 0, s, a.get(), 5), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(streams.event, s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, streams.event, 0), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(b.get(), a.get(), 64 * sizeof(int),
                              cudaMemcpyDeviceToDevice, side),
              cudaSuccess);
    ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    ASSERT_EQ(LaunchFill(1, 64, 0, s, a.get(), 6), cudaSuccess);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    ASSERT_EQ(cudaStreamIsCapturing(side, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusActive);
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
    ASSERT_NE(graph, nullptr);
    ASSERT_EQ(cudaStreamIsCapturing(side, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusNone);
    EXPECT_EQ(a.Download(), std::vector<int>(64, 0)) << "captured work ran";
    EXPECT_EQ(b.Download(), std::vector<int>(64, -1)) << "captured work ran";
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    for (int launch = 0; launch < 2; ++launch) {
      b.Upload(std::vector<int>(64, -1));
      ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
      EXPECT_EQ(b.Download(), std::vector<int>(64, 5)) << launch;
      EXPECT_EQ(a.Download(), std::vector<int>(64, 6)) << launch;
    }
    // After the capture the side stream runs its own work again.
    ASSERT_EQ(LaunchFill(1, 64, 0, side, b.get(), 9), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
    EXPECT_EQ(b.Download(), std::vector<int>(64, 9));
    EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
    EXPECT_EQ(cudaGraphExecDestroy(exec), cudaErrorInvalidResourceHandle);
    cudaGetLastError();  // that error is not sticky: clear it
    EXPECT_EQ(cudaEventDestroy(join), cudaSuccess);
  }
  cudaGetLastError();
}

// A graph keeps only the order its capture recorded: launched on a lazy
// stream, each stream of the capture replays on a lane of its own, so work
// that the capture did not make wait for another stream's work reads what
// was there before it (as a GPU may run it); issued in the same order but
// waited for, it reads the other stream's result. An eager launch runs the
// issue order, where both read it.
TEST_F(EmuRuntime, LazyGraphLaunchKeepsOnlyTheCapturedOrder) {
  for (const auto order :
       {cuda_emu::StreamOrder::kEager, cuda_emu::StreamOrder::kLazy}) {
    for (const bool waits : {false, true}) {
      cuda_emu::SetStreamOrder(order);
      MainAndSide streams;
      cudaStream_t s = streams.main_stream, side = streams.side;
      cudaEvent_t filled, join;
      ASSERT_EQ(cudaEventCreate(&filled), cudaSuccess);
      ASSERT_EQ(cudaEventCreate(&join), cudaSuccess);
      DeviceBuffer<int> b(std::vector<int>(64, -1)), c(std::vector<int>(64, 0));
      ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
                cudaSuccess);
      ASSERT_EQ(cudaEventRecord(streams.event, s), cudaSuccess);
      ASSERT_EQ(cudaStreamWaitEvent(side, streams.event, 0), cudaSuccess);
      ASSERT_EQ(LaunchFill(1, 64, 0, side, b.get(), 7), cudaSuccess);
      ASSERT_EQ(cudaEventRecord(filled, side), cudaSuccess);
      if (waits) {
        ASSERT_EQ(cudaStreamWaitEvent(s, filled, 0), cudaSuccess);
      }
      ASSERT_EQ(cudaMemcpyAsync(c.get(), b.get(), 64 * sizeof(int),
                                cudaMemcpyDeviceToDevice, s),
                cudaSuccess);
      ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
      ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
      cudaGraph_t graph = nullptr;
      ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
      cudaGraphExec_t exec = nullptr;
      ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
      ASSERT_EQ(cudaGraphDestroy(graph), cudaSuccess);
      const bool stale = order == cuda_emu::StreamOrder::kLazy && !waits;
      for (int launch = 0; launch < 2; ++launch) {
        b.Upload(std::vector<int>(64, -1));
        ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
        EXPECT_EQ(c.Download(), std::vector<int>(64, stale ? -1 : 7))
            << "lazy " << (order == cuda_emu::StreamOrder::kLazy) << ", waits "
            << waits << ", launch " << launch;
        EXPECT_EQ(b.Download(), std::vector<int>(64, 7)) << "joined at the end";
      }
      EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
      EXPECT_EQ(cudaEventDestroy(filled), cudaSuccess);
      EXPECT_EQ(cudaEventDestroy(join), cudaSuccess);
    }
  }
  cudaGetLastError();
}

// What a capture does not allow is refused and invalidates it (its end then
// fails), as CUDA does: synchronizing the capturing stream, cudaMalloc, a
// copy from pageable memory, a wait on an event recorded outside it; and an
// end on a stream that began none.
TEST_F(EmuRuntime, CaptureRefusesWhatItCannotRecord) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  cudaEvent_t outside;
  ASSERT_EQ(cudaEventCreate(&outside), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(outside, s), cudaSuccess);
  DeviceBuffer<int> d(std::vector<int>(16, 0));
  std::vector<int> pageable(16, 3);
  void* extra = nullptr;
  const std::vector<std::pair<std::string, std::function<cudaError_t()>>>
      refused = {
          {"cudaStreamSynchronize of a capturing stream",
           [&] { return cudaStreamSynchronize(s); }},
          {"cudaMalloc", [&] { return cudaMalloc(&extra, 64); }},
          {"cudaMemcpyAsync with pageable host memory",
           [&] {
             return cudaMemcpyAsync(d.get(), pageable.data(), 64,
                                    cudaMemcpyHostToDevice, s);
           }},
          {"recorded outside its capture",
           [&] { return cudaStreamWaitEvent(s, outside, 0); }},
      };
  for (const auto& [what, call] : refused) {
    cuda_emu::ClearReports();
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
              cudaSuccess);
    ASSERT_EQ(LaunchFill(1, 16, 0, s, d.get(), 1), cudaSuccess);
    const cudaError_t e = call();
    EXPECT_TRUE(e == cudaErrorStreamCaptureUnsupported ||
                e == cudaErrorStreamCaptureIsolation)
        << what << ": " << cudaGetErrorName(e);
    EXPECT_THAT(cuda_emu::LastReport(), ::testing::HasSubstr(what));
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&d);
    const cudaError_t end = cudaStreamEndCapture(s, &graph);
    if (e == cudaErrorStreamCaptureUnsupported) {
      EXPECT_EQ(end, cudaErrorStreamCaptureInvalidated) << what;
      EXPECT_EQ(graph, nullptr) << what;
    } else {
      ASSERT_EQ(end, cudaSuccess) << what;  // a refused wait adds nothing
      EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    }
    cudaGetLastError();  // the refusals are not sticky: clear them
  }
  EXPECT_EQ(extra, nullptr);
  EXPECT_EQ(d.Download(), std::vector<int>(16, 0)) << "captured work ran";
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureUnmatched);
  cudaGetLastError();
  // A side stream that joined and was not waited for to its last operation:
  // the end fails (unjoined); waited for, it succeeds.
  cudaStream_t side;
  ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking),
            cudaSuccess);
  cudaEvent_t fork, join;
  ASSERT_EQ(cudaEventCreate(&fork), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&join), cudaSuccess);
  for (const bool rejoin : {false, true}) {
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
              cudaSuccess);
    ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    // Work after the join: waited for only by a second join.
    ASSERT_EQ(LaunchFill(1, 16, 0, side, d.get(), 2), cudaSuccess);
    if (rejoin) {
      ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
      ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    }
    graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &graph),
              rejoin ? cudaSuccess : cudaErrorStreamCaptureUnjoined)
        << rejoin;
    if (graph != nullptr) {
      EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    }
    cudaGetLastError();
  }
  EXPECT_EQ(cudaEventDestroy(fork), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(join), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(side), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(outside), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  cudaGetLastError();
}

TEST_F(EmuRuntime, LazyMainHoldsOnlyBlockingStreams) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazyMain);
  MainAndSide streams;
  cudaStream_t main_stream = streams.main_stream, side = streams.side;
  cudaEvent_t fork = streams.event;
  DeviceBuffer<int> a(std::vector<int>(64, 0)), b(std::vector<int>(64, 0));
  ASSERT_EQ(LaunchFill(1, 64, 0, main_stream, a.get(), 3), cudaSuccess);
  EXPECT_EQ(a.get()[0], 0) << "a blocking stream holds its work";
  // Without a fork the side stream's copy runs at once, before main's fill.
  ASSERT_EQ(
      cudaMemcpyAsync(b.get(), a.get(), 256, cudaMemcpyDeviceToDevice, side),
      cudaSuccess);
  EXPECT_EQ(b.get()[0], 0);
  // With one, its wait first runs main's work up to the event.
  ASSERT_EQ(cudaEventRecord(fork, main_stream), cudaSuccess);
  ASSERT_EQ(LaunchFill(1, 64, 0, main_stream, a.get(), 4), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
  EXPECT_EQ(a.get()[0], 3);
  ASSERT_EQ(
      cudaMemcpyAsync(b.get(), a.get(), 256, cudaMemcpyDeviceToDevice, side),
      cudaSuccess);
  EXPECT_EQ(b.get()[63], 3);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(a.get()[63], 4);
}

TEST_F(EmuRuntime, LazyCopiesTreatPageableAndPinnedMemoryLikeCuda) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 256),
            cudaSuccess);
  std::vector<int> pageable(64, 1);
  std::fill(pinned, pinned + 64, 1);
  DeviceBuffer<int> from_pageable(64), from_pinned(64);
  ASSERT_EQ(cudaMemcpyAsync(from_pageable.get(), pageable.data(), 256,
                            cudaMemcpyHostToDevice, s),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(from_pinned.get(), pinned, 256,
                            cudaMemcpyHostToDevice, s),
            cudaSuccess);
  // Written after the calls, before the stream ran: a pageable source was
  // read at the call, a pinned one is read when the copy runs.
  std::fill(pageable.begin(), pageable.end(), 2);
  std::fill(pinned, pinned + 64, 2);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(from_pageable.Download(), std::vector<int>(64, 1));
  EXPECT_EQ(from_pinned.Download(), std::vector<int>(64, 2));
  // Into pinned memory: when the copy runs; into pageable: by the return.
  ASSERT_EQ(LaunchFill(1, 64, 0, s, from_pinned.get(), 6), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, from_pinned.get(), 256,
                            cudaMemcpyDeviceToHost, s),
            cudaSuccess);
  EXPECT_EQ(pinned[0], 2);
  ASSERT_EQ(cudaMemcpyAsync(pageable.data(), from_pinned.get(), 256,
                            cudaMemcpyDeviceToHost, s),
            cudaSuccess);
  EXPECT_EQ(pageable, std::vector<int>(64, 6));
  EXPECT_EQ(pinned[63], 6);
  ASSERT_EQ(cudaMemsetAsync(from_pinned.get(), 0, 256, s), cudaSuccess);
  EXPECT_EQ(from_pinned.get()[0], 6);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);  // synchronizes the device
  EXPECT_EQ(from_pinned.get()[0], 0);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// Host waits are counted, with whether work was still queued behind them.
TEST_F(EmuRuntime, HostWaitsAreCounted) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  cudaEvent_t first;
  ASSERT_EQ(cudaEventCreate(&first), cudaSuccess);
  DeviceBuffer<int> d(64);
  std::vector<int> host(64);
  const cuda_emu::HostWaits before = cuda_emu::CountHostWaits();
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 1), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(first, s), cudaSuccess);
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 2), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(first), cudaSuccess);  // the second queued
  ASSERT_EQ(cudaEventSynchronize(first), cudaSuccess);  // done: not blocking
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);     // not a wait
  ASSERT_EQ(LaunchFill(1, 64, 0, s, d.get(), 3), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(host.data(), d.get(), 256, cudaMemcpyDeviceToHost,
                            s),  // pageable: blocking, nothing behind
            cudaSuccess);
  EXPECT_EQ(host[0], 3);
  const cuda_emu::HostWaits after = cuda_emu::CountHostWaits();
  EXPECT_EQ(after.waits - before.waits, 3u);
  EXPECT_EQ(after.blocking - before.blocking, 2u);
  EXPECT_EQ(after.blocking_with_work_queued - before.blocking_with_work_queued,
            1u);
  cudaEventDestroy(first);
  cudaStreamDestroy(s);
}

// (Under AddressSanitizer the write itself stops the process: EmuReports.)
#if !defined(__SANITIZE_ADDRESS__)
TEST_F(EmuRuntime, LazyLaunchFaultSurfacesAtTheSynchronize) {
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  DeviceBuffer<int> d(64);
  // 128 threads into 64 ints: out of bounds once it runs.
  EXPECT_EQ(LaunchFill(1, 128, 0, s, d.get(), 1), cudaSuccess);
  EXPECT_EQ(cuda_emu::ReportCount(), 0);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorIllegalAddress);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("wrote outside a buffer"));
  cudaStreamDestroy(s);
}
#endif

TEST_F(EmuRuntime, DevicePropertiesOfAnH100) {
  int count = 0, device = -1;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, 0);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  cudaGetLastError();
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_EQ(p.major, 9);
  EXPECT_EQ(p.minor, 0);
  EXPECT_EQ(p.multiProcessorCount, 132);
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(p.sharedMemPerMultiprocessor, 228u * 1024);
  EXPECT_THAT(std::string(p.name), HasSubstr("emulated"));
  int v = 0;
  ASSERT_EQ(
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0),
      cudaSuccess);
  EXPECT_EQ(v, 227 * 1024);
  ASSERT_EQ(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0),
            cudaSuccess);
  EXPECT_EQ(v, 132);
  int blocks = 0;
  ASSERT_EQ(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, nullptr, 256, 0),
      cudaSuccess);
  EXPECT_EQ(blocks, 8);
}

TEST_F(EmuRuntime, ErrorStringsAndPeek) {
  EXPECT_STREQ(cudaGetErrorString(cudaSuccess), "no error");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidConfiguration),
               "invalid configuration argument");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorIllegalAddress),
               "cudaErrorIllegalAddress");
  DeviceBuffer<int> d(1);
  EXPECT_EQ(LaunchFill(1, 4096, 0, nullptr, d.get(), 0),
            cudaErrorInvalidConfiguration);
  // The helper returned (and so cleared) the error; a raw failing call leaves
  // it.
  EXPECT_EQ(cudaSetDevice(3), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST_F(EmuRuntime, ConstantAndDeviceSymbols) {
  const float scales[4] = {1.0f, 2.0f, -1.0f, 0.5f};
  ASSERT_EQ(SetConstantScales(scales), cudaSuccess);
  DeviceBuffer<float> x(std::vector<float>(64, 2.0f));
  ASSERT_EQ(LaunchScaleByConstant(2, 32, x.get()), cudaSuccess);
  std::vector<float> got = x.Download();
  for (int i = 0; i < 64; ++i) ASSERT_EQ(got[i], 2.0f * scales[i % 4]);
  unsigned count = 0;
  ASSERT_EQ(ReadDeviceCounter(&count), cudaSuccess);
  EXPECT_EQ(count, 64u);
}

TEST_F(EmuRuntime, MathIntrinsicsMatchCpuReference) {
  std::vector<float> in;
  for (int i = -40; i < 40; ++i) in.push_back(0.137f * i);
  const int n = static_cast<int>(in.size());
  DeviceBuffer<float> d_in(in), d_out(n * kMathResults);
  ASSERT_EQ(LaunchMath(d_in.get(), d_out.get(), n), cudaSuccess);
  std::vector<float> got = d_out.Download();
  for (int i = 0; i < n; ++i) {
    const float x = in[i];
    const float* o = &got[i * kMathResults];
    EXPECT_NEAR(o[0], std::exp(x), 1e-5f * std::exp(x));
    EXPECT_NEAR(o[1], std::log(std::fabs(x) + 1.0f), 1e-6f);
    EXPECT_NEAR(o[2], 1.0f / std::sqrt(std::fabs(x) + 0.5f), 1e-6f);
    EXPECT_NEAR(o[3], x / 3.0f, 1e-6f);
    EXPECT_EQ(o[4], std::max(x, 0.25f) + std::min(x, -0.25f));
    EXPECT_NEAR(o[5], x, std::fabs(x) / 128.0f);  // bf16 keeps 8 bits
    EXPECT_NEAR(o[6], GeluTanh(x), 1e-6f);
    EXPECT_EQ(o[7], static_cast<float>(
                        std::max(static_cast<int>(x * 10.0f), -3) + 2));
  }
}

TEST_F(EmuRuntime, EmulatedBuildMacroIsVisibleToKernels) {
  DeviceBuffer<int> out(1);
  ASSERT_EQ(LaunchWhichBuild(out.get()), cudaSuccess);
  EXPECT_EQ(out.Download()[0], 1);
}

TEST_F(EmuRuntime, LaunchKernelIsNotEmulated) {
  EXPECT_EQ(cudaLaunchKernel(reinterpret_cast<const void*>(&LaunchFill),
                             dim3(1), dim3(1), nullptr, 0, nullptr),
            cudaErrorNotSupported);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("GPT2_LAUNCH"));
  cudaGetLastError();
}

}  // namespace
}  // namespace cuda_emu_test
