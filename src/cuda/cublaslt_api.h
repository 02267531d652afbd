// cuBLASLt, loaded when a CUDA backend first needs it instead of at process
// start. Linked as a dependency, libcublasLt's start-up code runs in every
// process before main(): ~0.38 s and ~210 MB of resident memory on the 2-core
// build machine (a program that does nothing but link it), paid by every
// tool, every CPU-only run and every test process of the CUDA build, and twice
// by the tools that re-execute themselves for OpenMP's wait policy
// (src/core/threads.h). Loaded here instead, on a thread of its own from the
// CUDA backend's creation, it overlaps the rest of start-up (data, the
// initial weights) and costs nothing where no GPU is used.
#ifndef GPT2_CUDA_CUBLASLT_API_H_
#define GPT2_CUDA_CUBLASLT_API_H_

#include <cublasLt.h>

#include <string>

#include "absl/status/statusor.h"

namespace gpt2::cuda {

// The functions src/ops/matmul_cublaslt.cc calls, each typed as cublasLt.h
// declares it.
#define GPT2_CUBLASLT_FUNCTIONS(X)                                      \
  X(cublasLtCreate, Create)                                             \
  X(cublasLtDestroy, Destroy)                                           \
  X(cublasLtGetVersion, GetVersion)                                     \
  X(cublasLtGetStatusString, GetStatusString)                           \
  X(cublasLtMatmul, Matmul)                                             \
  X(cublasLtMatmulDescCreate, MatmulDescCreate)                         \
  X(cublasLtMatmulDescDestroy, MatmulDescDestroy)                       \
  X(cublasLtMatmulDescSetAttribute, MatmulDescSetAttribute)             \
  X(cublasLtMatrixLayoutCreate, MatrixLayoutCreate)                     \
  X(cublasLtMatrixLayoutDestroy, MatrixLayoutDestroy)                   \
  X(cublasLtMatmulPreferenceCreate, MatmulPreferenceCreate)             \
  X(cublasLtMatmulPreferenceDestroy, MatmulPreferenceDestroy)           \
  X(cublasLtMatmulPreferenceSetAttribute, MatmulPreferenceSetAttribute) \
  X(cublasLtMatmulAlgoGetHeuristic, MatmulAlgoGetHeuristic)             \
  X(cublasLtMatmulAlgoGetIds, MatmulAlgoGetIds)                         \
  X(cublasLtMatmulAlgoInit, MatmulAlgoInit)                             \
  X(cublasLtMatmulAlgoCheck, MatmulAlgoCheck)                           \
  X(cublasLtMatmulAlgoCapGetAttribute, MatmulAlgoCapGetAttribute)       \
  X(cublasLtMatmulAlgoConfigSetAttribute, MatmulAlgoConfigSetAttribute)

struct CublasLtApi {
#define GPT2_CUBLASLT_MEMBER(symbol, member) \
  decltype(&::symbol) member = nullptr;
  GPT2_CUBLASLT_FUNCTIONS(GPT2_CUBLASLT_MEMBER)
#undef GPT2_CUBLASLT_MEMBER
};

// The shared library's name: libcublasLt.so.<major of the headers built
// against>. Found as the dynamic loader finds libraries (LD_LIBRARY_PATH, the
// binary's run path, the loader's cache), then in the toolkit's library folder
// of the build.
std::string CublasLtLibraryName();

// Opens `library` and resolves every function above; an error that names the
// library, the loader's reason and what to do. Loads anew on each call (for
// tests); the process's own copy is CublasLt().
absl::StatusOr<CublasLtApi> LoadCublasLtFrom(const std::string& library);

// Starts loading the process's cuBLASLt on a thread of its own, once, and
// returns at once.
void PreloadCublasLt();

// The process's cuBLASLt: waits for a load under way (or loads), then the
// functions, or the load's error.
absl::StatusOr<const CublasLtApi*> LoadCublasLt();

// The same where there is no way on without it (the matmuls of a CUDA
// backend): a fatal error with the load's message.
const CublasLtApi& CublasLt();

// For the log, once loaded: the library and version, how long opening it took
// and where (on the preload's thread or in the first caller's), and how long
// the first caller waited for it; "" where it was never asked for.
std::string CublasLtLoadNote();

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_CUBLASLT_API_H_
