#include "src/train/step_graph.h"

#include "src/core/env.h"
#include "src/core/error.h"

namespace gpt2 {

StepGraph::StepGraph(Backend* backend, Gpt2Model* model,
                     AdamWOptimizer* optimizer)
    : backend_(backend),
      model_(model),
      optimizer_(optimizer),
      updates_inside_(optimizer->updates_beside()) {
  GPT2_CHECK_MSG(backend_->SupportsGraphs(), backend_->name(),
                 " records no graphs");
  GPT2_CHECK_MSG(optimizer_->shard().shard_size == model_->num_params(),
                 "a recorded step updates the whole model");
  loss_ = backend_->Alloc(model_->stats_dtype(), 1);
  norm_ = backend_->Alloc(model_->stats_dtype(), 1);
  if (updates_inside_) {
    step_values_ = backend_->Alloc(DType::kI32, kAdamWStepValuesI32);
    if (RowsFirstWanted()) {
      row_marks_ =
          backend_->Alloc(DType::kI32, model_->param_list()[kWte].shape[0]);
      backend_->Zero(row_marks_);
    }
  }
}

bool StepGraph::RowsFirstWanted() {
  return !EnvIs("GPT2_UPDATE_ROWS_FIRST", "0");
}

StepGraph::~StepGraph() {
  backend_->Free(loss_);
  backend_->Free(norm_);
  backend_->Free(step_values_);
  backend_->Free(row_marks_);
}

void StepGraph::Run(const int32_t* inputs, const int32_t* targets, int B, int T,
                    double dloss, Tensor loss_sum, Tensor norm_squared) {
  GPT2_CHECK_MSG(ready(), "a recorded step with no update deferred to it");
  GPT2_CHECK_MSG(graph_ < 0 || (B == B_ && T == T_ && dloss == dloss_),
                 "the step was recorded for B=", B_, " T=", T_);
  model_->SetInputs(inputs, targets, B, T);
  backend_->StageEncoderBackward(
      inputs, B, T, static_cast<int>(model_->param_list()[kWte].shape[1]));
  if (updates_inside_) {
    optimizer_->StageStepValues(step_values_, deferred_->lr, deferred_->step);
  }
  if (graph_ < 0) {
    B_ = B;
    T_ = T;
    dloss_ = dloss;
    backend_->BeginGraph();
    // The last step's update beside this forward (its norm in norm_, its
    // gradients still in the model's), each forward op waiting for its own
    // weights' update; the backward writes the gradients over the last
    // step's, each op once the update has read them.
    if (updates_inside_) {
      GatheredRows wte;
      if (row_marks_.data != nullptr)
        wte = {kWte, model_->input_tokens(B, T), row_marks_};
      optimizer_->StepAtStagedValues(model_->params(), model_->grads(), norm_,
                                     step_values_, wte);
    }
    backend_->Zero(loss_);
    model_->QueueForward(B, T, dloss, /*write_grad=*/true,
                         /*with_targets=*/true);
    backend_->AccumulateSum(loss_, model_->losses(), dloss);
    model_->Backward(nullptr, ParamGrads::kOverwrite);
    backend_->SumSquares(norm_, model_->grads());
    graph_ = backend_->EndGraph();
  }
  backend_->ReplayGraph(graph_);
  deferred_.reset();
  norm_in_graph_ = true;
  if (loss_sum.data != nullptr) backend_->Copy(loss_sum, loss_);
  if (norm_squared.data != nullptr) backend_->Copy(norm_squared, norm_);
}

void StepGraph::Update(Tensor norm_squared, double lr, int64_t step) {
  GPT2_CHECK_MSG(!deferred_.has_value(), "an update is already deferred");
  if (!updates_inside_) {
    optimizer_->Step(model_->params(), model_->grads(), norm_squared, lr, step);
    return;
  }
  if (!norm_in_graph_) backend_->Copy(norm_, norm_squared);
  norm_in_graph_ = false;
  deferred_ = Deferred{lr, step};
}

void StepGraph::Flush() {
  if (!deferred_.has_value()) return;
  optimizer_->Step(model_->params(), model_->grads(), norm_, deferred_->lr,
                   deferred_->step);
  deferred_.reset();
}

}  // namespace gpt2
