#include "src/core/tensor.h"

#include <algorithm>
#include <cstring>

#include "src/core/bf16.h"

namespace gpt2 {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF64:
      return "f64";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
  }
  return "?";
}

void EncodeValues(const double* values, int64_t n, DType dtype, char* out) {
  const size_t size = DTypeSize(dtype);
  for (int64_t i = 0; i < n; ++i) {
    char* dst = out + i * size;
    switch (dtype) {
      case DType::kF32: {
        const float f = static_cast<float>(values[i]);
        std::memcpy(dst, &f, 4);
        break;
      }
      case DType::kF64:
        std::memcpy(dst, &values[i], 8);
        break;
      case DType::kBF16: {
        const uint16_t b = FloatToBf16Bits(static_cast<float>(values[i]));
        std::memcpy(dst, &b, 2);
        break;
      }
      case DType::kI32: {
        const int32_t v = static_cast<int32_t>(values[i]);
        std::memcpy(dst, &v, 4);
        break;
      }
    }
  }
}

std::vector<char> EncodeHost(const std::vector<double>& values, DType dtype) {
  std::vector<char> bytes(values.size() * DTypeSize(dtype));
  // Whole models pass through here (124M values at start-up): in parallel.
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t n = static_cast<int64_t>(values.size());
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    EncodeValues(values.data() + begin, std::min(kChunk, n - begin), dtype,
                 bytes.data() + begin * DTypeSize(dtype));
  }
  return bytes;
}

std::vector<double> DecodeHost(const std::vector<char>& bytes, DType dtype) {
  const size_t n = bytes.size() / DTypeSize(dtype);
  std::vector<double> values(n);
#pragma omp parallel for schedule(static) if (n > (1u << 16))
  for (size_t i = 0; i < n; ++i) {
    const char* src = bytes.data() + i * DTypeSize(dtype);
    switch (dtype) {
      case DType::kF32: {
        float f;
        std::memcpy(&f, src, 4);
        values[i] = f;
        break;
      }
      case DType::kF64:
        std::memcpy(&values[i], src, 8);
        break;
      case DType::kBF16: {
        uint16_t b;
        std::memcpy(&b, src, 2);
        values[i] = Bf16BitsToFloat(b);
        break;
      }
      case DType::kI32: {
        int32_t v;
        std::memcpy(&v, src, 4);
        values[i] = v;
        break;
      }
    }
  }
  return values;
}

}  // namespace gpt2
