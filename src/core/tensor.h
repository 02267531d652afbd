// A non-owning view of a flat buffer that lives on some backend (host or device
// memory), with its element type. Ops take their shapes as explicit sizes and
// check each view's element count against them, so a view carries no shape of
// its own.
#ifndef GPT2_CORE_TENSOR_H_
#define GPT2_CORE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/core/error.h"

namespace gpt2 {

enum class DType : uint8_t { kF32, kF64, kBF16, kI32 };

inline size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF64:
      return 8;
    case DType::kBF16:
      return 2;
    case DType::kI32:
      return 4;
  }
  return 0;
}

const char* DTypeName(DType t);

// Host values <-> host bytes of a dtype (bf16 rounds to nearest even).
// EncodeValues: n values into `out` (n * DTypeSize bytes), on this thread.
void EncodeValues(const double* values, int64_t n, DType dtype, char* out);
std::vector<char> EncodeHost(const std::vector<double>& values, DType dtype);
std::vector<double> DecodeHost(const std::vector<char>& bytes, DType dtype);

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kF64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kI32;
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t numel = 0;

  size_t bytes() const { return static_cast<size_t>(numel) * DTypeSize(dtype); }

  // Typed pointer; a dtype mismatch is a programming error.
  template <typename T>
  T* as() const {
    GPT2_CHECK_MSG(dtype == DTypeOf<T>::value, "tensor is ", DTypeName(dtype),
                   ", asked for ", DTypeName(DTypeOf<T>::value));
    return static_cast<T*>(data);
  }

  // Elements [offset, offset + count) as a view.
  Tensor Slice(int64_t offset, int64_t count) const {
    GPT2_CHECK_MSG(offset >= 0 && count >= 0 && offset + count <= numel,
                   "slice [", offset, ", ", offset + count, ") of ", numel);
    return Tensor{static_cast<char*>(data) + offset * DTypeSize(dtype), dtype,
                  count};
  }
};

// How a backward op writes a parameter's gradient: added to what is there
// (the micro-steps after a step's first), or written over it (the first, so
// that no pass zeroes the gradients before it). Both give the bits that
// adding to zeros gives.
enum class ParamGrads : uint8_t { kAccumulate, kOverwrite };

}  // namespace gpt2

#endif  // GPT2_CORE_TENSOR_H_
