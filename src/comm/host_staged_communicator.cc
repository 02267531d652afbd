#include "src/comm/host_staged_communicator.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace gpt2 {
namespace {

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
    Staged staged = ToHost(buffer);
    host_->AllReduce(staged.view, op);
    ToDevice(staged, buffer);
  }
  void ReduceScatter(Tensor output, Tensor input, ReduceOp op) override {
    Staged in = ToHost(input);
    Staged out = HostLike(output);
    host_->ReduceScatter(out.view, in.view, op);
    ToDevice(out, output);
  }
  void AllGather(Tensor output, Tensor input) override {
    Staged in = ToHost(input);
    Staged out = HostLike(output);
    host_->AllGather(out.view, in.view);
    ToDevice(out, output);
  }
  void Broadcast(Tensor buffer, int root) override {
    Staged staged = ToHost(buffer);
    host_->Broadcast(staged.view, root);
    ToDevice(staged, buffer);
  }
  void Barrier() override {
    backend_->Synchronize();
    host_->Barrier();
  }
  void Reduce(Tensor buffer, int root, ReduceOp op) override {
    Staged staged = ToHost(buffer);
    host_->Reduce(staged.view, root, op);
    if (rank() == root) ToDevice(staged, buffer);
  }

 private:
  // A host copy in a type the host communicator reduces (bf16 widened to f32).
  struct Staged {
    std::vector<char> bytes;
    Tensor view;
  };
  static DType HostType(DType t) { return t == DType::kBF16 ? DType::kF32 : t; }

  Staged HostLike(Tensor t) {
    Staged s;
    s.bytes.resize(t.numel * DTypeSize(HostType(t.dtype)));
    s.view = Tensor{s.bytes.data(), HostType(t.dtype), t.numel};
    return s;
  }
  Staged ToHost(Tensor t) {
    std::vector<char> raw(t.bytes());
    backend_->Download(raw.data(), t);
    Staged s;
    s.bytes = t.dtype == HostType(t.dtype)
                  ? std::move(raw)
                  : EncodeHost(DecodeHost(raw, t.dtype), HostType(t.dtype));
    s.view = Tensor{s.bytes.data(), HostType(t.dtype), t.numel};
    return s;
  }
  void ToDevice(const Staged& s, Tensor t) {
    if (t.dtype == s.view.dtype) {
      backend_->Upload(t, s.bytes.data());
      return;
    }
    const std::vector<char> raw =
        EncodeHost(DecodeHost(s.bytes, s.view.dtype), t.dtype);
    backend_->Upload(t, raw.data());
  }

  Communicator* host_;
  Backend* backend_;
};

}  // namespace

std::unique_ptr<Communicator> MakeHostStagedCommunicator(
    Communicator* host_comm, Backend* backend) {
  return std::make_unique<HostStaged>(host_comm, backend);
}

}  // namespace gpt2
