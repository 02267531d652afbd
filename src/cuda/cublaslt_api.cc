#include "src/cuda/cublaslt_api.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/error.h"
#include "src/core/process_clock.h"

namespace gpt2::cuda {
namespace {

// The process's load: made once, by whichever thread gets there first.
struct ProcessLoad {
  std::once_flag once;
  absl::StatusOr<CublasLtApi> api = absl::UnknownError("not loaded");
  // The preload's thread; its future waits for it at exit, so that the
  // process never ends in the middle of the loader's work.
  std::mutex preload_mutex;
  std::future<void> preload;
  // Written inside the once (seconds opening it, on which thread), and by
  // the first caller that is not the preload (seconds it waited); read after.
  double load_seconds = 0.0;
  bool loaded_beside = false;
  std::once_flag first_wait;
  double waited_seconds = -1.0;
  std::atomic<bool> first_wait_done{false};  // then every call is a lookup
};

ProcessLoad& TheLoad() {
  static ProcessLoad* load = new ProcessLoad();  // never destroyed: see below
  return *load;
}

// The preload's future lives here, destroyed (joined) at exit, while the load
// it waits for is never destroyed.
struct PreloadJoiner {
  ~PreloadJoiner() {
    ProcessLoad& load = TheLoad();
    std::lock_guard<std::mutex> lock(load.preload_mutex);
    if (load.preload.valid()) load.preload.wait();
  }
} preload_joiner;

void LoadOnce(bool preload) {
  ProcessLoad& load = TheLoad();
  std::call_once(load.once, [&load, preload] {
    const auto began = std::chrono::steady_clock::now();
    load.loaded_beside = preload;
    load.api = LoadCublasLtFrom(CublasLtLibraryName());
#ifdef GPT2_CUDA_LIBRARY_DIR
    if (!load.api.ok()) {
      absl::StatusOr<CublasLtApi> beside = LoadCublasLtFrom(
          std::string(GPT2_CUDA_LIBRARY_DIR) + "/" + CublasLtLibraryName());
      if (beside.ok()) load.api = std::move(beside);
    }
#endif
    load.load_seconds = SecondsSince(began);
  });
}

}  // namespace

std::string CublasLtLibraryName() {
  return absl::StrCat("libcublasLt.so.", CUBLAS_VER_MAJOR);
}

absl::StatusOr<CublasLtApi> LoadCublasLtFrom(const std::string& library) {
  // RTLD_LOCAL: its symbols serve only the pointers taken here.
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot load cuBLASLt (", library, "): ", why ? why : "unknown reason",
        "; it comes with the CUDA toolkit (lib64): put that folder on "
        "LD_LIBRARY_PATH, or run on the CPU (train.device: CPU)"));
  }
  CublasLtApi api;
  std::string missing;
#define GPT2_CUBLASLT_RESOLVE(symbol, member)                                  \
  api.member = reinterpret_cast<decltype(api.member)>(dlsym(handle, #symbol)); \
  if (api.member == nullptr) absl::StrAppend(&missing, " ", #symbol);
  GPT2_CUBLASLT_FUNCTIONS(GPT2_CUBLASLT_RESOLVE)
#undef GPT2_CUBLASLT_RESOLVE
  if (!missing.empty()) {
    dlclose(handle);
    return absl::FailedPreconditionError(absl::StrCat(
        "cuBLASLt (", library, ") lacks functions this build calls:", missing,
        "; it needs cuBLASLt ", CUBLAS_VER_MAJOR, ".x"));
  }
  // A library of another major version has other structures: refuse it.
  const size_t version = api.GetVersion();
  if (version / 10000 != CUBLAS_VER_MAJOR) {
    dlclose(handle);
    return absl::FailedPreconditionError(
        absl::StrCat("cuBLASLt (", library, ") is version ", version,
                     ", this build needs ", CUBLAS_VER_MAJOR, ".x"));
  }
  return api;  // the handle stays open for the process's life
}

void PreloadCublasLt() {
  ProcessLoad& load = TheLoad();
  std::lock_guard<std::mutex> lock(load.preload_mutex);
  if (load.preload.valid()) return;
  try {
    load.preload = std::async(std::launch::async, &LoadOnce, true);
  } catch (const std::system_error&) {
    // No thread to spare: the first use loads it instead.
  }
}

absl::StatusOr<const CublasLtApi*> LoadCublasLt() {
  ProcessLoad& load = TheLoad();
  if (!load.first_wait_done.load(std::memory_order_acquire)) {
    const auto began = std::chrono::steady_clock::now();
    LoadOnce(/*preload=*/false);
    std::call_once(load.first_wait, [&load, began] {
      load.waited_seconds = SecondsSince(began);
      load.first_wait_done.store(true, std::memory_order_release);
    });
  }
  const absl::StatusOr<CublasLtApi>& api = load.api;
  if (!api.ok()) return api.status();
  return &*api;
}

const CublasLtApi& CublasLt() {
  absl::StatusOr<const CublasLtApi*> api = LoadCublasLt();
  if (!api.ok())
    FatalError(std::string(api.status().message()), __FILE__, __LINE__);
  return **api;
}

std::string CublasLtLoadNote() {
  ProcessLoad& load = TheLoad();
  if (load.waited_seconds < 0.0 || !load.api.ok()) return "";
  return absl::StrFormat(
      "cuBLASLt %d (%s) opened in %.2f s %s; the first matmul waited %.2f s "
      "for it",
      static_cast<int>(load.api->GetVersion()), CublasLtLibraryName(),
      load.load_seconds,
      load.loaded_beside ? "on a thread of its own beside start-up"
                         : "by the first matmul",
      load.waited_seconds);
}

}  // namespace gpt2::cuda
