#include <cmath>
#include <vector>

#include "src/core/error.h"
#include "src/ops/adamw.h"
#include "src/ops/cpu_parallel.h"

namespace gpt2 {

std::vector<AdamWDecayRun> AdamWDecayRuns(const AdamWArgs& args, int64_t n) {
  if (args.runs.empty()) return {{0, n, args.weight_decay}};
  std::vector<AdamWDecayRun> out;
  int64_t begin = 0;
  for (const AdamWRun& run : args.runs) {
    if (run.begin >= 0) {
      GPT2_CHECK_MSG(run.begin >= begin,
                     "AdamW runs must ascend without overlapping");
      begin = run.begin;
    }
    GPT2_CHECK_MSG(run.end > begin && run.end <= n,
                   "AdamW runs must ascend within the call's elements");
    out.push_back({begin, run.end, run.decayed ? args.weight_decay : 0.0});
    begin = run.end;
  }
  return out;
}

AdamWRowTable AdamWRows(const AdamWArgs& args, int64_t n) {
  const std::vector<AdamWDecayRun> runs = AdamWDecayRuns(args, n);
  GPT2_CHECK_MSG(runs.size() == 1, "an AdamW call with row marks is one run");
  const AdamWDecayRun& run = runs[0];
  GPT2_CHECK_MSG(
      args.row_width > 0 && (run.end - run.begin) % args.row_width == 0,
      "an AdamW call with row marks covers whole rows");
  const int64_t rows = (run.end - run.begin) / args.row_width;
  GPT2_CHECK_MSG(
      args.row_marks.dtype == DType::kI32 && args.row_marks.numel == rows,
      "AdamW row marks: one i32 a row");
  return {run.begin, rows, args.row_width, run.weight_decay};
}

AdamWStepValues MakeAdamWStepValues(const AdamWArgs& args) {
  AdamWStepValues values;
  values.lr = static_cast<float>(args.lr);
  values.correction1 =
      static_cast<float>(1.0 - std::pow(args.beta1, double(args.step)));
  values.correction2 =
      static_cast<float>(1.0 - std::pow(args.beta2, double(args.step)));
  values.step = args.step;
  return values;
}

namespace cpu {

void MarkAdamWRows(int32_t* marks, int64_t rows, const int32_t* tokens,
                   int64_t n, int32_t stamp) {
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] >= 0 && tokens[i] < rows) marks[tokens[i]] = stamp;
  }
}

template <typename T>
void AdamW(T* param, T* m, T* v, const T* grad, int64_t n,
           const T* norm_squared, const AdamWArgs& args) {
  std::vector<AdamWDecayRun> runs = AdamWDecayRuns(args, n);
  if (args.row_marks.data != nullptr) {
    // The selected rows, each a run of its own.
    const AdamWRowTable table = AdamWRows(args, n);
    const int32_t* marks = args.row_marks.as<int32_t>();
    const int32_t stamp = AdamWRowStamp(args.step);
    runs.clear();
    for (int64_t r = 0; r < table.rows; ++r) {
      if ((marks[r] == stamp) != args.marked_rows) continue;
      const int64_t begin = table.begin + r * table.width;
      runs.push_back({begin, begin + table.width, table.weight_decay});
    }
  }
  if (!std::isfinite(double{norm_squared[0]}))
    return;  // a NaN/Inf step is skipped
  const double scale =
      ClipScale(std::sqrt(double{norm_squared[0]}), args.grad_clip);
  const double b1 = args.beta1, b2 = args.beta2;
  const double correction1 = 1.0 - std::pow(b1, static_cast<double>(args.step));
  const double correction2 = 1.0 - std::pow(b2, static_cast<double>(args.step));
  const T lr = static_cast<T>(args.lr), eps = static_cast<T>(args.eps);
  for (const AdamWDecayRun& run : runs) {
    const T wd = static_cast<T>(run.weight_decay);
#pragma omp parallel for simd schedule(static) if (run.end - run.begin >= \
                                                   kParallelMinWork)
    for (int64_t i = run.begin; i < run.end; ++i) {
      const T g = static_cast<T>(grad[i] * scale);
      const T mi = static_cast<T>(b1) * m[i] + static_cast<T>(1.0 - b1) * g;
      const T vi = static_cast<T>(b2) * v[i] + static_cast<T>(1.0 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const T m_hat = mi / static_cast<T>(correction1);
      const T v_hat = vi / static_cast<T>(correction2);
      param[i] -= lr * (m_hat / (std::sqrt(v_hat) + eps) + wd * param[i]);
    }
  }
}

template void AdamW<float>(float*, float*, float*, const float*, int64_t,
                           const float*, const AdamWArgs&);
template void AdamW<double>(double*, double*, double*, const double*, int64_t,
                            const double*, const AdamWArgs&);

}  // namespace cpu
}  // namespace gpt2
