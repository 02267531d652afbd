// A training step replayed as a graph (GPT2_TRAIN_GRAPHS=1): one
// micro-batch's forward, backward and squared gradient norm recorded once and
// replayed with one launch a step (a world of one, no accumulation). Where
// the optimizer updates beside (AdamWOptimizer::updates_beside()), each
// step's update is deferred into the next step's graph, which queues it
// beside its forward at the rate staged before the replay
// (AdamWOptimizer::StepAtStagedValues): the same updates, bit for bit, as
// updating beside the next forward without graphs. There the replay's tokens
// are staged before the update runs, so wte's rows they index are updated
// first and its other rows after the layers' groups: the encoder waits only
// for those rows (GPT2_UPDATE_ROWS_FIRST=0: for the whole of wte and wpe, as
// without graphs). Otherwise the update runs in place after the replay.
//
// Use: for each step, Run() when ready() (else the caller runs the step's
// ops itself), then Update() with the step's norm; Flush() before anything
// else reads the weights or gradients (evaluation, a checkpoint, the end).
#ifndef GPT2_TRAIN_STEP_GRAPH_H_
#define GPT2_TRAIN_STEP_GRAPH_H_

#include <cstdint>
#include <optional>

#include "src/backend/backend.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"

namespace gpt2 {

class StepGraph {
 public:
  // The backend must record graphs (Backend::SupportsGraphs); the optimizer
  // updates the model's whole buffer (no shards).
  StepGraph(Backend* backend, Gpt2Model* model, AdamWOptimizer* optimizer);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Whether the updates are recorded in the graph (else in place after it).
  bool updates_inside() const { return updates_inside_; }
  // Whether the recorded updates take wte's gathered rows first (unless
  // GPT2_UPDATE_ROWS_FIRST=0), and how the logs say so.
  static bool RowsFirstWanted();
  bool rows_first() const { return row_marks_.data != nullptr; }
  static constexpr const char* kRowsFirstNote =
      " (wte's rows the batch gathers first)";
  // Whether the next step can be a replay: with the updates inside, only
  // while one is deferred (the first step, and the one after a Flush, run
  // directly).
  bool ready() const { return !updates_inside_ || deferred_.has_value(); }

  // One step on these tokens (host memory, (B, T)): stages the inputs, the
  // encoder backward's grouping and the deferred update's rate, records the
  // graph at the first call (B, T and dloss fixed from then on) and replays
  // it. The loss sum (losses x dloss) and the squared gradient norm are then
  // copied to loss_sum and norm_squared (one element each; skipped if empty).
  void Run(const int32_t* inputs, const int32_t* targets, int B, int T,
           double dloss, Tensor loss_sum, Tensor norm_squared);
  // The optimizer update of the step just queued, replayed or run directly
  // (its squared norm in norm_squared), at rate lr (step: 1-based): deferred
  // to the next replay with the updates inside, else queued now.
  void Update(Tensor norm_squared, double lr, int64_t step);
  // Queues a deferred update now.
  void Flush();

 private:
  Backend* backend_;
  Gpt2Model* model_;
  AdamWOptimizer* optimizer_;
  bool updates_inside_;
  // The recorded step's loss sum and squared norm (stats dtype), the deferred
  // update's AdamWStepValues and wte's row marks (with the updates inside;
  // the marks only with rows first), the graph's handle (-1 before the first
  // Run) and what it was recorded for.
  Tensor loss_, norm_, step_values_, row_marks_;
  int graph_ = -1;
  int B_ = 0, T_ = 0;
  double dloss_ = 0.0;
  // The last Run's norm is in norm_ (a directly run step's is copied there).
  bool norm_in_graph_ = false;
  struct Deferred {
    double lr;
    int64_t step;
  };
  std::optional<Deferred> deferred_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_STEP_GRAPH_H_
