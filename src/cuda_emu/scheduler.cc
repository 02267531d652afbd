// Runs emulated kernels: validates a launch, then runs each block's threads as
// cooperative fibers (Boost.Context) that switch only at barriers, warp
// collectives and spin waits, and reports misuse of those instead of hanging.
#include <cxxabi.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "src/cuda_emu/api.h"
#include "src/cuda_emu/device.h"
#include "src/cuda_emu/internal.h"
#include "src/cuda_emu/kernel_launch.h"

namespace cuda_emu {
namespace detail {

__thread DeviceCoords tls_coords;

namespace {

namespace bctx = boost::context;

constexpr int kWarp = 32;
constexpr size_t kSmemGuard = 256;
constexpr unsigned char kPoison = 0xff;

unsigned char SmemCanary(size_t i) {
  return static_cast<unsigned char>(i * 0x9d + 0x3b);
}

// ---- Settings ----

struct Settings {
  std::atomic<int> schedule{static_cast<int>(Schedule::kForward)};
  std::atomic<uint64_t> seed{0x9e3779b97f4a7c15ull};
  std::atomic<int> host_threads{1};
  std::atomic<double> spin_timeout{2.0};
  std::atomic<int> block_jitter_us{0};
  std::atomic<bool> deferred_copies{false};
  size_t stack_bytes = 256 * 1024;
  std::atomic<uint64_t> launches{0};

  Settings() {
    if (const char* s = std::getenv("CUDA_EMU_SCHEDULE")) {
      std::string v(s);
      if (v.rfind("reverse", 0) == 0) {
        schedule = static_cast<int>(Schedule::kReverse);
      }
      if (v.rfind("random", 0) == 0) {
        schedule = static_cast<int>(Schedule::kRandom);
        size_t colon = v.find(':');
        if (colon != std::string::npos) {
          seed = std::strtoull(v.c_str() + colon + 1, nullptr, 10);
        }
      }
    }
    if (const char* s = std::getenv("CUDA_EMU_HOST_THREADS")) {
      host_threads = std::max(1, std::atoi(s));
    }
    if (const char* s = std::getenv("CUDA_EMU_BLOCK_JITTER_US")) {
      block_jitter_us = std::max(0, std::atoi(s));
    }
    if (const char* s = std::getenv("CUDA_EMU_DEFERRED_COPIES")) {
      deferred_copies = std::string(s) == "1";
    }
    if (const char* s = std::getenv("CUDA_EMU_SPIN_TIMEOUT_MS")) {
      spin_timeout = std::atof(s) / 1000.0;
    }
    if (const char* s = std::getenv("CUDA_EMU_STACK_KIB")) {
      stack_bytes = std::max<size_t>(16, std::strtoull(s, nullptr, 10)) * 1024;
    }
  }
};

Settings& GetSettings() {
  static Settings* settings = new Settings();
  return *settings;
}

// ---- Fiber stacks ----
// Stacks are mmap'd with a PROT_NONE guard page below them (an overflowing
// kernel crashes instead of corrupting a neighbour) and kept for reuse: a
// barrier-free kernel runs every thread on the same recycled stack.
class StackPool {
 public:
  explicit StackPool(size_t bytes) {
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    page_ = page;
    bytes_ = (bytes + page - 1) / page * page;
  }
  ~StackPool() {
    for (const bctx::stack_context& sc : free_) {
      munmap(static_cast<char*>(sc.sp) - sc.size - page_, sc.size + page_);
    }
  }
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  bctx::stack_context Allocate() {
    if (!free_.empty()) {
      bctx::stack_context sc = free_.back();
      free_.pop_back();
      return sc;
    }
    void* base = mmap(nullptr, bytes_ + page_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      std::fprintf(stderr,
                   "[cuda_emu] fatal: cannot map a %zu-byte fiber stack\n",
                   bytes_);
      std::abort();
    }
    mprotect(base, page_, PROT_NONE);
    bctx::stack_context sc;
    sc.size = bytes_;
    sc.sp = static_cast<char*>(base) + page_ + bytes_;
    return sc;
  }
  void Release(const bctx::stack_context& sc) { free_.push_back(sc); }

 private:
  size_t page_;
  size_t bytes_;
  std::vector<bctx::stack_context> free_;
};

struct PooledStack {
  StackPool* pool;
  bctx::stack_context allocate() { return pool->Allocate(); }
  void deallocate(bctx::stack_context& sc) noexcept { pool->Release(sc); }
};

// ---- Reporting helpers ----

std::string Coord(uint3 v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "(%u,%u,%u)", v.x, v.y, v.z);
  return buf;
}

std::string Hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string Where(const char* file, int line) {
  return std::string(Basename(file)) + ":" + std::to_string(line);
}

// "0-15,17,20-21"
std::string LaneList(unsigned mask) {
  std::string out;
  for (int i = 0; i < kWarp;) {
    if (!((mask >> i) & 1u)) {
      ++i;
      continue;
    }
    int j = i;
    while (j + 1 < kWarp && ((mask >> (j + 1)) & 1u)) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(i);
    if (j > i) out += "-" + std::to_string(j);
    i = j + 1;
  }
  return out;
}

int LowestLane(unsigned mask) { return __builtin_ctz(mask); }

const char* OpName(WarpOpKind kind) {
  switch (kind) {
    case WarpOpKind::kSyncWarp:
      return "__syncwarp";
    case WarpOpKind::kShflIdx:
      return "__shfl_sync";
    case WarpOpKind::kShflUp:
      return "__shfl_up_sync";
    case WarpOpKind::kShflDown:
      return "__shfl_down_sync";
    case WarpOpKind::kShflXor:
      return "__shfl_xor_sync";
    case WarpOpKind::kBallot:
      return "__ballot_sync";
    case WarpOpKind::kAny:
      return "__any_sync";
    case WarpOpKind::kAll:
      return "__all_sync";
    case WarpOpKind::kReduceAddU:
    case WarpOpKind::kReduceAddI:
      return "__reduce_add_sync";
    case WarpOpKind::kReduceMinU:
    case WarpOpKind::kReduceMinI:
      return "__reduce_min_sync";
    case WarpOpKind::kReduceMaxU:
    case WarpOpKind::kReduceMaxI:
      return "__reduce_max_sync";
    case WarpOpKind::kReduceAnd:
      return "__reduce_and_sync";
    case WarpOpKind::kReduceOr:
      return "__reduce_or_sync";
    case WarpOpKind::kReduceXor:
      return "__reduce_xor_sync";
    case WarpOpKind::kMatchAny:
      return "__match_any_sync";
    case WarpOpKind::kMatchAll:
      return "__match_all_sync";
    case WarpOpKind::kGather:
      return "cuda_emu::WarpGather";
  }
  return "?";
}

const char* BarrierName(BarrierKind kind) {
  switch (kind) {
    case BarrierKind::kSync:
      return "__syncthreads";
    case BarrierKind::kCount:
      return "__syncthreads_count";
    case BarrierKind::kAnd:
      return "__syncthreads_and";
    case BarrierKind::kOr:
      return "__syncthreads_or";
  }
  return "?";
}

bool IsShuffle(WarpOpKind kind) {
  return kind == WarpOpKind::kShflIdx || kind == WarpOpKind::kShflUp ||
         kind == WarpOpKind::kShflDown || kind == WarpOpKind::kShflXor;
}

// Collectives that read other lanes' values: every lane they name must take
// part.
bool ReadsOtherLanes(WarpOpKind kind) {
  return IsShuffle(kind) || kind == WarpOpKind::kGather;
}

// ---- Launch and block state ----

struct LaunchInfo {
  std::string name;
  uint3 grid;
  uint3 block;
  size_t smem;
  KernelBody body;
  int threads;
  uint64_t launch_index;
  Schedule schedule;
  uint64_t seed;
};

enum class ThreadState : uint8_t {
  kNotStarted,
  kRunnable,
  kAtBarrier,
  kAtWarpOp,
  kExited,
  kAborted,
};

struct EmuThread {
  bctx::fiber fiber;  // the thread's context while it is suspended
  uint3 idx;
  int linear;
  ThreadState state;
  const char* file;  // where it waits
  int line;
  WarpOpKind op_kind;
  unsigned op_mask;
  WarpResult result;
  int barrier_result;
  bool in_activemask;  // yielding inside __activemask()
  // ThreadHardwareState's, each live once this block's run asked for it.
  bool hardware_state_live[kHardwareStates];
  std::vector<unsigned char> hardware_state[kHardwareStates];
};

// A warp collective that some lanes of `mask` have reached.
struct PendingOp {
  WarpOpKind kind;
  unsigned mask;
  unsigned expected;  // the lanes that must arrive
  unsigned arrived;
  int width;
  int size;
  const char* file;
  int line;
  uint64_t value[kWarp];
  int param[kWarp];
};

struct WarpState {
  unsigned present;  // lanes that exist (the last warp may be partial)
  unsigned exited;
  unsigned at_barrier;  // lanes waiting at __syncthreads
  std::vector<PendingOp> pending;
  int lane_order[kWarp];  // present lanes in schedule order
  int lane_count;
};

class BlockRunner;
__thread BlockRunner* tls_runner = nullptr;

class BlockRunner {
 public:
  BlockRunner()
      : pool_(GetSettings().stack_bytes),
        arena_(new unsigned char[kSmemPerBlockOptin + 2 * kSmemGuard + 2048]) {
    uintptr_t p = reinterpret_cast<uintptr_t>(arena_.get()) + kSmemGuard;
    smem_ = reinterpret_cast<unsigned char*>((p + 1023) & ~uintptr_t{1023});
  }

  // Runs one block to completion. On a fault returns false with the report in
  // *error; the block's remaining fibers are unwound.
  bool Run(const LaunchInfo& launch, uint3 block_idx, std::string* error) {
    Prepare(launch, block_idx);
    BlockRunner* outer = tls_runner;
    tls_runner = this;
    // Control comes back here only when no thread can run any more (all
    // exited, a deadlock, or a fault): fibers hand over to each other
    // directly (Suspend), one context switch per wait.
    if (ready_count_ > 0) {
      switching_from_ = nullptr;
      bctx::fiber from = SwitchTo(PopReady());
      StoreContinuation(std::move(from));
    }
    current_ = nullptr;
    if (!failed_ && exited_ != n_) Fail(DeadlockReport());
    if (failed_) Unwind();
    CheckSharedGuards();
    tls_runner = outer;
    if (failed_) *error = error_;
    return !failed_;
  }

  // ---- Called from the fibers (device functions) ----

  int Barrier(BarrierKind kind, int predicate, const char* file, int line) {
    EmuThread& t = *current_;
    NoteProgress();
    if (exited_ > 0) {
      const EmuThread& gone = threads_[first_exited_];
      FailFromFiber(Describe(t) + " reached " + BarrierName(kind) + "() at " +
                    Where(file, line) + ", but " + Describe(gone) +
                    " had exited without reaching it; every thread of a "
                    "block must reach each __syncthreads()");
    }
    if (barrier_arrived_ == 0) {
      barrier_kind_ = kind;
      barrier_file_ = file;
      barrier_line_ = line;
      barrier_acc_ = kind == BarrierKind::kAnd ? 1 : 0;
    } else if (kind != barrier_kind_) {
      FailFromFiber(Describe(t) + " reached " + BarrierName(kind) + "() at " +
                    Where(file, line) + " while " +
                    std::to_string(barrier_arrived_) + " thread(s) wait at " +
                    BarrierName(barrier_kind_) + "() at " +
                    Where(barrier_file_, barrier_line_) +
                    "; mixing barrier variants is undefined");
    }
    const int warp = t.linear / kWarp;
    const unsigned bit = 1u << (t.linear % kWarp);
    for (const PendingOp& op : warps_[warp].pending) {
      if (op.mask & bit) {
        FailFromFiber(Describe(t) + " waits at " + BarrierName(kind) +
                      "() at " + Where(file, line) + ", but lane(s) " +
                      LaneList(op.arrived) + " of its warp wait for it at " +
                      OpName(op.kind) + "(mask " + Hex(op.mask) + ") at " +
                      Where(op.file, op.line) + "; deadlock");
      }
    }
    ++barrier_arrived_;
    switch (kind) {
      case BarrierKind::kSync:
        break;
      case BarrierKind::kCount:
        barrier_acc_ += predicate != 0;
        break;
      case BarrierKind::kAnd:
        barrier_acc_ &= predicate != 0;
        break;
      case BarrierKind::kOr:
        barrier_acc_ |= predicate != 0;
        break;
    }
    t.state = ThreadState::kAtBarrier;
    t.file = file;
    t.line = line;
    warps_[warp].at_barrier |= bit;
    if (barrier_arrived_ == n_) {
      // Every thread arrived: release them all, in schedule order.
      for (int k = 0; k < n_; ++k) {
        EmuThread& w = threads_[order_[k]];
        w.barrier_result = barrier_acc_;
        MakeRunnable(w);
      }
      for (int w = 0; w * kWarp < n_; ++w) warps_[w].at_barrier = 0;
      barrier_arrived_ = 0;
    }
    Suspend();
    return t.barrier_result;
  }

  WarpResult WarpOp(WarpOpKind kind, unsigned mask, uint64_t bits, int size,
                    int param, int width, const char* file, int line) {
    EmuThread& t = *current_;
    NoteProgress();
    const int warp = t.linear / kWarp;
    const int lane = t.linear % kWarp;
    const unsigned bit = 1u << lane;
    WarpState& ws = warps_[warp];
    // Formatted only for a report: this is the hot path of every shuffle.
    auto call = [&] {
      return std::string(OpName(kind)) + "(mask " + Hex(mask) + ") at " +
             Where(file, line);
    };
    if (!(mask & bit)) {
      FailFromFiber(Describe(t) + " calls " + call() +
                    ", but the mask does not include its own lane " +
                    std::to_string(lane));
    }
    // Shuffles read other lanes' values, so every lane they name must take
    // part. __syncwarp and the votes, as documented, need only the non-exited
    // lanes of the mask (lanes past the end of the block count as exited).
    const bool strict = ReadsOtherLanes(kind);
    if (strict && (mask & ~ws.present)) {
      FailFromFiber(
          Describe(t) + " calls " + call() + ", but the mask names lane(s) " +
          LaneList(mask & ~ws.present) + " that do not exist: the block has " +
          std::to_string(n_) + " threads, so warp " + std::to_string(warp) +
          " has lanes " + LaneList(ws.present));
    }
    if (strict && (mask & ws.exited)) {
      const EmuThread& gone =
          threads_[warp * kWarp + LowestLane(mask & ws.exited)];
      FailFromFiber(Describe(t) + " calls " + call() +
                    ", but the mask names lane(s) " +
                    LaneList(mask & ws.exited) + " that exited (" +
                    Describe(gone) + " returned without taking part)");
    }
    if (IsShuffle(kind) &&
        (width < 1 || width > kWarp || (width & (width - 1)))) {
      FailFromFiber(Describe(t) + " calls " + call() + " with width " +
                    std::to_string(width) +
                    ", which is not a power of 2 in [1, 32]");
    }
    if (kind == WarpOpKind::kGather && size <= 0) {
      FailFromFiber(Describe(t) + " calls " + call() + " with " +
                    std::to_string(size) + " bytes; it takes at least 1");
    }
    if (unsigned waiting = mask & ws.at_barrier) {
      const EmuThread& other = threads_[warp * kWarp + LowestLane(waiting)];
      FailFromFiber(Describe(t) + " calls " + call() + ", but " +
                    Describe(other) + ", named in the mask, waits at " +
                    BarrierName(barrier_kind_) + "() at " +
                    Where(other.file, other.line) + "; deadlock");
    }
    const unsigned live = ws.present & ~ws.exited;
    PendingOp* op = nullptr;
    for (PendingOp& p : ws.pending) {
      if (p.mask == mask) {
        if (p.kind != kind || p.width != width || p.size != size) {
          FailFromFiber(Describe(t) + " calls " + call() + " (width " +
                        std::to_string(width) + "), but lane(s) " +
                        LaneList(p.arrived) + " with the same mask wait at " +
                        OpName(p.kind) + " (width " + std::to_string(p.width) +
                        ") at " + Where(p.file, p.line) +
                        "; all lanes of a mask must make the same call");
        }
        op = &p;
      } else if (p.mask & mask & live) {
        FailFromFiber(Describe(t) + " calls " + call() + ", but lane(s) " +
                      LaneList(p.arrived) + " wait at " + OpName(p.kind) +
                      "(mask " + Hex(p.mask) + ") at " + Where(p.file, p.line) +
                      "; the masks overlap, so neither call can complete "
                      "(every lane named in a mask must make the same call "
                      "with the same mask)");
      }
    }
    if (op == nullptr) {
      ws.pending.emplace_back();
      op = &ws.pending.back();
      op->kind = kind;
      op->mask = mask;
      op->expected = strict ? mask : mask & live;
      op->arrived = 0;
      op->width = width;
      op->size = size;
      op->file = file;
      op->line = line;
    }
    op->value[lane] = bits;
    op->param[lane] = param;
    op->arrived |= bit;
    t.state = ThreadState::kAtWarpOp;
    t.file = file;
    t.line = line;
    t.op_kind = kind;
    t.op_mask = mask;
    if (op->arrived == op->expected) {
      Complete(warp, *op);
      ws.pending.erase(ws.pending.begin() + (op - ws.pending.data()));
    }
    Suspend();
    return t.result;
  }

  // Fibers never diverge the way hardware warps do, so "the lanes executing
  // together now" is approximated as: wait until every other lane of the warp
  // has exited or stopped at a sync point (or here), then return the lanes
  // that have not exited. That is what `if (...) return; __activemask()`
  // gives on a GPU.
  unsigned ActiveMask() {
    EmuThread& t = *current_;
    const int warp = t.linear / kWarp;
    const WarpState& ws = warps_[warp];
    for (;;) {
      bool settled = true;
      for (unsigned m = ws.present & ~(1u << (t.linear % kWarp)); m;
           m &= m - 1) {
        const EmuThread& o = threads_[warp * kWarp + LowestLane(m)];
        if (o.state == ThreadState::kNotStarted ||
            (o.state == ThreadState::kRunnable && !o.in_activemask)) {
          settled = false;
          break;
        }
      }
      if (settled) break;
      t.in_activemask = true;
      MakeRunnable(t);
      Suspend();
    }
    t.in_activemask = false;
    return ws.present & ~ws.exited;
  }

  void Yield(const char* file, int line) {
    EmuThread& t = *current_;
    // The clock is read only while spinning, never on the barrier fast path.
    if (progress_ != spin_epoch_) {
      spin_epoch_ = progress_;
      spin_start_ = std::chrono::steady_clock::now();
      spins_ = 0;
    }
    if (++spins_ % 1024 == 0) {
      const double idle = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - spin_start_)
                              .count();
      if (idle > SpinTimeoutSeconds()) {
        FailFromFiber(
            Describe(t) + " spins at " + Where(file, line) +
            " (an atomicCAS or __nanosleep loop) and no thread of the block "
            "made progress for " +
            std::to_string(idle) +
            " s; livelock (the emulator runs blocks one after another "
            "unless CUDA_EMU_HOST_THREADS > 1)");
      }
    }
    if (GetSettings().host_threads.load(std::memory_order_relaxed) > 1) {
      std::this_thread::yield();  // another host thread may hold the flag
    }
    MakeRunnable(t);
    Suspend();
  }

  void* dynamic_smem() const { return smem_; }

  void* HardwareState(HardwareState which, size_t bytes) {
    EmuThread& t = *current_;
    const int i = static_cast<int>(which);
    std::vector<unsigned char>& state = t.hardware_state[i];
    if (!t.hardware_state_live[i]) {
      state.assign(bytes, 0);
      t.hardware_state_live[i] = true;
    } else if (state.size() < bytes) {
      FailFromFiber(Describe(t) + " asked for " + std::to_string(bytes) +
                    " bytes of emulated hardware state " + std::to_string(i) +
                    ", after " + std::to_string(state.size()));
    }
    return state.data();
  }

  [[noreturn]] void Fault(const char* message, const char* file, int line) {
    FailFromFiber(Describe(*current_) + ": " + message + " at " +
                  Where(file, line));
    std::abort();  // not reached: the fiber is unwound
  }

 private:
  void Prepare(const LaunchInfo& launch, uint3 block_idx) {
    launch_ = &launch;
    block_idx_ = block_idx;
    n_ = launch.threads;
    if (static_cast<int>(threads_.size()) < n_) {
      threads_.resize(n_);
      ready_.resize(n_);
    }
    const unsigned bx = launch.block.x, by = launch.block.y;
    for (int i = 0; i < n_; ++i) {
      EmuThread& t = threads_[i];
      t.idx = make_uint3(i % bx, (i / bx) % by, i / (bx * by));
      t.linear = i;
      t.state = ThreadState::kNotStarted;
      t.in_activemask = false;
      for (bool& live : t.hardware_state_live) live = false;
      t.file = nullptr;
      t.line = 0;
    }
    order_.resize(n_);
    for (int i = 0; i < n_; ++i) order_[i] = i;
    if (launch.schedule == Schedule::kReverse) {
      std::reverse(order_.begin(), order_.end());
    } else if (launch.schedule == Schedule::kRandom) {
      const uint64_t block_linear =
          block_idx.x +
          uint64_t{launch.grid.x} *
              (block_idx.y + uint64_t{launch.grid.y} * block_idx.z);
      std::mt19937_64 rng(launch.seed ^
                          (launch.launch_index * 0x9e3779b97f4a7c15ull) ^
                          (block_linear * 0xbf58476d1ce4e5b9ull));
      std::shuffle(order_.begin(), order_.end(), rng);
    }
    ready_head_ = 0;
    ready_count_ = 0;
    for (int k = 0; k < n_; ++k) Push(order_[k]);

    const int warps = (n_ + kWarp - 1) / kWarp;
    if (static_cast<int>(warps_.size()) < warps) warps_.resize(warps);
    for (int w = 0; w < warps; ++w) {
      WarpState& ws = warps_[w];
      const int lanes = std::min(kWarp, n_ - w * kWarp);
      ws.present = lanes == kWarp ? ~0u : (1u << lanes) - 1;
      ws.exited = 0;
      ws.at_barrier = 0;
      ws.pending.clear();
      ws.lane_count = 0;
    }
    for (int k = 0; k < n_; ++k) {  // each warp's lanes in schedule order
      WarpState& ws = warps_[order_[k] / kWarp];
      ws.lane_order[ws.lane_count++] = order_[k] % kWarp;
    }
    exited_ = 0;
    first_exited_ = -1;
    barrier_arrived_ = 0;
    failed_ = false;
    error_.clear();
    progress_ = 0;
    spin_epoch_ = ~uint64_t{0};
    spins_ = 0;
    current_ = nullptr;

    // Dynamic shared memory starts as poison (NaN / -1) in every block, with
    // canaries on both sides to catch writes past either end.
    std::memset(smem_, kPoison, launch.smem);
    for (size_t i = 0; i < kSmemGuard; ++i) {
      smem_[-static_cast<ptrdiff_t>(kSmemGuard) + static_cast<ptrdiff_t>(i)] =
          SmemCanary(i);
      smem_[launch.smem + i] = SmemCanary(i);
    }
    tls_coords.block_idx = block_idx;
    tls_coords.block_dim = launch.block;
    tls_coords.grid_dim = launch.grid;
  }

  void Push(int i) {
    ready_[(ready_head_ + ready_count_) % ready_.size()] = i;
    ++ready_count_;
  }

  void MakeRunnable(EmuThread& t) {
    t.state = ThreadState::kRunnable;
    Push(t.linear);
  }

  void NoteProgress() { ++progress_; }

  EmuThread& PopReady() {
    EmuThread& t = threads_[ready_[ready_head_]];
    ready_head_ = (ready_head_ + 1) % ready_.size();
    --ready_count_;
    return t;
  }

  // Makes `t` the running thread and switches to it, starting its fiber if it
  // has none. Returns (in the caller's context, once something switches back
  // to it) the continuation of whoever did; see StoreContinuation.
  bctx::fiber SwitchTo(EmuThread& t) {
    PrepareToRun(t);
    return std::move(t.fiber).resume();
  }

  void PrepareToRun(EmuThread& t) {
    current_ = &t;
    tls_coords.thread_idx = t.idx;
    if (t.state == ThreadState::kNotStarted) {
      t.fiber = bctx::fiber(
          std::allocator_arg, PooledStack{&pool_},
          [this](bctx::fiber&& from) { return FiberMain(std::move(from)); });
    }
    t.state = ThreadState::kRunnable;
  }

  // After a switch: the context that switched to us (a suspended thread, or
  // the scheduler in Run) is parked where it can be resumed later. A thread
  // that finished hands over an empty continuation.
  void StoreContinuation(bctx::fiber&& from) {
    if (switching_from_ != nullptr) {
      switching_from_->fiber = std::move(from);
    } else {
      scheduler_ = std::move(from);
    }
  }

  // A fiber's body: runs current_ and then, on the same stack, every
  // not-yet-started thread at the head of the ready queue (a kernel without
  // barriers runs all its threads in one fiber), then hands over to the next
  // runnable thread or, if none, to the scheduler.
  bctx::fiber FiberMain(bctx::fiber&& from) {
    StoreContinuation(std::move(from));
    EmuThread* t = current_;
    for (;;) {
      if (!RunThread(*t) || failed_ || ready_count_ == 0) break;
      EmuThread& next = threads_[ready_[ready_head_]];
      if (next.state != ThreadState::kNotStarted) break;
      PopReady();
      next.state = ThreadState::kRunnable;
      t = &next;
      current_ = t;
      tls_coords.thread_idx = t->idx;
    }
    switching_from_ = t;  // this fiber ends: t keeps an empty continuation
    if (!failed_ && ready_count_ > 0) {
      EmuThread& next = PopReady();
      PrepareToRun(next);
      return std::move(next.fiber);
    }
    return std::move(scheduler_);
  }

  // Runs the kernel body for one thread; false if it threw.
  bool RunThread(EmuThread& t) {
    try {
      launch_->body.invoke(launch_->body.ctx);
    } catch (const bctx::detail::forced_unwind&) {
      throw;  // Unwind() is destroying this fiber
    } catch (const std::exception& e) {
      t.state = ThreadState::kAborted;
      Fail(Describe(t) + " threw an exception: " + e.what());
      return false;
    } catch (...) {
      t.state = ThreadState::kAborted;
      Fail(Describe(t) + " threw an exception");
      return false;
    }
    OnExit(t);
    return true;
  }

  void OnExit(EmuThread& t) {
    NoteProgress();
    // Emulated asynchronous operations still queued (each queue starts with
    // its count: src/cuda/emulated_async.h) were never waited for.
    static const char* const kQueued[kHardwareStates] = {"wgmma products",
                                                         "cp.async copies"};
    for (int i = 0; i < kHardwareStates; ++i) {
      int queued = 0;
      if (t.hardware_state_live[i] &&
          t.hardware_state[i].size() >= sizeof(queued)) {
        std::memcpy(&queued, t.hardware_state[i].data(), sizeof(queued));
      }
      if (queued > 0) {
        Fail(Describe(t) + " exited with " + std::to_string(queued) + " " +
             kQueued[i] + " never waited for");
      }
    }
    t.state = ThreadState::kExited;
    ++exited_;
    if (first_exited_ < 0) first_exited_ = t.linear;
    const int warp = t.linear / kWarp;
    const unsigned bit = 1u << (t.linear % kWarp);
    WarpState& ws = warps_[warp];
    ws.exited |= bit;
    if (barrier_arrived_ > 0) {
      Fail(Describe(t) + " exited without reaching the " +
           BarrierName(barrier_kind_) + "() at " +
           Where(barrier_file_, barrier_line_) + " that " +
           std::to_string(barrier_arrived_) +
           " other thread(s) of the block wait at; every thread of a block "
           "must reach each __syncthreads()");
      return;
    }
    for (size_t i = 0; i < ws.pending.size(); ++i) {
      PendingOp& op = ws.pending[i];
      if (!(op.expected & bit)) continue;
      if (IsShuffle(op.kind)) {
        Fail(Describe(t) + " exited, but lane(s) " + LaneList(op.arrived) +
             " of its warp wait for it at " + OpName(op.kind) + "(mask " +
             Hex(op.mask) + ") at " + Where(op.file, op.line));
        return;
      }
      // A vote or __syncwarp goes on without the exited lane.
      op.expected &= ~bit;
      if (op.arrived == op.expected) {
        Complete(warp, op);
        ws.pending.erase(ws.pending.begin() + i);
        --i;
      }
    }
  }

  // Parks the running thread (its state says why) and runs the next runnable
  // one; returns when another thread switches back to it.
  void Suspend() {
    EmuThread* self = current_;
    if (failed_ || ready_count_ == 0) {
      SwitchToScheduler();
      return;
    }
    EmuThread& next = PopReady();
    if (&next == self) {  // it yielded and nobody else can run
      self->state = ThreadState::kRunnable;
      return;
    }
    switching_from_ = self;
    bctx::fiber from = SwitchTo(next);
    StoreContinuation(std::move(from));
  }

  void SwitchToScheduler() {
    switching_from_ = current_;
    [[maybe_unused]] bctx::fiber from = std::move(scheduler_).resume();
    // Only Unwind() resumes a thread that went to the scheduler, by throwing
    // forced_unwind out of the resume above.
    std::fprintf(stderr, "[cuda_emu] internal error: parked thread resumed\n");
    std::abort();
  }

  void Fail(const std::string& message) {
    if (failed_) return;
    failed_ = true;
    error_ = "kernel '" + launch_->name + "' block " + Coord(block_idx_) +
             ": " + message;
    if (launch_->schedule == Schedule::kReverse) {
      error_ += " [schedule: reverse]";
    } else if (launch_->schedule == Schedule::kRandom) {
      error_ +=
          " [schedule: random, seed " + std::to_string(launch_->seed) + "]";
    }
  }

  // Records the fault and parks the calling fiber for good; Run() then
  // unwinds it (the switch below throws forced_unwind).
  void FailFromFiber(const std::string& message) {
    Fail(message);
    current_->state = ThreadState::kAborted;
    SwitchToScheduler();
  }

  void Unwind() {
    for (int i = 0; i < n_; ++i) {
      if (threads_[i].fiber) {
        current_ = &threads_[i];
        threads_[i].fiber = bctx::fiber();  // unwinds the suspended stack
      }
    }
    current_ = nullptr;
  }

  void Complete(int warp, const PendingOp& op) {
    const unsigned mask = op.arrived;  // the lanes taking part
    const uint64_t poison =
        op.size >= 8 ? ~uint64_t{0} : ((uint64_t{1} << (op.size * 8)) - 1);
    uint64_t common = 0;
    int common_pred = 0;
    switch (op.kind) {
      case WarpOpKind::kBallot:
      case WarpOpKind::kAny:
      case WarpOpKind::kAll: {
        unsigned ballot = 0;
        for (unsigned m = mask; m; m &= m - 1) {
          int l = LowestLane(m);
          if (op.param[l]) ballot |= 1u << l;
        }
        common = op.kind == WarpOpKind::kBallot ? ballot
                 : op.kind == WarpOpKind::kAny  ? (ballot != 0)
                                                : (ballot == mask);
        break;
      }
      case WarpOpKind::kReduceAddU:
      case WarpOpKind::kReduceAddI:
      case WarpOpKind::kReduceMinU:
      case WarpOpKind::kReduceMinI:
      case WarpOpKind::kReduceMaxU:
      case WarpOpKind::kReduceMaxI:
      case WarpOpKind::kReduceAnd:
      case WarpOpKind::kReduceOr:
      case WarpOpKind::kReduceXor: {
        bool first = true;
        uint32_t acc = 0;
        for (unsigned m = mask; m; m &= m - 1) {
          uint32_t v = static_cast<uint32_t>(op.value[LowestLane(m)]);
          int32_t sv = static_cast<int32_t>(v),
                  sacc = static_cast<int32_t>(acc);
          if (first) {
            acc = v;
            first = false;
            continue;
          }
          switch (op.kind) {
            case WarpOpKind::kReduceAddU:
            case WarpOpKind::kReduceAddI:
              acc += v;
              break;
            case WarpOpKind::kReduceMinU:
              acc = std::min(acc, v);
              break;
            case WarpOpKind::kReduceMinI:
              acc = static_cast<uint32_t>(std::min(sacc, sv));
              break;
            case WarpOpKind::kReduceMaxU:
              acc = std::max(acc, v);
              break;
            case WarpOpKind::kReduceMaxI:
              acc = static_cast<uint32_t>(std::max(sacc, sv));
              break;
            case WarpOpKind::kReduceAnd:
              acc &= v;
              break;
            case WarpOpKind::kReduceOr:
              acc |= v;
              break;
            default:
              acc ^= v;
              break;
          }
        }
        common = acc;
        break;
      }
      case WarpOpKind::kMatchAll: {
        const uint64_t v0 = op.value[LowestLane(mask)];
        bool all = true;
        for (unsigned m = mask; m; m &= m - 1)
          all &= op.value[LowestLane(m)] == v0;
        common = all ? mask : 0;
        common_pred = all;
        break;
      }
      case WarpOpKind::kGather: {
        // Every lane's bytes first (a lane's `all` may hold its `mine`), then
        // to every lane of the mask; the callers are suspended here, so their
        // stacks hold what they gave.
        const size_t bytes = static_cast<size_t>(op.size);
        gather_.resize(kWarp * bytes);
        for (int l = 0; l < kWarp; ++l) {
          unsigned char* to = gather_.data() + l * bytes;
          if ((mask >> l) & 1u) {
            std::memcpy(to, GatherOf(op, l).mine, bytes);
          } else {
            std::memset(to, 0xff, bytes);
          }
        }
        for (unsigned m = mask; m; m &= m - 1) {
          std::memcpy(GatherOf(op, LowestLane(m)).all, gather_.data(),
                      kWarp * bytes);
        }
        break;
      }
      default:
        break;
    }
    WarpState& ws = warps_[warp];
    for (int k = 0; k < ws.lane_count; ++k) {
      const int l = ws.lane_order[k];
      if (!((mask >> l) & 1u)) continue;
      EmuThread& t = threads_[warp * kWarp + l];
      WarpResult r{common, common_pred};
      if (IsShuffle(op.kind)) {
        // PTX shfl.sync: c = ((32 - width) << 8) | clamp, segmask = c[12:8].
        const int segmask = (kWarp - op.width) & 31;
        const int b = op.param[l] & 31;
        const int min_lane = l & segmask;
        const int clamp = op.kind == WarpOpKind::kShflUp ? 0 : 31;
        const int max_lane = min_lane | (clamp & ~segmask);
        int j = l;
        bool in_range = true;
        switch (op.kind) {
          case WarpOpKind::kShflUp:
            j = l - b;
            in_range = j >= max_lane;
            break;
          case WarpOpKind::kShflDown:
            j = l + b;
            in_range = j <= max_lane;
            break;
          case WarpOpKind::kShflXor:
            j = l ^ b;
            in_range = j <= max_lane;
            break;
          default:
            j = min_lane | (b & ~segmask);
            in_range = j <= max_lane;
            break;
        }
        if (!in_range) j = l;
        r.value = ((mask >> j) & 1u) ? op.value[j] : poison;
      } else if (op.kind == WarpOpKind::kMatchAny) {
        unsigned same = 0;
        for (unsigned m = mask; m; m &= m - 1) {
          if (op.value[LowestLane(m)] == op.value[l]) {
            same |= 1u << LowestLane(m);
          }
        }
        r.value = same;
      }
      t.result = r;
      MakeRunnable(t);
    }
  }

  static const GatherArgs& GatherOf(const PendingOp& op, int lane) {
    return *reinterpret_cast<const GatherArgs*>(
        static_cast<uintptr_t>(op.value[lane]));
  }

  void CheckSharedGuards() {
    const size_t smem = launch_->smem;
    size_t before = 0, after = 0;
    for (size_t i = 0; i < kSmemGuard; ++i) {
      if (smem_[-static_cast<ptrdiff_t>(kSmemGuard) +
                static_cast<ptrdiff_t>(i)] != SmemCanary(i))
        ++before;
      if (smem_[smem + i] != SmemCanary(i)) ++after;
    }
    if (before + after == 0 || failed_) return;
    Fail("wrote outside its dynamic shared memory (" + std::to_string(smem) +
         " bytes requested at launch): " + std::to_string(before) +
         " byte(s) in the " + std::to_string(kSmemGuard) +
         " bytes before its start and " + std::to_string(after) +
         " byte(s) in the " + std::to_string(kSmemGuard) +
         " bytes after its end were overwritten");
  }

  std::string Describe(const EmuThread& t) const {
    return "thread " + Coord(t.idx) + " (warp " +
           std::to_string(t.linear / kWarp) + " lane " +
           std::to_string(t.linear % kWarp) + ")";
  }

  std::string DeadlockReport() const {
    std::string out = "deadlock: no thread can make progress;";
    if (barrier_arrived_ > 0) {
      out += " " + std::to_string(barrier_arrived_) + " thread(s) wait at " +
             BarrierName(barrier_kind_) + "() at " +
             Where(barrier_file_, barrier_line_) + ";";
    }
    for (size_t w = 0; w < warps_.size() && static_cast<int>(w * kWarp) < n_;
         ++w) {
      for (const PendingOp& op : warps_[w].pending) {
        out += " warp " + std::to_string(w) + " lane(s) " +
               LaneList(op.arrived) + " wait at " + OpName(op.kind) + "(mask " +
               Hex(op.mask) + ") at " + Where(op.file, op.line) +
               " for lane(s) " + LaneList(op.expected & ~op.arrived) + ";";
      }
    }
    return out;
  }

  StackPool pool_;
  std::unique_ptr<unsigned char[]> arena_;
  unsigned char* smem_;

  const LaunchInfo* launch_ = nullptr;
  uint3 block_idx_{};
  int n_ = 0;
  std::vector<EmuThread> threads_;
  std::vector<int> order_;             // schedule order of thread indices
  std::vector<int> ready_;             // ring buffer of runnable thread indices
  std::vector<unsigned char> gather_;  // a WarpGather's bytes, lane by lane
  size_t ready_head_ = 0;
  size_t ready_count_ = 0;
  std::vector<WarpState> warps_;
  int exited_ = 0;
  int first_exited_ = -1;
  int barrier_arrived_ = 0;
  BarrierKind barrier_kind_ = BarrierKind::kSync;
  const char* barrier_file_ = nullptr;
  int barrier_line_ = 0;
  int barrier_acc_ = 0;
  uint64_t progress_ = 0;  // barrier/warp-op arrivals and exits so far
  uint64_t spin_epoch_ = 0;
  uint64_t spins_ = 0;
  std::chrono::steady_clock::time_point spin_start_;
  bool failed_ = false;
  std::string error_;
  EmuThread* current_ = nullptr;
  EmuThread* switching_from_ = nullptr;  // who switches (null: the scheduler)
  bctx::fiber scheduler_;  // Run()'s context while the threads run
};

BlockRunner& ThisThreadRunner() {
  thread_local std::unique_ptr<BlockRunner> runner(new BlockRunner());
  return *runner;
}

BlockRunner& RunnerOrDie(const char* what, const char* file, int line) {
  BlockRunner* r = tls_runner;
  if (r == nullptr) {
    std::fprintf(stderr,
                 "[cuda_emu] fatal: %s used outside a kernel (at %s:%d)\n",
                 what, file ? Basename(file) : "?", line);
    std::abort();
  }
  return *r;
}

std::string KernelName(const char* name, const void* func) {
  if (name != nullptr && *name != '\0') {
    std::string n(name);  // GPT2_LAUNCH((k<a, b>), ...) passes "(k<a, b>)"
    if (n.size() > 2 && n.front() == '(' && n.back() == ')') {
      n = n.substr(1, n.size() - 2);
    }
    return n;
  }
  Dl_info info;
  if (dladdr(func, &info) != 0 && info.dli_sname != nullptr) {
    int status = 0;
    char* demangled =
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
    std::string out = status == 0 && demangled ? demangled : info.dli_sname;
    std::free(demangled);
    return out;
  }
  char buf[48];
  std::snprintf(buf, sizeof(buf), "kernel@%p", func);
  return buf;
}

cudaError_t LaunchError(cudaError_t error, const std::string& kernel,
                        const std::string& why) {
  Report("launch of kernel '" + kernel + "' failed (" +
             cudaGetErrorName(error) + "): " + why,
         /*fault=*/false);
  return SetLastError(error);
}

std::string Dims(dim3 d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," +
         std::to_string(d.z) + ")";
}

}  // namespace

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

double SpinTimeoutSeconds() {
  return GetSettings().spin_timeout.load(std::memory_order_relaxed);
}

void* DynamicSharedMemory() {
  return RunnerOrDie("GPT2_EXTERN_SHARED (dynamic shared memory)", nullptr, 0)
      .dynamic_smem();
}

void* ThreadHardwareState(HardwareState which, size_t bytes) {
  return RunnerOrDie("emulated hardware state", nullptr, 0)
      .HardwareState(which, bytes);
}

bool DeferredCopies() { return GetSettings().deferred_copies.load(); }

namespace {
struct BulkCopy {
  void* dst;
  const void* src;
  size_t bytes;
};
// Blocks on several host threads defer copies at once (their barriers are in
// different shared memory).
std::mutex& BulkCopiesMutex() {
  static std::mutex mutex;
  return mutex;
}
std::unordered_multimap<const void*, BulkCopy>& BulkCopies() {
  static auto* copies = new std::unordered_multimap<const void*, BulkCopy>();
  return *copies;
}
}  // namespace

void DeferBulkCopy(const void* barrier, void* dst, const void* src,
                   size_t bytes) {
  std::lock_guard<std::mutex> lock(BulkCopiesMutex());
  BulkCopies().emplace(barrier, BulkCopy{dst, src, bytes});
}

bool LandBulkCopies(const void* barrier) {
  std::vector<BulkCopy> landing;
  {
    std::lock_guard<std::mutex> lock(BulkCopiesMutex());
    auto [begin, end] = BulkCopies().equal_range(barrier);
    for (auto it = begin; it != end; ++it) landing.push_back(it->second);
    BulkCopies().erase(begin, end);
  }
  for (const BulkCopy& c : landing) std::memcpy(c.dst, c.src, c.bytes);
  return !landing.empty();
}

void DropBulkCopies(const void* barrier) {
  std::lock_guard<std::mutex> lock(BulkCopiesMutex());
  BulkCopies().erase(barrier);
}

void DeviceFault(const char* message, const char* file, int line) {
  RunnerOrDie("a device fault", file, line).Fault(message, file, line);
}

int BlockBarrier(BarrierKind kind, int predicate, const char* file, int line) {
  BlockRunner& runner = RunnerOrDie(BarrierName(kind), file, line);
  // Jitter: thread 0 of a block holds its host thread for a while at some
  // barriers, so blocks running on other host threads overtake it.
  const int jitter = GetSettings().block_jitter_us.load();
  const uint3 t = tls_coords.thread_idx;
  if (jitter > 0 && t.x == 0 && t.y == 0 && t.z == 0 &&
      GetSettings().host_threads.load() > 1) {
    thread_local uint64_t state = 0x2545f4914f6cdd1dull;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    if (state % 4 == 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds((state >> 8) % jitter));
    }
  }
  return runner.Barrier(kind, predicate, file, line);
}

WarpResult WarpCollective(WarpOpKind kind, unsigned mask, uint64_t bits,
                          int size, int param, int width, const char* file,
                          int line) {
  return RunnerOrDie(OpName(kind), file, line)
      .WarpOp(kind, mask, bits, size, param, width, file, line);
}

unsigned ActiveMask() {
  return RunnerOrDie("__activemask", nullptr, 0).ActiveMask();
}

void SpinYield(const char* file, int line) {
  // Host code may use the atomics too (outside any kernel): nothing to yield.
  if (tls_runner != nullptr) tls_runner->Yield(file, line);
}

// Runs every block of a validated launch, then checks the guard bytes.
cudaError_t RunLaunch(const LaunchInfo& info) {
  const uint3 grid = info.grid;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  auto block_at = [&grid](uint64_t b) {
    return make_uint3(static_cast<unsigned>(b % grid.x),
                      static_cast<unsigned>((b / grid.x) % grid.y),
                      static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y)));
  };
  std::string error;
  bool failed = false;
  const int host_threads = static_cast<int>(std::min<uint64_t>(
      blocks, std::max(1, GetSettings().host_threads.load())));
  if (host_threads <= 1) {
    BlockRunner& runner = ThisThreadRunner();
    for (uint64_t b = 0; b < blocks && !failed; ++b) {
      failed = !runner.Run(info, block_at(b), &error);
    }
  } else {
    std::atomic<uint64_t> next{0};
    std::atomic<bool> any_failed{false};
    std::mutex mu;
    auto worker = [&]() {
      BlockRunner& runner = ThisThreadRunner();
      for (;;) {
        if (any_failed.load()) return;
        const uint64_t b = next.fetch_add(1);
        if (b >= blocks) return;
        std::string e;
        if (!runner.Run(info, block_at(b), &e)) {
          std::lock_guard<std::mutex> lock(mu);
          if (!any_failed.exchange(true)) error = e;
        }
      }
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < host_threads; ++i) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    failed = any_failed.load();
  }
  if (failed) {
    SetStickyError(cudaErrorLaunchFailure);
    Report(error, /*fault=*/true);
    return cudaErrorLaunchFailure;
  }
  if (!CheckAllGuards(info.name)) return cudaErrorIllegalAddress;
  return cudaSuccess;
}

cudaError_t LaunchKernel(const char* name, const void* func, dim3 grid,
                         dim3 block, size_t dynamic_smem, cudaStream_t stream,
                         KernelBody body) {
  const std::string kernel = KernelName(name, func);
  if (tls_runner != nullptr) {
    return LaunchError(cudaErrorNotSupported, kernel,
                       "launched from device code (dynamic parallelism is "
                       "not emulated)");
  }
  if (cudaError_t sticky = StickyError(); sticky != cudaSuccess) {
    return sticky;
  }
  if (!IsValidStream(stream)) {
    return LaunchError(cudaErrorInvalidResourceHandle, kernel,
                       "the stream is not a live cudaStream_t");
  }
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 ||
      block.x > static_cast<unsigned>(kMaxBlockDimX) ||
      block.y > static_cast<unsigned>(kMaxBlockDimY) ||
      block.z > static_cast<unsigned>(kMaxBlockDimZ) ||
      threads > static_cast<uint64_t>(kMaxThreadsPerBlock)) {
    return LaunchError(cudaErrorInvalidConfiguration, kernel,
                       "block " + Dims(block) + " has " +
                           std::to_string(threads) +
                           " threads; the limits are 1024 threads per "
                           "block and (1024,1024,64) per dimension");
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridDimX ||
      grid.y > kMaxGridDimYZ || grid.z > kMaxGridDimYZ) {
    return LaunchError(
        cudaErrorInvalidConfiguration, kernel,
        "grid " + Dims(grid) + " is empty or exceeds (2^31-1,65535,65535)");
  }
  const size_t smem_limit = MaxDynamicSharedMemory(func);
  if (dynamic_smem > smem_limit) {
    return LaunchError(
        cudaErrorInvalidValue, kernel,
        "it requests " + std::to_string(dynamic_smem) +
            " bytes of dynamic shared memory, over its limit of " +
            std::to_string(smem_limit) +
            " (48 KiB unless cudaFuncSetAttribute(kernel, "
            "cudaFuncAttributeMaxDynamicSharedMemorySize, n) raises it, up "
            "to 227 KiB)");
  }

  Settings& settings = GetSettings();
  LaunchInfo info;
  info.name = kernel;
  info.grid = make_uint3(grid.x, grid.y, grid.z);
  info.block = make_uint3(block.x, block.y, block.z);
  info.smem = dynamic_smem;
  info.body = body;
  info.threads = static_cast<int>(threads);
  info.launch_index = settings.launches.fetch_add(1);
  info.schedule = static_cast<Schedule>(settings.schedule.load());
  info.seed = settings.seed.load();

  if (QueuesWork(stream)) {
    // Runs when its stream's work is needed; a fault then surfaces as the
    // sticky error of a later call.
    Submit(stream, [info] { RunLaunch(info); });
    return cudaSuccess;
  }
  if (IsLegacyStream(stream)) SyncWithLegacyStream();
  return RunLaunch(info);
}

}  // namespace detail

void SetSchedule(Schedule schedule, uint64_t seed) {
  detail::GetSettings().schedule = static_cast<int>(schedule);
  if (schedule == Schedule::kRandom) detail::GetSettings().seed = seed;
}

Schedule CurrentSchedule() {
  return static_cast<Schedule>(detail::GetSettings().schedule.load());
}

void SetHostThreads(int n) {
  detail::GetSettings().host_threads = std::max(1, n);
}

int HostThreads() { return detail::GetSettings().host_threads.load(); }

void SetBlockJitter(int microseconds) {
  detail::GetSettings().block_jitter_us = std::max(0, microseconds);
}

int BlockJitter() { return detail::GetSettings().block_jitter_us.load(); }

void SetSpinTimeout(double seconds) {
  detail::GetSettings().spin_timeout = seconds;
}

void SetDeferredCopies(bool deferred) {
  detail::GetSettings().deferred_copies = deferred;
}

uint64_t LaunchCount() { return detail::GetSettings().launches.load(); }

}  // namespace cuda_emu
