#include "src/core/tensor.h"

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

std::vector<char> EncodeHost(const std::vector<double>& values, DType dtype) {
  std::vector<char> bytes(values.size() * DTypeSize(dtype));
  // Whole models pass through here (124M values at start-up): in parallel.
#pragma omp parallel for schedule(static) if (values.size() > (1u << 16))
  for (size_t i = 0; i < values.size(); ++i) {
    char* dst = bytes.data() + i * DTypeSize(dtype);
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
