// cuBLASLt opened on demand (src/cuda/cublaslt_api.h): no GPU needed, only
// the CUDA toolkit's libcublasLt, as in CI. This binary links the CUDA build's
// library as the tools do.
#include "src/cuda/cublaslt_api.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace gpt2::cuda {
namespace {

bool MappedHere(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find(name) != std::string::npos;
}

// One test, so that "before" is this process's start (gtest_discover_tests
// runs each test in a process of its own; a plain run of the binary runs
// this first).
TEST(CublasLtApi, LoadedOnlyWhenAskedThenSharedByEveryThread) {
  ASSERT_TRUE(MappedHere("libc.so")) << "/proc/self/maps unreadable?";
  EXPECT_FALSE(MappedHere("libcublasLt"))
      << "libcublasLt is mapped at start: linked again?";
  EXPECT_EQ(CublasLtLoadNote(), "");  // nothing asked for yet

  PreloadCublasLt();
  PreloadCublasLt();  // a second call starts nothing more
  std::vector<const CublasLtApi*> seen(4, nullptr);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([i, &seen] {
      absl::StatusOr<const CublasLtApi*> api = LoadCublasLt();
      if (api.ok()) seen[i] = *api;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const CublasLtApi* api : seen) {
    ASSERT_NE(api, nullptr) << LoadCublasLt().status();
    EXPECT_EQ(api, seen[0]);  // one load for the process
  }
  EXPECT_TRUE(MappedHere("libcublasLt"));
  // Opened by the preload or by a thread that came first: either way, said.
  const std::string note = CublasLtLoadNote();
  EXPECT_NE(note.find("cuBLASLt " + std::to_string(CUBLAS_VER_MAJOR)),
            std::string::npos)
      << note;
  EXPECT_NE(note.find(" opened in "), std::string::npos) << note;
  EXPECT_NE(note.find("; the first matmul waited "), std::string::npos) << note;
  const CublasLtApi& lt = CublasLt();
  EXPECT_EQ(&lt, seen[0]);
  EXPECT_EQ(lt.GetVersion() / 10000, static_cast<size_t>(CUBLAS_VER_MAJOR));
  const std::string unsupported =
      lt.GetStatusString(CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_FALSE(unsupported.empty());
  EXPECT_NE(unsupported, lt.GetStatusString(CUBLAS_STATUS_SUCCESS));
  // Descriptors need no device.
  cublasLtMatrixLayout_t layout = nullptr;
  ASSERT_EQ(lt.MatrixLayoutCreate(&layout, CUDA_R_16BF, 64, 32, 64),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_NE(layout, nullptr);
  EXPECT_EQ(lt.MatrixLayoutDestroy(layout), CUBLAS_STATUS_SUCCESS);
}

TEST(CublasLtApi, NamesTheVersionBuiltAgainst) {
  EXPECT_EQ(CublasLtLibraryName(),
            "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR));
}

TEST(CublasLtApi, MissingLibraryIsAClearError) {
  const absl::StatusOr<CublasLtApi> api =
      LoadCublasLtFrom("libcublasLt.so.999");
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(api.status().message());
  EXPECT_NE(message.find("cannot load cuBLASLt (libcublasLt.so.999)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("LD_LIBRARY_PATH"), std::string::npos) << message;
  EXPECT_NE(message.find("train.device: CPU"), std::string::npos) << message;
}

TEST(CublasLtApi, LibraryWithoutTheFunctionsIsRefused) {
  // A library that loads but is not cuBLASLt.
  const absl::StatusOr<CublasLtApi> api = LoadCublasLtFrom("libz.so.1");
  ASSERT_FALSE(api.ok());
  const std::string message(api.status().message());
  EXPECT_NE(message.find("lacks functions this build calls: cublasLtCreate "
                         "cublasLtDestroy"),
            std::string::npos)
      << message;
}

}  // namespace
}  // namespace gpt2::cuda
