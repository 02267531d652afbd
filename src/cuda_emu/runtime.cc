// The emulated CUDA runtime: the cuda* functions <cuda_runtime.h> declares,
// defined over host memory (no libcudart is linked). Allocations carry guard
// bytes that launches and cudaFree check. Streams run their work at once
// (eager, the default) or hold it until something waits for it (lazy: see
// cuda_emu::SetStreamOrder).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/cuda_emu/api.h"
#include "src/cuda_emu/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

// The runtime's opaque handle types, completed here.
struct CUstream_st {
  unsigned flags;
  int priority;
  uint64_t serial;  // creation order, never reused
  // Lazy streams: the work not yet run, and how many operations were ever
  // queued / have run.
  std::deque<std::function<void()>> queue;
  uint64_t queued = 0;
  uint64_t done = 0;
  // The graph this stream's work is recorded into while a capture runs (the
  // stream that began it, or one that joined by waiting on an event recorded
  // in it); null otherwise.
  CUgraph_st* capture = nullptr;
  bool capture_origin = false;
  // Its lane in that capture (the origin's is 0; see CUgraph_st).
  int capture_lane = 0;
  // In a capture: operations recorded from this stream so far, and how many
  // of them another stream of the capture has waited for (through an event
  // recorded after them): a joined stream must be waited for up to its last
  // operation before the capture ends (cudaErrorStreamCaptureUnjoined).
  uint64_t captured_ops = 0;
  uint64_t waited_ops = 0;
};
// One operation of a captured graph, on the lane of the stream that issued it
// (each stream taking part in a capture is a lane: the origin 0, the others
// numbered as they join): work, an event record (numbered in the graph; `fn`
// marks the user's event recorded) or a wait for such a record.
struct GraphOp {
  enum Kind { kWork, kRecord, kWait } kind;
  int lane;
  std::function<void()> fn;  // kWork, kRecord
  int record = -1;           // kRecord: its number; kWait: the one waited for
};
// A captured graph: its operations in the order they were issued, which
// respects every dependency of the capture (an operation is issued after what
// it waits for), with the lanes' stream flags (lane 0: the origin's).
// `error`: why the capture was invalidated ("" if it was not).
struct CUgraph_st {
  std::vector<GraphOp> ops;
  std::vector<unsigned> lane_flags;
  int records = 0;
  std::string error;
};
// An instantiated graph: the same operations. A launch on an eager stream
// runs them in issue order (one valid order of the graph); on a lazy stream
// each lane's work queues on a stream of its own (lane 0 on the launching
// stream; the others on the exec's streams, made at its first lazy launch,
// with their captured flags) and the records and waits between them are
// replayed with the exec's events: work runs only once something waits for
// it, so an operation recorded without a wait for what it reads reads it
// stale, as the device may run it.
struct CUgraphExec_st {
  std::shared_ptr<const std::vector<GraphOp>> ops;
  std::vector<unsigned> lane_flags;
  int records = 0;
  std::vector<cudaStream_t> lane_streams;  // lanes 1, 2, ...
  std::vector<cudaEvent_t> record_events;
};
struct CUevent_st {
  unsigned flags;
  bool recorded;
  std::chrono::steady_clock::time_point when;
  uint64_t serial;  // creation order, never reused
  // The last record on a lazy stream: that stream and its operation count
  // once the record has run (stream 0: nothing pending).
  uint64_t stream_serial = 0;
  uint64_t target = 0;
  // Recorded into this capture (null: recorded outside any), on this stream
  // after this many of its captured operations.
  CUgraph_st* captured_in = nullptr;
  cudaStream_t captured_on = nullptr;
  uint64_t captured_after = 0;
  int captured_record = -1;  // its number among that capture's records
};

namespace cuda_emu {
namespace detail {
namespace {

constexpr size_t kAlign = 256;  // cudaMalloc's alignment
constexpr size_t kGuard = 256;  // guard bytes on each side of a buffer
constexpr unsigned char kPoison = 0xff;

// Not a constant, so a kernel filling memory with any one byte value (or a
// float/int pattern) damages it.
unsigned char Canary(size_t i) {
  return static_cast<unsigned char>(i * 0x9d + 0x5b);
}

enum class AllocKind { kDevice, kHost, kManaged };

struct Allocation {
  unsigned char* raw;
  unsigned char* user;
  size_t size;
  size_t total;
  uint64_t id;
  AllocKind kind;
  std::string name;
};

struct State {
  std::mutex mu;
  std::map<uintptr_t, Allocation> allocs;  // by user address
  uint64_t next_id = 1;
  size_t allocated = 0;
  std::unordered_map<const void*, size_t> max_dyn_smem;
  std::set<cudaStream_t> streams;
  std::map<uint64_t, cudaStream_t> stream_by_serial;
  uint64_t next_stream_serial = 1;
  std::set<cudaEvent_t> events;
  uint64_t next_event_serial = 1;
  std::set<cudaGraph_t> graphs;
  std::set<cudaGraphExec_t> graph_execs;
  std::atomic<int> captures{0};      // captures begun and not yet ended
  std::atomic<int> stream_order{0};  // cuda_emu::StreamOrder
  std::atomic<uint64_t> ops_run{0};  // queued operations run so far
  std::atomic<uint64_t> host_waits{0};
  std::atomic<uint64_t> blocking_waits{0};
  std::atomic<uint64_t> blocking_waits_with_work_queued{0};
  // One host thread at a time runs queued stream work.
  std::recursive_mutex drain_mu;
  std::atomic<int> sticky{cudaSuccess};
  std::atomic<bool> fatal{false};
  // Reports.
  std::mutex report_mu;
  std::string last_report;
  int report_count = 0;

  State() {
    const char* f = std::getenv("CUDA_EMU_FATAL");
    fatal = f != nullptr && std::strcmp(f, "0") != 0 && *f != '\0';
    if (const char* o = std::getenv("CUDA_EMU_STREAMS")) {
      const std::string v(o);
      if (v == "lazy") stream_order = 1;
      if (v == "lazy_main") stream_order = 2;
    }
  }
};

State& S() {
  static State* state = new State();
  return *state;
}

thread_local cudaError_t tls_last_error = cudaSuccess;

// Under AddressSanitizer the guard bytes are poisoned between the
// emulator's own looks at them, so a kernel that reads (not only writes) a
// byte outside its buffer is reported at once, with its stack.
void SetGuardsPoisoned([[maybe_unused]] const Allocation& a,
                       [[maybe_unused]] bool poisoned) {
#if defined(__SANITIZE_ADDRESS__)
  const size_t head = static_cast<size_t>(a.user - a.raw);
  const size_t tail = a.total - head - a.size;
  if (poisoned) {
    ASAN_POISON_MEMORY_REGION(a.raw, head);
    ASAN_POISON_MEMORY_REGION(a.user + a.size, tail);
  } else {
    ASAN_UNPOISON_MEMORY_REGION(a.raw, head);
    ASAN_UNPOISON_MEMORY_REGION(a.user + a.size, tail);
  }
#endif
}

// Canary(0), Canary(1), ...: both guards of any allocation (the tail is under
// kGuard + kAlign bytes), for one memcmp each on the path of every launch.
const unsigned char* CanaryBytes() {
  static const auto* bytes = [] {
    auto* b = new unsigned char[kGuard + kAlign];
    for (size_t i = 0; i < kGuard + kAlign; ++i) b[i] = Canary(i);
    return b;
  }();
  return bytes;
}

// Damaged guard bytes of one allocation, as a report fragment ("" if none).
std::string GuardDamage(const Allocation& a) {
  const size_t head = static_cast<size_t>(a.user - a.raw);
  const size_t tail = a.total - head - a.size;
  SetGuardsPoisoned(a, false);
  if (head <= kGuard + kAlign && tail <= kGuard + kAlign &&
      std::memcmp(a.raw, CanaryBytes(), head) == 0 &&
      std::memcmp(a.user + a.size, CanaryBytes(), tail) == 0) {
    SetGuardsPoisoned(a, true);
    return "";
  }
  long first_before = 0, last_after = -1;
  size_t before = 0, after = 0;
  for (size_t i = 0; i < head; ++i) {
    if (a.raw[i] != Canary(i)) {
      if (before == 0) {
        first_before = static_cast<long>(i) - static_cast<long>(head);
      }
      ++before;
    }
  }
  for (size_t i = 0; i < tail; ++i) {
    if (a.user[a.size + i] != Canary(i)) {
      ++after;
      last_after = static_cast<long>(i);
    }
  }
  SetGuardsPoisoned(a, true);
  if (before + after == 0) return "";
  std::string out;
  if (before > 0) {
    out += std::to_string(before) + " byte(s) before its start (from offset " +
           std::to_string(first_before) + ")";
  }
  if (after > 0) {
    if (!out.empty()) out += " and ";
    out += std::to_string(after) + " byte(s) past its end (up to offset " +
           std::to_string(a.size + static_cast<size_t>(last_after)) + ")";
  }
  return out;
}

void WriteGuards(Allocation& a) {
  const size_t head = static_cast<size_t>(a.user - a.raw);
  const size_t tail = a.total - head - a.size;
  SetGuardsPoisoned(a, false);
  for (size_t i = 0; i < head; ++i) a.raw[i] = Canary(i);
  for (size_t i = 0; i < tail; ++i) a.user[a.size + i] = Canary(i);
  SetGuardsPoisoned(a, true);
}

std::string DescribeAlloc(const Allocation& a) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s #%llu%s%s%s (%p, %zu bytes)",
                a.kind == AllocKind::kHost ? "cudaMallocHost buffer"
                                           : "cudaMalloc buffer",
                static_cast<unsigned long long>(a.id),
                a.name.empty() ? "" : " '", a.name.c_str(),
                a.name.empty() ? "" : "'", static_cast<void*>(a.user), a.size);
  return buf;
}

// The allocation holding address p (its one-past-the-end address included),
// or null. Caller holds S().mu.
const Allocation* Find(const void* p) {
  auto& allocs = S().allocs;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  auto it = allocs.upper_bound(addr);
  if (it == allocs.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  if (addr >= it->first && addr <= it->first + a.size) return &a;
  return nullptr;
}

cudaError_t ApiError(cudaError_t error, const std::string& why) {
  Report(std::string(cudaGetErrorName(error)) + ": " + why, /*fault=*/false);
  return SetLastError(error);
}

cudaError_t Allocate(void** ptr, size_t size, AllocKind kind, const char* api) {
  if (ptr == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    std::string(api) + " with a null pointer");
  }
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  if (size == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (size > kGlobalMemBytes - s.allocated) {
    *ptr = nullptr;
    return SetLastError(cudaErrorMemoryAllocation);
  }
  const size_t total = kGuard + (size + kAlign - 1) / kAlign * kAlign + kGuard;
  auto* raw = static_cast<unsigned char*>(std::aligned_alloc(kAlign, total));
  if (raw == nullptr) {
    *ptr = nullptr;
    return SetLastError(cudaErrorMemoryAllocation);
  }
  Allocation a{raw, raw + kGuard, size, total, s.next_id++, kind, ""};
  // Fresh device memory is garbage on a GPU; poison (NaN / -1) makes reads of
  // never-written memory visible.
  std::memset(a.user, kPoison, size);
  WriteGuards(a);
  s.allocated += size;
  s.allocs.emplace(reinterpret_cast<uintptr_t>(a.user), a);
  *ptr = a.user;
  return cudaSuccess;
}

cudaError_t Release(void* ptr, bool host, const char* api) {
  if (ptr == nullptr) return cudaSuccess;
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  State& s = S();
  std::unique_lock<std::mutex> lock(s.mu);
  auto it = s.allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.allocs.end() || (it->second.kind == AllocKind::kHost) != host) {
    lock.unlock();
    char where[32];
    std::snprintf(where, sizeof(where), "%p", ptr);
    return ApiError(cudaErrorInvalidValue,
                    std::string(api) + "(" + where +
                        "): not a live buffer from " +
                        (host ? "cudaMallocHost/cudaHostAlloc" : "cudaMalloc") +
                        " (double free, or a pointer into a buffer?)");
  }
  Allocation a = it->second;
  const std::string damage = GuardDamage(a);
  s.allocated -= a.size;
  s.allocs.erase(it);
  SetGuardsPoisoned(a, false);
  std::free(a.raw);
  lock.unlock();
  if (!damage.empty()) {
    SetStickyError(cudaErrorIllegalAddress);
    Report(std::string(api) + " found that " + DescribeAlloc(a) +
               " was written out of bounds since the last check: " + damage,
           /*fault=*/true);
    return cudaErrorIllegalAddress;
  }
  return cudaSuccess;
}

// Checks that [p, p + count) lies inside one device allocation.
bool CheckDeviceRange(const void* p, size_t count, const char* api,
                      const char* role, std::string* why) {
  std::lock_guard<std::mutex> lock(S().mu);
  const Allocation* a = Find(p);
  if (a == nullptr) {
    *why = std::string(api) + ": the " + role +
           " is not in any cudaMalloc buffer (wrong cudaMemcpyKind, or a "
           "freed/host pointer?)";
    return false;
  }
  const size_t offset =
      static_cast<size_t>(static_cast<const unsigned char*>(p) - a->user);
  if (count > a->size - offset) {
    *why = std::string(api) + ": " + std::to_string(count) +
           " bytes at offset " + std::to_string(offset) + " of " +
           DescribeAlloc(*a) + " run past its end";
    return false;
  }
  return true;
}

// Any pointer inside an allocation must not run past it, whatever the kind.
bool CheckIfDevice(const void* p, size_t count, const char* api,
                   const char* role, std::string* why) {
  bool inside;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    inside = Find(p) != nullptr;
  }
  return !inside || CheckDeviceRange(p, count, api, role, why);
}

// The checks of a copy: cudaSuccess, or the error it reports.
cudaError_t CheckCopy(void* dst, const void* src, size_t count,
                      cudaMemcpyKind kind, const char* api) {
  if (dst == nullptr || src == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    std::string(api) + " with a null pointer");
  }
  std::string why;
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      ok = CheckDeviceRange(dst, count, api, "destination", &why) &&
           CheckIfDevice(src, count, api, "source", &why);
      break;
    case cudaMemcpyDeviceToHost:
      ok = CheckDeviceRange(src, count, api, "source", &why) &&
           CheckIfDevice(dst, count, api, "destination", &why);
      break;
    case cudaMemcpyDeviceToDevice:
      ok = CheckDeviceRange(dst, count, api, "destination", &why) &&
           CheckDeviceRange(src, count, api, "source", &why);
      break;
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault:
      ok = CheckIfDevice(dst, count, api, "destination", &why) &&
           CheckIfDevice(src, count, api, "source", &why);
      break;
    default:
      ok = false;
      why =
          std::string(api) + ": invalid cudaMemcpyKind " + std::to_string(kind);
  }
  if (!ok) return ApiError(cudaErrorInvalidValue, why);
  return cudaSuccess;
}

cudaError_t Copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                 const char* api) {
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = CheckCopy(dst, src, count, kind, api)) return e;
  std::memmove(dst, src, count);
  return cudaSuccess;
}

// Whether p lies in a cudaMalloc (device or managed) buffer / a pinned
// (cudaMallocHost) one.
bool InDeviceBuffer(const void* p) {
  std::lock_guard<std::mutex> lock(S().mu);
  const Allocation* a = Find(p);
  return a != nullptr && a->kind != AllocKind::kHost;
}
bool Pinned(const void* p) {
  std::lock_guard<std::mutex> lock(S().mu);
  const Allocation* a = Find(p);
  return a != nullptr && a->kind == AllocKind::kHost;
}

cudaError_t Fill(void* dst, int value, size_t count, const char* api) {
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  if (count == 0) return cudaSuccess;
  std::string why;
  if (!CheckDeviceRange(dst, count, api, "destination", &why)) {
    return ApiError(cudaErrorInvalidValue, why);
  }
  std::memset(dst, value, count);
  return cudaSuccess;
}

cudaError_t CheckStream(cudaStream_t stream, const char* api) {
  if (!IsValidStream(stream)) {
    return ApiError(cudaErrorInvalidResourceHandle,
                    std::string(api) + ": not a live cudaStream_t");
  }
  return cudaSuccess;
}

bool IsValidEvent(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(S().mu);
  return S().events.count(event) != 0;
}

cudaError_t CheckEvent(cudaEvent_t event, const char* api) {
  if (!IsValidEvent(event)) {
    return ApiError(cudaErrorInvalidResourceHandle,
                    std::string(api) + ": not a live cudaEvent_t");
  }
  return cudaSuccess;
}

// ---- Stream work ----
// Lazy streams hold each operation (a launch, an async copy or fill, an event
// record, a wait on an event, a host function) in the stream's queue until a
// synchronizing call needs it: a stream or event synchronize or query, a wait
// on an event whose stream then runs, or any call that uses the legacy
// default stream (cudaMemcpy, cudaMemset, launches on stream 0), which first
// runs every blocking stream's work, and cudaDeviceSynchronize / cudaFree,
// which run all. So work on a stream runs later than its launch, and work on
// two streams that nothing orders runs in whichever order the program forces,
// never in launch order by accident.

bool Lazy() { return S().stream_order.load() != 0; }

// Runs stream `serial`'s queued work until `upto` of its operations have run
// (all by default). A stream destroyed meanwhile ran all of its work first.
void DrainStream(uint64_t serial, uint64_t upto = UINT64_MAX) {
  State& s = S();
  std::lock_guard<std::recursive_mutex> drain(s.drain_mu);
  for (;;) {
    std::function<void()> op;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      auto it = s.stream_by_serial.find(serial);
      if (it == s.stream_by_serial.end()) return;
      CUstream_st* st = it->second;
      if (st->done >= upto || st->queue.empty()) return;
      op = std::move(st->queue.front());
      st->queue.pop_front();
    }
    op();
    ++s.ops_run;
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.stream_by_serial.find(serial);
    if (it != s.stream_by_serial.end()) ++it->second->done;
  }
}

// Runs the queued work of every stream (only the blocking ones: what the
// legacy default stream waits for), stream by stream in creation order.
void DrainAll(bool blocking_only) {
  State& s = S();
  std::lock_guard<std::recursive_mutex> drain(s.drain_mu);
  std::vector<uint64_t> serials;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [serial, st] : s.stream_by_serial) {
      if (!blocking_only || (st->flags & cudaStreamNonBlocking) == 0) {
        serials.push_back(serial);
      }
    }
  }
  for (uint64_t serial : serials) DrainStream(serial);
}

// Whether `event`'s last record waits in a lazy stream's queue.
bool EventPending(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(S().mu);
  if (event->stream_serial == 0) return false;
  auto it = S().stream_by_serial.find(event->stream_serial);
  return it != S().stream_by_serial.end() && it->second->done < event->target;
}

bool StreamPending(cudaStream_t stream) {
  if (IsLegacyStream(stream)) return false;
  std::lock_guard<std::mutex> lock(S().mu);
  return !stream->queue.empty();
}

// Counts a call that makes the host wait for device work (see
// cuda_emu::CountHostWaits): constructed before the call runs what it waits
// for, it notes whether the call had to run queued work (it blocks: the
// device may not be there yet) and whether work stayed queued behind it.
class HostWaitScope {
 public:
  HostWaitScope() : ops_before_(S().ops_run.load()) {}
  ~HostWaitScope() {
    State& s = S();
    ++s.host_waits;
    if (s.ops_run.load() == ops_before_) return;
    ++s.blocking_waits;
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [serial, st] : s.stream_by_serial) {
      if (!st->queue.empty()) {
        ++s.blocking_waits_with_work_queued;
        return;
      }
    }
  }
  HostWaitScope(const HostWaitScope&) = delete;
  HostWaitScope& operator=(const HostWaitScope&) = delete;

 private:
  uint64_t ops_before_;
};

// Runs `event`'s last record, and the work queued before it on its stream.
void DrainEvent(cudaEvent_t event) {
  uint64_t serial, target;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    serial = event->stream_serial;
    target = event->target;
  }
  if (serial != 0) DrainStream(serial, target);
}

void FreeAll() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  for (auto& [addr, a] : s.allocs) {
    SetGuardsPoisoned(a, false);
    std::free(a.raw);
  }
  s.allocs.clear();
  s.allocated = 0;
  for (cudaStream_t st : s.streams) delete st;
  s.streams.clear();
  s.stream_by_serial.clear();
  for (cudaEvent_t ev : s.events) delete ev;
  s.events.clear();
  for (cudaGraph_t g : s.graphs) delete g;
  s.graphs.clear();
  for (cudaGraphExec_t g : s.graph_execs) delete g;
  s.graph_execs.clear();
  s.captures = 0;
  s.max_dyn_smem.clear();
}

}  // namespace

// ---- internal.h ----

void Report(const std::string& text, bool fault) {
  State& s = S();
  {
    std::lock_guard<std::mutex> lock(s.report_mu);
    s.last_report = text;
    ++s.report_count;
  }
  std::fprintf(stderr, "[cuda_emu] %s%s\n", fault ? "error: " : "",
               text.c_str());
  std::fflush(stderr);
  if (fault && s.fatal.load()) {
    std::fprintf(stderr, "[cuda_emu] aborting (fatal errors are on)\n");
    std::abort();
  }
}

cudaError_t SetLastError(cudaError_t error) {
  if (error != cudaSuccess) tls_last_error = error;
  return error;
}

cudaError_t StickyError() {
  return static_cast<cudaError_t>(S().sticky.load());
}

void SetStickyError(cudaError_t error) {
  int expected = cudaSuccess;
  S().sticky.compare_exchange_strong(expected, error);
}

bool QueuesWork(cudaStream_t stream) {
  if (CaptureOf(stream) != nullptr) return true;  // recorded, not run
  if (!Lazy() || IsLegacyStream(stream)) return false;
  if (S().stream_order.load() == static_cast<int>(StreamOrder::kLazy)) {
    return true;
  }
  // kLazyMain: only blocking streams hold their work.
  return (stream->flags & cudaStreamNonBlocking) == 0;
}

CUgraph_st* CaptureOf(cudaStream_t stream) {
  if (IsLegacyStream(stream)) return nullptr;
  return stream->capture;
}

cudaError_t RefuseInCapture(const std::string& what) {
  State& s = S();
  if (s.captures.load() == 0) return cudaSuccess;
  const std::string why = what + " while a stream capture runs";
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (cudaStream_t st : s.streams) {
      if (st->capture != nullptr && st->capture->error.empty()) {
        st->capture->error = why;
      }
    }
  }
  Report(why + ": not allowed in a capture (cudaErrorStreamCaptureUnsupported)",
         false);
  return SetLastError(cudaErrorStreamCaptureUnsupported);
}

void SyncWithLegacyStream() {
  // CUDA: cudaErrorStreamCaptureImplicit (the legacy stream would wait for
  // the capturing streams' work, which is only being recorded).
  if (S().captures.load() > 0) {
    RefuseInCapture("work on the legacy default stream");
  }
  if (Lazy()) DrainAll(/*blocking_only=*/true);
}

void SyncDevice() {
  if (Lazy()) DrainAll(/*blocking_only=*/false);
}

void Submit(cudaStream_t stream, std::function<void()> op) {
  if (CUgraph_st* graph = CaptureOf(stream)) {
    std::lock_guard<std::mutex> lock(S().mu);
    graph->ops.push_back(
        GraphOp{GraphOp::kWork, stream->capture_lane, std::move(op)});
    ++stream->captured_ops;
    return;
  }
  if (!QueuesWork(stream)) {
    if (IsLegacyStream(stream)) SyncWithLegacyStream();
    op();
    return;
  }
  std::lock_guard<std::mutex> lock(S().mu);
  stream->queue.push_back(std::move(op));
  ++stream->queued;
}

bool IsValidStream(cudaStream_t stream) {
  if (IsLegacyStream(stream)) return true;
  std::lock_guard<std::mutex> lock(S().mu);
  return S().streams.count(stream) != 0;
}

size_t MaxDynamicSharedMemory(const void* func) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().max_dyn_smem.find(func);
  return it == S().max_dyn_smem.end() ? kSmemPerBlockDefault : it->second;
}

bool CheckAllGuards(const std::string& kernel) {
  std::string reports;
  {
    State& s = S();
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto& [addr, a] : s.allocs) {
      const std::string damage = GuardDamage(a);
      if (damage.empty()) continue;
      if (!reports.empty()) reports += "; ";
      reports += DescribeAlloc(a) + ": " + damage;
      WriteGuards(a);  // report each overwrite once
    }
  }
  if (reports.empty()) return true;
  SetStickyError(cudaErrorIllegalAddress);
  Report("kernel '" + kernel +
             "' wrote outside a buffer (guard bytes overwritten): " + reports,
         /*fault=*/true);
  return false;
}

}  // namespace detail

// ---- api.h ----

std::string LastReport() {
  std::lock_guard<std::mutex> lock(detail::S().report_mu);
  return detail::S().last_report;
}

int ReportCount() {
  std::lock_guard<std::mutex> lock(detail::S().report_mu);
  return detail::S().report_count;
}

void ClearReports() {
  std::lock_guard<std::mutex> lock(detail::S().report_mu);
  detail::S().last_report.clear();
  detail::S().report_count = 0;
}

void SetStreamOrder(StreamOrder order) {
  detail::DrainAll(/*blocking_only=*/false);
  detail::S().stream_order = static_cast<int>(order);
}

StreamOrder CurrentStreamOrder() {
  return static_cast<StreamOrder>(detail::S().stream_order.load());
}

HostWaits CountHostWaits() {
  const detail::State& s = detail::S();
  return HostWaits{s.host_waits.load(), s.blocking_waits.load(),
                   s.blocking_waits_with_work_queued.load()};
}

void SetFatal(bool fatal) { detail::S().fatal = fatal; }
bool Fatal() { return detail::S().fatal.load(); }

void SetBufferName(const void* device_ptr, const std::string& name) {
  std::lock_guard<std::mutex> lock(detail::S().mu);
  auto it = detail::S().allocs.find(reinterpret_cast<uintptr_t>(device_ptr));
  if (it != detail::S().allocs.end()) it->second.name = name;
}

}  // namespace cuda_emu

// ---- The CUDA runtime API ----
// These definitions take the C linkage of their declarations in
// <cuda_runtime_api.h>.

using cuda_emu::detail::AllocKind;
using cuda_emu::detail::ApiError;
using cuda_emu::detail::S;
using cuda_emu::detail::SetLastError;
using cuda_emu::detail::StickyError;

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  if (cudaError_t e = cuda_emu::detail::RefuseInCapture("cudaMalloc")) return e;
  return cuda_emu::detail::Allocate(devPtr, size, AllocKind::kDevice,
                                    "cudaMalloc");
}
cudaError_t cudaMallocManaged(void** devPtr, size_t size, unsigned int) {
  return cuda_emu::detail::Allocate(devPtr, size, AllocKind::kManaged,
                                    "cudaMallocManaged");
}
cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaMallocAsync")) {
    return e;
  }
  return cuda_emu::detail::Allocate(devPtr, size, AllocKind::kDevice,
                                    "cudaMallocAsync");
}
cudaError_t cudaFree(void* devPtr) {
  if (cudaError_t e = cuda_emu::detail::RefuseInCapture("cudaFree")) return e;
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncDevice();
  return cuda_emu::detail::Release(devPtr, false, "cudaFree");
}
cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  if (cudaError_t e = cuda_emu::detail::CheckStream(stream, "cudaFreeAsync")) {
    return e;
  }
  if (cuda_emu::detail::QueuesWork(stream)) {
    cuda_emu::detail::Submit(stream, [devPtr] {
      cuda_emu::detail::Release(devPtr, false, "cudaFreeAsync");
    });
    return StickyError();
  }
  return cuda_emu::detail::Release(devPtr, false, "cudaFreeAsync");
}
cudaError_t cudaMallocHost(void** ptr, size_t size) {
  return cuda_emu::detail::Allocate(ptr, size, AllocKind::kHost,
                                    "cudaMallocHost");
}
cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int) {
  return cuda_emu::detail::Allocate(pHost, size, AllocKind::kHost,
                                    "cudaHostAlloc");
}
cudaError_t cudaFreeHost(void* ptr) {
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncDevice();
  return cuda_emu::detail::Release(ptr, true, "cudaFreeHost");
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count,
                       enum cudaMemcpyKind kind) {
  if (cudaError_t e = cuda_emu::detail::RefuseInCapture("cudaMemcpy")) return e;
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncWithLegacyStream();
  return cuda_emu::detail::Copy(dst, src, count, kind, "cudaMemcpy");
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count,
                            enum cudaMemcpyKind kind, cudaStream_t stream) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaMemcpyAsync")) return e;
  if (!d::QueuesWork(stream)) {
    // Into pageable memory the call returns once the copy is done.
    std::optional<d::HostWaitScope> wait;
    if (d::InDeviceBuffer(src) && !d::InDeviceBuffer(dst) && !d::Pinned(dst)) {
      wait.emplace();
    }
    if (d::IsLegacyStream(stream)) d::SyncWithLegacyStream();
    return d::Copy(dst, src, count, kind, "cudaMemcpyAsync");
  }
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = d::CheckCopy(dst, src, count, kind, "cudaMemcpyAsync")) {
    return e;
  }
  const bool device_src = d::InDeviceBuffer(src);
  const bool device_dst = d::InDeviceBuffer(dst);
  if (d::CaptureOf(stream) != nullptr &&
      ((!device_src && !d::Pinned(src)) || (!device_dst && !d::Pinned(dst)))) {
    return d::RefuseInCapture("cudaMemcpyAsync with pageable host memory");
  }
  if (!device_src && !d::Pinned(src)) {
    // Pageable source: read now (CUDA stages it before the call returns).
    auto data = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src),
        static_cast<const unsigned char*>(src) + count);
    d::Submit(stream,
              [dst, data] { std::memcpy(dst, data->data(), data->size()); });
    return cudaSuccess;
  }
  if (!device_dst && !d::Pinned(dst)) {
    // Pageable destination: the call returns once the copy is done.
    cudaStreamSynchronize(stream);
    std::memmove(dst, src, count);
    return StickyError();
  }
  d::Submit(stream, [dst, src, count] { std::memmove(dst, src, count); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src,
                         size_t spitch, size_t width, size_t height,
                         enum cudaMemcpyKind kind) {
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncWithLegacyStream();
  if (width > dpitch || width > spitch) {
    return ApiError(cudaErrorInvalidPitchValue,
                    "cudaMemcpy2D: width exceeds a pitch");
  }
  for (size_t row = 0; row < height; ++row) {
    cudaError_t e =
        cuda_emu::detail::Copy(static_cast<char*>(dst) + row * dpitch,
                               static_cast<const char*>(src) + row * spitch,
                               width, kind, "cudaMemcpy2D");
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  if (cudaError_t e = cuda_emu::detail::RefuseInCapture("cudaMemset")) return e;
  cuda_emu::detail::SyncWithLegacyStream();
  return cuda_emu::detail::Fill(devPtr, value, count, "cudaMemset");
}
cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count,
                            cudaStream_t stream) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaMemsetAsync")) return e;
  if (!d::QueuesWork(stream)) {
    if (d::IsLegacyStream(stream)) d::SyncWithLegacyStream();
    return d::Fill(devPtr, value, count, "cudaMemsetAsync");
  }
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  std::string why;
  if (count > 0 && !d::CheckDeviceRange(devPtr, count, "cudaMemsetAsync",
                                        "destination", &why)) {
    return ApiError(cudaErrorInvalidValue, why);
  }
  d::Submit(stream,
            [devPtr, value, count] { std::memset(devPtr, value, count); });
  return cudaSuccess;
}

// __device__ / __constant__ variables are host globals in the emulated build,
// so a symbol is its own address.
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src,
                               size_t count, size_t offset,
                               enum cudaMemcpyKind) {
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncWithLegacyStream();
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  std::memcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src,
              count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count,
                                 size_t offset, enum cudaMemcpyKind) {
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncWithLegacyStream();
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyToSymbolAsync(const void* symbol, const void* src,
                                    size_t count, size_t offset,
                                    enum cudaMemcpyKind kind,
                                    cudaStream_t stream) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaMemcpyToSymbolAsync")) {
    return e;
  }
  if (cuda_emu::detail::QueuesWork(stream)) {
    if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) {
      return sticky;
    }
    // The source is read now (pageable), the symbol written in stream order.
    char* to = static_cast<char*>(const_cast<void*>(symbol)) + offset;
    auto data = std::make_shared<std::vector<char>>(
        static_cast<const char*>(src), static_cast<const char*>(src) + count);
    cuda_emu::detail::Submit(
        stream, [to, data] { std::memcpy(to, data->data(), data->size()); });
    return cudaSuccess;
  }
  return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const void* symbol,
                                      size_t count, size_t offset,
                                      enum cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaMemcpyFromSymbolAsync")) {
    return e;
  }
  if (cuda_emu::detail::QueuesWork(stream)) {
    // Into pageable memory: done when the call returns.
    cudaStreamSynchronize(stream);
    if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) {
      return sticky;
    }
    std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
    return cudaSuccess;
  }
  return cudaMemcpyFromSymbol(dst, symbol, count, offset, kind);
}
cudaError_t cudaGetSymbolAddress(void** devPtr, const void* symbol) {
  *devPtr = const_cast<void*>(symbol);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  std::lock_guard<std::mutex> lock(S().mu);
  *total = cuda_emu::detail::kGlobalMemBytes;
  *free = *total - S().allocated;
  return cudaSuccess;
}

// ---- Streams and events: eager streams complete every operation before its
// call returns, so stream order, event order and cross-stream waits hold
// trivially; lazy ones queue it (see "Stream work" above).

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* pStream,
                                         unsigned int flags, int priority) {
  if (pStream == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaStreamCreate with a null pointer");
  }
  std::lock_guard<std::mutex> lock(S().mu);
  cudaStream_t s = new CUstream_st();
  s->flags = flags;
  s->priority = priority;
  s->serial = S().next_stream_serial++;
  S().streams.insert(s);
  S().stream_by_serial[s->serial] = s;
  *pStream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream,
                                      unsigned int flags) {
  return cudaStreamCreateWithPriority(pStream, flags, 0);
}
cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithPriority(pStream, cudaStreamDefault, 0);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  // Work still queued runs first, as CUDA completes it after the call.
  if (cuda_emu::detail::IsValidStream(stream) &&
      !cuda_emu::detail::IsLegacyStream(stream)) {
    cuda_emu::detail::DrainStream(stream->serial);
  }
  {
    std::lock_guard<std::mutex> lock(S().mu);
    auto it = S().streams.find(stream);
    if (it != S().streams.end()) {
      S().streams.erase(it);
      S().stream_by_serial.erase(stream->serial);
      delete stream;
      return cudaSuccess;
    }
  }
  return ApiError(
      cudaErrorInvalidResourceHandle,
      "cudaStreamDestroy: not a live cudaStream_t (double destroy?)");
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaStreamSynchronize"))
    return e;
  if (cuda_emu::detail::CaptureOf(stream) != nullptr) {
    return cuda_emu::detail::RefuseInCapture(
        "cudaStreamSynchronize of a capturing stream");
  }
  cuda_emu::detail::HostWaitScope wait;
  // The legacy stream's own work has run (it runs at once).
  if (!cuda_emu::detail::IsLegacyStream(stream)) {
    cuda_emu::detail::DrainStream(stream->serial);
  }
  return StickyError();
}
// Work still queued answers cudaErrorNotReady, as on a GPU, and runs then, so
// that a caller polling until done gets there.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaStreamQuery")) {
    return e;
  }
  if (cuda_emu::detail::CaptureOf(stream) != nullptr) {
    return cuda_emu::detail::RefuseInCapture(
        "cudaStreamQuery of a capturing stream");
  }
  if (cuda_emu::detail::StreamPending(stream)) {
    cuda_emu::detail::DrainStream(stream->serial);
    return cudaErrorNotReady;
  }
  return StickyError();
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                unsigned int) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaStreamWaitEvent"))
    return e;
  if (cudaError_t e =
          cuda_emu::detail::CheckEvent(event, "cudaStreamWaitEvent"))
    return e;
  // In a capture: a wait on an event recorded in it makes the stream join the
  // capture (its later work is recorded too, after what it waits for in issue
  // order); a capturing stream may not wait on anything else.
  {
    CUgraph_st* graph = cuda_emu::detail::CaptureOf(stream);
    std::unique_lock<std::mutex> lock(S().mu);
    CUgraph_st* recorded_in = event->captured_in;
    if (recorded_in != nullptr || graph != nullptr) {
      if (recorded_in == nullptr ||
          (graph != nullptr && graph != recorded_in)) {
        lock.unlock();
        cuda_emu::detail::Report(
            "cudaStreamWaitEvent: a capturing stream waits on an event "
            "recorded outside its capture (cudaErrorStreamCaptureIsolation)",
            false);
        return SetLastError(cudaErrorStreamCaptureIsolation);
      }
      if (graph == nullptr && !cuda_emu::detail::IsLegacyStream(stream)) {
        stream->capture = recorded_in;  // joins, as a new lane
        stream->capture_lane = static_cast<int>(recorded_in->lane_flags.size());
        recorded_in->lane_flags.push_back(stream->flags);
      }
      if (!cuda_emu::detail::IsLegacyStream(stream)) {
        recorded_in->ops.push_back(GraphOp{GraphOp::kWait, stream->capture_lane,
                                           nullptr, event->captured_record});
      }
      // The recording stream is waited for up to the record.
      if (cudaStream_t from = event->captured_on;
          from != stream && S().streams.count(from) != 0) {
        from->waited_ops = std::max(from->waited_ops, event->captured_after);
      }
      return StickyError();
    }
  }
  // Waits for the event's last record as of this call.
  uint64_t serial, target;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    serial = event->stream_serial;
    target = event->target;
  }
  if (serial != 0) {
    cuda_emu::detail::Submit(stream, [serial, target] {
      cuda_emu::detail::DrainStream(serial, target);
    });
  }
  return StickyError();
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* leastPriority,
                                             int* greatestPriority) {
  if (leastPriority) *leastPriority = 0;
  if (greatestPriority) *greatestPriority = -5;
  return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn,
                               void* userData) {
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaLaunchHostFunc"))
    return e;
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  cuda_emu::detail::Submit(stream, [fn, userData] { fn(userData); });
  return cudaSuccess;
}

// ---- Stream capture and graphs ----
// What a capture records is each operation as issued (launches, async copies
// and fills, event records, host functions, graph launches), into the graph
// of the stream that began it and of every stream that joined it by waiting
// on an event recorded in it; a launch of the instantiated graph runs them
// all in the launching stream's order (see CUgraphExec_st). Calls a capture
// does not allow (synchronizing a capturing stream, cudaMalloc / cudaFree, the
// legacy stream, pageable copies, a wait on an event from outside) are
// reported and invalidate it: its end returns
// cudaErrorStreamCaptureInvalidated; a joined stream the origin did not wait
// for to its last operation fails the end (cudaErrorStreamCaptureUnjoined).

cudaError_t cudaStreamBeginCapture(cudaStream_t stream,
                                   enum cudaStreamCaptureMode) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaStreamBeginCapture")) {
    return e;
  }
  if (d::IsLegacyStream(stream)) {
    return ApiError(cudaErrorStreamCaptureUnsupported,
                    "cudaStreamBeginCapture: the legacy default stream cannot "
                    "capture");
  }
  if (d::CaptureOf(stream) != nullptr) {
    return ApiError(cudaErrorIllegalState,
                    "cudaStreamBeginCapture: the stream is already capturing");
  }
  std::lock_guard<std::mutex> lock(S().mu);
  auto* graph = new CUgraph_st();
  S().graphs.insert(graph);
  stream->capture = graph;
  stream->capture_origin = true;
  stream->capture_lane = 0;
  graph->lane_flags.push_back(stream->flags);
  ++S().captures;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaStreamEndCapture")) return e;
  if (pGraph == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaStreamEndCapture with a null graph pointer");
  }
  *pGraph = nullptr;
  CUgraph_st* graph = d::CaptureOf(stream);
  if (graph == nullptr || !stream->capture_origin) {
    return ApiError(cudaErrorStreamCaptureUnmatched,
                    "cudaStreamEndCapture: the stream did not begin a capture");
  }
  std::string error;
  bool unjoined = false;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    for (cudaStream_t st : S().streams) {
      if (st->capture == graph) {
        // A joined stream with work the capture's other streams never waited
        // for: CUDA refuses the end.
        if (!st->capture_origin && st->captured_ops > st->waited_ops) {
          unjoined = true;
        }
        st->capture = nullptr;
        st->capture_origin = false;
        st->capture_lane = 0;
        st->captured_ops = st->waited_ops = 0;
      }
    }
    for (cudaEvent_t ev : S().events) {
      if (ev->captured_in == graph) ev->captured_in = nullptr;
    }
    --S().captures;
    error = graph->error;
    unjoined = unjoined && error.empty();
    if (unjoined) {
      error =
          "a stream that joined it and was not waited for to its last "
          "operation";
    }
    if (!error.empty()) {
      S().graphs.erase(graph);
      delete graph;
    }
  }
  if (unjoined) {
    return ApiError(cudaErrorStreamCaptureUnjoined,
                    "cudaStreamEndCapture: the capture has " + error);
  }
  if (!error.empty()) {
    return ApiError(
        cudaErrorStreamCaptureInvalidated,
        "cudaStreamEndCapture: the capture was invalidated by " + error);
  }
  *pGraph = graph;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream,
                                  enum cudaStreamCaptureStatus* status) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaStreamIsCapturing")) return e;
  if (status == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaStreamIsCapturing with a null status pointer");
  }
  CUgraph_st* graph = d::CaptureOf(stream);
  *status = graph == nullptr       ? cudaStreamCaptureStatusNone
            : graph->error.empty() ? cudaStreamCaptureStatusActive
                                   : cudaStreamCaptureStatusInvalidated;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                 unsigned long long) {
  if (pGraphExec == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaGraphInstantiate with a null pointer");
  }
  std::lock_guard<std::mutex> lock(S().mu);
  if (S().graphs.count(graph) == 0) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaGraphInstantiate: not a live cudaGraph_t");
  }
  auto* exec = new CUgraphExec_st{
      std::make_shared<const std::vector<GraphOp>>(graph->ops),
      graph->lane_flags,
      graph->records,
      {},
      {}};
  S().graph_execs.insert(exec);
  *pGraphExec = exec;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  namespace d = cuda_emu::detail;
  if (cudaError_t e = d::CheckStream(stream, "cudaGraphLaunch")) return e;
  std::shared_ptr<const std::vector<GraphOp>> ops;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    if (S().graph_execs.count(graphExec) == 0) {
      return ApiError(cudaErrorInvalidResourceHandle,
                      "cudaGraphLaunch: not a live cudaGraphExec_t");
    }
    ops = graphExec->ops;
  }
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) return sticky;
  if (!d::QueuesWork(stream) || d::CaptureOf(stream) != nullptr) {
    // In issue order, at once or as one operation of the capture.
    d::Submit(stream, [ops] {
      for (const GraphOp& op : *ops) {
        if (op.fn) op.fn();
      }
    });
    return StickyError();
  }
  // Lane by lane (see CUgraphExec_st).
  while (graphExec->lane_streams.size() + 1 < graphExec->lane_flags.size()) {
    cudaStream_t lane = nullptr;
    const unsigned flags =
        graphExec->lane_flags[graphExec->lane_streams.size() + 1];
    if (cudaError_t e = cudaStreamCreateWithFlags(&lane, flags)) return e;
    graphExec->lane_streams.push_back(lane);
  }
  while (static_cast<int>(graphExec->record_events.size()) <
         graphExec->records) {
    cudaEvent_t event = nullptr;
    if (cudaError_t e =
            cudaEventCreateWithFlags(&event, cudaEventDisableTiming)) {
      return e;
    }
    graphExec->record_events.push_back(event);
  }
  for (const GraphOp& op : *ops) {
    cudaStream_t on =
        op.lane == 0 ? stream : graphExec->lane_streams[op.lane - 1];
    switch (op.kind) {
      case GraphOp::kWork:
        d::Submit(on, op.fn);
        break;
      case GraphOp::kRecord:
        d::Submit(on, op.fn);
        cudaEventRecord(graphExec->record_events[op.record], on);
        break;
      case GraphOp::kWait:
        cudaStreamWaitEvent(on, graphExec->record_events[op.record], 0);
        break;
    }
  }
  return StickyError();
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  {
    std::lock_guard<std::mutex> lock(S().mu);
    if (S().graph_execs.erase(graphExec) == 0) {
      return ApiError(cudaErrorInvalidResourceHandle,
                      "cudaGraphExecDestroy: not a live cudaGraphExec_t");
    }
  }
  // Its lanes' queued work runs first (as a launch completes on a GPU).
  for (cudaStream_t lane : graphExec->lane_streams) cudaStreamDestroy(lane);
  for (cudaEvent_t event : graphExec->record_events) cudaEventDestroy(event);
  delete graphExec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  std::lock_guard<std::mutex> lock(S().mu);
  if (S().graphs.erase(graph) == 0) {
    return ApiError(cudaErrorInvalidResourceHandle,
                    "cudaGraphDestroy: not a live cudaGraph_t");
  }
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaEventCreate with a null pointer");
  }
  std::lock_guard<std::mutex> lock(S().mu);
  cudaEvent_t e = new CUevent_st{flags, false, {}, S().next_event_serial++};
  S().events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
// The operation a record queues (on a lazy stream, or in a capture, where each
// launch of the graph runs it): marks `event` recorded when it runs, unless it
// was destroyed before (CUDA allows that).
namespace {
std::function<void()> MarkRecorded(cudaEvent_t event) {
  return [event, serial = event->serial] {
    std::lock_guard<std::mutex> lock(S().mu);
    if (S().events.count(event) != 0 && event->serial == serial) {
      event->recorded = true;
      event->when = std::chrono::steady_clock::now();
    }
  };
}
}  // namespace

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (cudaError_t e = cuda_emu::detail::CheckEvent(event, "cudaEventRecord")) {
    return e;
  }
  if (cudaError_t e =
          cuda_emu::detail::CheckStream(stream, "cudaEventRecord")) {
    return e;
  }
  if (CUgraph_st* graph = cuda_emu::detail::CaptureOf(stream)) {
    // Recorded into the capture: a wait on it joins the capture; each launch
    // of the graph marks it recorded.
    std::lock_guard<std::mutex> lock(S().mu);
    event->captured_in = graph;
    event->captured_on = stream;
    event->captured_after = stream->captured_ops + 1;  // with the record
    event->captured_record = graph->records++;
    event->stream_serial = 0;
    graph->ops.push_back(GraphOp{GraphOp::kRecord, stream->capture_lane,
                                 MarkRecorded(event), event->captured_record});
    ++stream->captured_ops;
    return StickyError();
  }
  {
    std::lock_guard<std::mutex> lock(S().mu);
    event->captured_in = nullptr;
  }
  if (!cuda_emu::detail::QueuesWork(stream)) {
    if (cuda_emu::detail::IsLegacyStream(stream)) {
      cuda_emu::detail::SyncWithLegacyStream();
    }
    std::lock_guard<std::mutex> lock(S().mu);
    event->recorded = true;
    event->when = std::chrono::steady_clock::now();
    event->stream_serial = 0;
    return StickyError();
  }
  {
    std::lock_guard<std::mutex> lock(S().mu);
    event->stream_serial = stream->serial;
    event->target = stream->queued + 1;  // once the record below has run
  }
  cuda_emu::detail::Submit(stream, MarkRecorded(event));
  return StickyError();
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (cudaError_t e =
          cuda_emu::detail::CheckEvent(event, "cudaEventSynchronize"))
    return e;
  if (event->captured_in != nullptr && S().captures.load() > 0) {
    return cuda_emu::detail::RefuseInCapture(
        "cudaEventSynchronize of an event recorded in a capture");
  }
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::DrainEvent(event);
  return StickyError();
}
// As cudaStreamQuery: not ready once, having run the work.
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (cudaError_t e = cuda_emu::detail::CheckEvent(event, "cudaEventQuery")) {
    return e;
  }
  if (cuda_emu::detail::EventPending(event)) {
    cuda_emu::detail::DrainEvent(event);
    return cudaErrorNotReady;
  }
  return StickyError();
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start,
                                 cudaEvent_t end) {
  if (ms == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaEventElapsedTime with a null pointer");
  }
  if (cudaError_t e =
          cuda_emu::detail::CheckEvent(start, "cudaEventElapsedTime"))
    return e;
  if (cudaError_t e =
          cuda_emu::detail::CheckEvent(end, "cudaEventElapsedTime")) {
    return e;
  }
  // Either record still queued: not ready (the call does not wait).
  if (cuda_emu::detail::EventPending(start) ||
      cuda_emu::detail::EventPending(end)) {
    return SetLastError(cudaErrorNotReady);
  }
  std::lock_guard<std::mutex> lock(S().mu);
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    return SetLastError(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) {
    return SetLastError(cudaErrorInvalidResourceHandle);
  }
  *ms =
      std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  {
    std::lock_guard<std::mutex> lock(S().mu);
    auto it = S().events.find(event);
    if (it != S().events.end()) {
      S().events.erase(it);
      delete event;
      return cudaSuccess;
    }
  }
  return ApiError(cudaErrorInvalidResourceHandle,
                  "cudaEventDestroy: not a live cudaEvent_t (double destroy?)");
}

// ---- Device and errors ----

cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e =
          cuda_emu::detail::RefuseInCapture("cudaDeviceSynchronize")) {
    return e;
  }
  cuda_emu::detail::HostWaitScope wait;
  cuda_emu::detail::SyncDevice();
  return StickyError();
}

// Frees everything and clears the sticky error, as resetting a device does.
cudaError_t cudaDeviceReset(void) {
  cuda_emu::detail::SyncDevice();
  cuda_emu::detail::FreeAll();
  S().sticky = cudaSuccess;
  cuda_emu::detail::tls_last_error = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = cuda_emu::detail::tls_last_error;
  cuda_emu::detail::tls_last_error = cudaSuccess;
  cudaError_t sticky = StickyError();
  return sticky != cudaSuccess ? sticky : e;
}
cudaError_t cudaPeekAtLastError(void) {
  cudaError_t sticky = StickyError();
  return sticky != cudaSuccess ? sticky : cuda_emu::detail::tls_last_error;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) {
    return ApiError(cudaErrorInvalidDevice,
                    "cudaSetDevice(" + std::to_string(device) +
                        "): the emulator has one device");
  }
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* driverVersion) {
  *driverVersion = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  *runtimeVersion = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  namespace d = cuda_emu::detail;
  if (prop == nullptr) {
    return ApiError(cudaErrorInvalidValue,
                    "cudaGetDeviceProperties with a null pointer");
  }
  if (device != 0) return SetLastError(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name),
                "cuda_emu (emulated NVIDIA H100, sm_90)");
  prop->totalGlobalMem = d::kGlobalMemBytes;
  prop->sharedMemPerBlock = d::kSmemPerBlockDefault;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = d::kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = d::kMaxBlockDimX;
  prop->maxThreadsDim[1] = d::kMaxBlockDimY;
  prop->maxThreadsDim[2] = d::kMaxBlockDimZ;
  prop->maxGridSize[0] = static_cast<int>(d::kMaxGridDimX);
  prop->maxGridSize[1] = static_cast<int>(d::kMaxGridDimYZ);
  prop->maxGridSize[2] = static_cast<int>(d::kMaxGridDimYZ);
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->texturePitchAlignment = 32;
  prop->multiProcessorCount = d::kSmCount;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->ECCEnabled = 1;
  prop->asyncEngineCount = 3;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 5120;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->persistingL2CacheMaxSize = 30 * 1024 * 1024;
  prop->maxThreadsPerMultiProcessor = d::kMaxThreadsPerSm;
  prop->streamPrioritiesSupported = 1;
  prop->globalL1CacheSupported = 1;
  prop->localL1CacheSupported = 1;
  prop->sharedMemPerMultiprocessor = d::kSmemPerSm;
  prop->regsPerMultiprocessor = 65536;
  prop->managedMemory = 1;
  prop->concurrentManagedAccess = 1;
  prop->computePreemptionSupported = 1;
  prop->cooperativeLaunch = 1;
  prop->sharedMemPerBlockOptin = d::kSmemPerBlockOptin;
  prop->maxBlocksPerMultiProcessor = d::kMaxBlocksPerSm;
  prop->reservedSharedMemPerBlock = d::kReservedSmemPerBlock;
  prop->memoryPoolsSupported = 1;
  prop->clusterLaunch = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr,
                                   int device) {
  namespace d = cuda_emu::detail;
  if (device != 0) return SetLastError(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = d::kMaxThreadsPerBlock;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = d::kMaxBlockDimX;
      break;
    case cudaDevAttrMaxBlockDimY:
      *value = d::kMaxBlockDimY;
      break;
    case cudaDevAttrMaxBlockDimZ:
      *value = d::kMaxBlockDimZ;
      break;
    case cudaDevAttrMaxGridDimX:
      *value = static_cast<int>(d::kMaxGridDimX);
      break;
    case cudaDevAttrMaxGridDimY:
    case cudaDevAttrMaxGridDimZ:
      *value = static_cast<int>(d::kMaxGridDimYZ);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(d::kSmemPerBlockDefault);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(d::kSmemPerBlockOptin);
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = static_cast<int>(d::kSmemPerSm);
      break;
    case cudaDevAttrReservedSharedMemoryPerBlock:
      *value = static_cast<int>(d::kReservedSmemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = 32;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = d::kSmCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = d::kMaxThreadsPerSm;
      break;
    case cudaDevAttrMaxBlocksPerMultiprocessor:
      *value = d::kMaxBlocksPerSm;
      break;
    case cudaDevAttrMaxRegistersPerBlock:
    case cudaDevAttrMaxRegistersPerMultiprocessor:
      *value = 65536;
      break;
    case cudaDevAttrTotalConstantMemory:
      *value = 65536;
      break;
    case cudaDevAttrL2CacheSize:
      *value = 50 * 1024 * 1024;
      break;
    case cudaDevAttrMemoryClockRate:  // kHz: HBM3 at 2.6 GHz, 3.35 TB/s
      *value = 2619000;
      break;
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = 5120;
      break;
    case cudaDevAttrConcurrentKernels:
    case cudaDevAttrUnifiedAddressing:
    case cudaDevAttrManagedMemory:
    case cudaDevAttrCooperativeLaunch:
      *value = 1;
      break;
    default:
      return ApiError(cudaErrorInvalidValue,
                      "cudaDeviceGetAttribute: attribute " +
                          std::to_string(attr) + " is not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr,
                                 int value) {
  if (func == nullptr) return SetLastError(cudaErrorInvalidDeviceFunction);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 ||
          static_cast<size_t>(value) > cuda_emu::detail::kSmemPerBlockOptin) {
        return ApiError(cudaErrorInvalidValue,
                        "cudaFuncSetAttribute("
                        "cudaFuncAttributeMaxDynamicSharedMemorySize, " +
                            std::to_string(value) +
                            "): the limit is 232448 (227 KiB)");
      }
      {
        std::lock_guard<std::mutex> lock(S().mu);
        S().max_dyn_smem[func] = static_cast<size_t>(value);
      }
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100) return SetLastError(cudaErrorInvalidValue);
      return cudaSuccess;
    default:
      return ApiError(cudaErrorInvalidValue,
                      "cudaFuncSetAttribute: attribute " +
                          std::to_string(attr) + " is not emulated");
  }
}

cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes* attr,
                                  const void* func) {
  if (attr == nullptr || func == nullptr) {
    return SetLastError(cudaErrorInvalidValue);
  }
  std::memset(attr, 0, sizeof(*attr));
  attr->maxThreadsPerBlock = cuda_emu::detail::kMaxThreadsPerBlock;
  attr->numRegs = 32;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  // Static __shared__ sizes are unknown to the emulator (see docs).
  attr->sharedSizeBytes = 0;
  attr->maxDynamicSharedSizeBytes =
      static_cast<int>(cuda_emu::detail::MaxDynamicSharedMemory(func));
  attr->preferredShmemCarveout = -1;
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(
    int* numBlocks, const void* func, int blockSize, size_t dynamicSMemSize) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
      numBlocks, func, blockSize, dynamicSMemSize, 0);
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
    int* numBlocks, const void*, int blockSize, size_t dynamicSMemSize,
    unsigned int) {
  namespace d = cuda_emu::detail;
  if (numBlocks == nullptr || blockSize <= 0 ||
      blockSize > d::kMaxThreadsPerBlock) {
    return SetLastError(cudaErrorInvalidValue);
  }
  const int warps = (blockSize + 31) / 32;
  int blocks = std::min(d::kMaxBlocksPerSm, d::kMaxThreadsPerSm / (warps * 32));
  const size_t smem = dynamicSMemSize + d::kReservedSmemPerBlock;
  blocks = std::min<int>(blocks, static_cast<int>(d::kSmemPerSm / smem));
  *numBlocks = blocks;
  return cudaSuccess;
}

// cudaLaunchKernel passes untyped argument pointers, which the emulator cannot
// turn back into a call; launches go through gpt2::cuda::Launch instead.
cudaError_t cudaLaunchKernel(const void*, dim3, dim3, void**, size_t,
                             cudaStream_t) {
  return ApiError(cudaErrorNotSupported,
                  "cudaLaunchKernel is not emulated; launch with GPT2_LAUNCH / "
                  "gpt2::cuda::Launch (src/cuda/launch.h)");
}

#define CUDA_EMU_ERRORS_(X)                                                   \
  X(cudaSuccess, "no error")                                                  \
  X(cudaErrorInvalidValue, "invalid argument")                                \
  X(cudaErrorMemoryAllocation, "out of memory")                               \
  X(cudaErrorInitializationError, "initialization error")                     \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                     \
  X(cudaErrorLaunchTimeout, "the launch timed out and was terminated")        \
  X(cudaErrorLaunchOutOfResources, "too many resources requested for launch") \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")          \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                         \
  X(cudaErrorInvalidPitchValue, "invalid pitch argument")                     \
  X(cudaErrorInvalidSymbol, "invalid device symbol")                          \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")     \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                \
  X(cudaErrorNotReady, "device not ready")                                    \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")      \
  X(cudaErrorAssert, "device-side assert triggered")                          \
  X(cudaErrorNotSupported, "operation not supported")                         \
  X(cudaErrorStreamCaptureUnsupported,                                        \
    "operation not permitted when stream is capturing")                       \
  X(cudaErrorStreamCaptureInvalidated,                                        \
    "operation failed due to a previous error during capture")                \
  X(cudaErrorStreamCaptureUnmatched,                                          \
    "capture was not initiated in this stream")                               \
  X(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work")     \
  X(cudaErrorStreamCaptureIsolation,                                          \
    "dependency created on uncaptured work in another stream")                \
  X(cudaErrorIllegalState, "the operation is not permitted in this state")    \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                  \
  X(cudaErrorUnknown, "unknown error")

const char* cudaGetErrorString(cudaError_t error) {
#define CUDA_EMU_CASE_(code, text) \
  case code:                       \
    return text;
  switch (error) { CUDA_EMU_ERRORS_(CUDA_EMU_CASE_) default : break; }
#undef CUDA_EMU_CASE_
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
#define CUDA_EMU_CASE_(code, text) \
  case code:                       \
    return #code;
  switch (error) { CUDA_EMU_ERRORS_(CUDA_EMU_CASE_) default : break; }
#undef CUDA_EMU_CASE_
  return "cudaErrorUnknown";
}
