// The evaluations a training run makes of its model as it is: the val loss
// (over a pass of the val set, averaged over the ranks) and HellaSwag. Each
// waits for a recorded step's last update first (StepGraph::Flush).
#ifndef GPT2_TRAIN_EVALUATOR_H_
#define GPT2_TRAIN_EVALUATOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/backend/backend.h"
#include "src/comm/communicator.h"
#include "src/data/data_loader.h"
#include "src/model/gpt2.h"
#include "src/train/hellaswag_eval.h"
#include "src/train/step_graph.h"

namespace gpt2 {

struct EvaluatorParts {
  Backend* backend = nullptr;
  Gpt2Model* model = nullptr;
  StepGraph* graph = nullptr;           // null: no recorded step
  Communicator* comm = nullptr;         // host: ranks agree on a stop signal
  Communicator* device_comm = nullptr;  // the loss averaged over ranks
  int micro_batch = 0, seq_len = 0;     // B, T
  DataLoader* val_loader = nullptr;     // null: no val set
  const HellaSwagEval* hellaswag = nullptr;  // null: none
};

class Evaluator {
 public:
  explicit Evaluator(const EvaluatorParts& parts);  // allocates its sums
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // The val loss over `batches` batches from the val set's start; `updates`:
  // the weights' step, for the test hook. None when a stop signal cut the
  // pass short (its number then in stopped_by()): a synchronous backend (the
  // CPU's, where a pass of a large model takes minutes) looks for one after
  // each batch, the ranks agreeing; an asynchronous one has queued the whole
  // pass before it could look.
  std::optional<double> ValLoss(int batches, int64_t updates);
  int stopped_by() const { return stopped_by_; }

  // HellaSwag: its result, and the log's line for it at `step`.
  struct Scored {
    double acc_norm = 0.0;
    std::string line;
  };
  Scored HellaSwag(int64_t step);

 private:
  EvaluatorParts p_;
  Tensor val_loss_sum_, hellaswag_sums_;
  std::vector<int32_t> inputs_, targets_;
  int stopped_by_ = 0;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_EVALUATOR_H_
