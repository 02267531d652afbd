#include "src/comm/host_staged_communicator.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/core/bf16.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

// bf16 <-> f32 on the host, in parallel (124M gradients per step: a serial
// loop through doubles took seconds).
void WidenBf16(const uint16_t* src, float* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16BitsToFloat(src[i]);
}
void NarrowToBf16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = FloatToBf16Bits(src[i]);
}

class HostStaged final : public Communicator {
 public:
  HostStaged(Communicator* host, Backend* backend)
      : host_(host), backend_(backend) {}
  std::string name() const override {
    return absl::StrCat(host_->name(), " (host-staged)");
  }
  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }
  int local_rank() const override { return host_->local_rank(); }
  int local_size() const override { return host_->local_size(); }

  void AllReduce(Tensor buffer, ReduceOp op) override {
    Tensor staged = ToHost(buffer, &in_);
    host_->AllReduce(staged, op);
    ToDevice(staged, buffer);
  }
  void ReduceScatter(Tensor output, Tensor input, ReduceOp op) override {
    Tensor in = ToHost(input, &in_);
    Tensor out = HostLike(output, &out_);
    host_->ReduceScatter(out, in, op);
    ToDevice(out, output);
  }
  // Gathers and broadcasts move bits without arithmetic: bf16 travels as is,
  // two values per 32-bit word where the count is even.
  void AllGather(Tensor output, Tensor input) override {
    Tensor in = RawToHost(input, &in_);
    Tensor out = RawHostLike(output, in.dtype, &out_);
    host_->AllGather(out, in);
    RawToDevice(out, output);
  }
  void Broadcast(Tensor buffer, int root) override {
    Tensor staged = RawToHost(buffer, &in_);
    host_->Broadcast(staged, root);
    RawToDevice(staged, buffer);
  }
  void Barrier() override {
    backend_->Synchronize();
    host_->Barrier();
  }
  int AgreeMax(int value) override { return host_->AgreeMax(value); }
  void Reduce(Tensor buffer, int root, ReduceOp op) override {
    Tensor staged = ToHost(buffer, &in_);
    host_->Reduce(staged, root, op);
    if (rank() == root) ToDevice(staged, buffer);
  }

 private:
  // Host buffers, grown once and reused: (bytes as downloaded, widened).
  struct Buffers {
    std::vector<char> raw, wide;
  };
  static DType HostType(DType t) { return t == DType::kBF16 ? DType::kF32 : t; }
  static char* Grow(std::vector<char>* v, size_t bytes) {
    if (v->size() < bytes) v->resize(bytes);
    return v->data();
  }

  // A host tensor the host communicator reduces (bf16 widened to f32).
  Tensor HostLike(Tensor t, Buffers* b) {
    const DType type = HostType(t.dtype);
    return Tensor{Grow(&b->wide, t.numel * DTypeSize(type)), type, t.numel};
  }
  Tensor ToHost(Tensor t, Buffers* b) {
    char* raw = Grow(&b->raw, t.bytes());
    backend_->Download(raw, t);
    if (t.dtype != DType::kBF16) return Tensor{raw, t.dtype, t.numel};
    Tensor wide = HostLike(t, b);
    WidenBf16(reinterpret_cast<const uint16_t*>(raw),
              static_cast<float*>(wide.data), t.numel);
    return wide;
  }
  void ToDevice(Tensor staged, Tensor t) {
    if (t.dtype == staged.dtype) {
      backend_->Upload(t, staged.data);
      return;
    }
    char* raw = Grow(&narrow_, t.bytes());
    NarrowToBf16(static_cast<const float*>(staged.data),
                 reinterpret_cast<uint16_t*>(raw), t.numel);
    backend_->Upload(t, raw);
  }

  // The tensor's bits as a type the host communicator moves: bf16 pairs as
  // i32 (an even count), else widened as for a reduction.
  static bool Packable(Tensor t) {
    return t.dtype == DType::kBF16 && t.numel % 2 == 0;
  }
  Tensor RawToHost(Tensor t, Buffers* b) {
    if (!Packable(t)) return ToHost(t, b);
    char* raw = Grow(&b->raw, t.bytes());
    backend_->Download(raw, t);
    return Tensor{raw, DType::kI32, t.numel / 2};
  }
  Tensor RawHostLike(Tensor t, DType staged_type, Buffers* b) {
    if (staged_type != DType::kI32) return HostLike(t, b);
    GPT2_CHECK_MSG(Packable(t), "all-gather of an even bf16 shard into ",
                   t.numel, " values");
    return Tensor{Grow(&b->raw, t.bytes()), DType::kI32, t.numel / 2};
  }
  void RawToDevice(Tensor staged, Tensor t) {
    if (staged.dtype == DType::kI32 && t.dtype == DType::kBF16) {
      backend_->Upload(t, staged.data);
      return;
    }
    ToDevice(staged, t);
  }

  Communicator* host_;
  Backend* backend_;
  Buffers in_, out_;
  std::vector<char> narrow_;
};

}  // namespace

std::unique_ptr<Communicator> MakeHostStagedCommunicator(
    Communicator* host_comm, Backend* backend) {
  return std::make_unique<HostStaged>(host_comm, backend);
}

}  // namespace gpt2
