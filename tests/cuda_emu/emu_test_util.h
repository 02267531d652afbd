// Shared fixture and helpers for the CUDA emulator's tests: a fresh emulated
// device per test, and typed device buffers with upload/download.
#ifndef GPT2_TESTS_CUDA_EMU_EMU_TEST_UTIL_H_
#define GPT2_TESTS_CUDA_EMU_EMU_TEST_UTIL_H_

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "src/cuda_emu/api.h"

namespace cuda_emu_test {

// Every test starts on a reset device (no buffers, no sticky error) with the
// default scheduling, and leaves it reset: tests that provoke kernel faults
// leave a sticky error behind on purpose.
class EmuTest : public ::testing::Test {
 protected:
  void SetUp() override { ResetAll(); }
  void TearDown() override { ResetAll(); }
  static void ResetAll() {
    cudaDeviceReset();
    cuda_emu::ClearReports();
    cuda_emu::SetFatal(false);
    cuda_emu::SetSchedule(cuda_emu::Schedule::kForward);
    cuda_emu::SetHostThreads(1);
    cuda_emu::SetSpinTimeout(2.0);
    cuda_emu::SetDeferredCopies(false);
    cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kEager);
  }
};

// A cudaMalloc'd array of n T's.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)),
              cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& host)
      : DeviceBuffer(host.size()) {
    Upload(host);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }  // may fail after a fault: reset frees
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), n_);
    ASSERT_EQ(
        cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    EXPECT_EQ(
        cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost),
        cudaSuccess);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

}  // namespace cuda_emu_test

#endif  // GPT2_TESTS_CUDA_EMU_EMU_TEST_UTIL_H_
