#include "src/train/evaluator.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/process_clock.h"
#include "src/core/stop_signal.h"
#include "src/train/test_hooks.h"

namespace gpt2 {

Evaluator::Evaluator(const EvaluatorParts& parts)
    : p_(parts),
      val_loss_sum_(parts.backend->Alloc(parts.model->stats_dtype(), 1)),
      hellaswag_sums_(parts.backend->Alloc(parts.model->stats_dtype(), 3)),
      inputs_(int64_t{parts.micro_batch} * parts.seq_len),
      targets_(int64_t{parts.micro_batch} * parts.seq_len) {}

Evaluator::~Evaluator() {
  p_.backend->Free(val_loss_sum_);
  p_.backend->Free(hellaswag_sums_);
}

std::optional<double> Evaluator::ValLoss(int batches, int64_t updates) {
  Backend* backend = p_.backend;
  Gpt2Model& model = *p_.model;
  const int B = p_.micro_batch, T = p_.seq_len;
  const int world = p_.comm->world_size();
  if (p_.graph != nullptr) p_.graph->Flush();
  p_.val_loader->Reset();
  backend->Zero(val_loss_sum_);
  for (int i = 0; i < batches; ++i) {
    p_.val_loader->Next(inputs_.data(), targets_.data());
    model.Forward(inputs_.data(), targets_.data(), B, T, 0.0,
                  /*write_grad=*/false);
    backend->AccumulateSum(val_loss_sum_, model.losses(),
                           1.0 / (static_cast<double>(B) * T * batches));
    if (i == 0) InjectValSignalForTests(updates, p_.comm->rank());
    if (!backend->asynchronous()) {
      int signo = StopSignalReceived();
      if (world > 1) signo = p_.comm->AgreeMax(signo);
      if (signo != 0) {
        stopped_by_ = signo;
        return std::nullopt;
      }
    }
  }
  p_.device_comm->AllReduce(val_loss_sum_, ReduceOp::kAverage);
  std::vector<char> bytes(DTypeSize(model.stats_dtype()));
  backend->Download(bytes.data(), val_loss_sum_);
  return DecodeHost(bytes, model.stats_dtype())[0];
}

Evaluator::Scored Evaluator::HellaSwag(int64_t step) {
  if (p_.graph != nullptr) p_.graph->Flush();
  const auto start = std::chrono::steady_clock::now();
  const HellaSwagEval::Result r =
      p_.hellaswag->Run(p_.model, p_.backend, p_.device_comm, p_.comm->rank(),
                        p_.comm->world_size(), p_.micro_batch, hellaswag_sums_);
  const int64_t left_out = p_.hellaswag->left_out();
  return {r.acc_norm(),
          absl::StrFormat(
              "step %d | hellaswag: acc_norm %.4f, acc %.4f (%d examples%s, "
              "%.1f s)",
              step, r.acc_norm(), r.acc(), r.examples,
              left_out > 0 ? absl::StrCat("; ", left_out,
                                          " longer than train.seq_len left out")
                           : "",
              SecondsSince(start))};
}

}  // namespace gpt2
