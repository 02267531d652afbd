#include "src/train/step_reader.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "src/core/process_clock.h"
#include "src/core/thousands.h"
#include "src/train/test_hooks.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

// "progress: step 1000 of 5000 (20%), 55 s since start; about 3m 40s left
// at 54.1 ms/step".
std::string FormatProgressLine(int64_t step, int64_t max_steps,
                               double elapsed_s, double ms_per_step) {
  const int64_t left_steps = std::max<int64_t>(max_steps - step - 1, 0);
  const int64_t left_s =
      static_cast<int64_t>(std::llround(left_steps * ms_per_step / 1000.0));
  const std::string left = Duration(left_s);
  return absl::StrFormat(
      "progress: step %d of %d (%.0f%%), %.0f s since start; about %s left "
      "at %.1f ms/step",
      step, max_steps, 100.0 * (step + 1) / std::max<int64_t>(max_steps, 1),
      elapsed_s, left, ms_per_step);
}

}  // namespace

StepReader::StepReader(const StepReaderParts& parts)
    : p_(parts),
      loss_sums_(parts.backend->Alloc(parts.stats_dtype, 2)),
      norms_squared_(parts.backend->Alloc(parts.stats_dtype, 2)),
      scalar_bytes_(DTypeSize(parts.stats_dtype)),
      host_scalars_(4 * scalar_bytes_),
      last_done_(Clock::now()),
      mark_step_(parts.first_step - 1),
      mark_elapsed_s_(SecondsSince(parts.process_start)) {}

StepReader::~StepReader() {
  p_.backend->Free(loss_sums_);
  p_.backend->Free(norms_squared_);
}

Tensor StepReader::loss_sum(int64_t step) const {
  return loss_sums_.Slice(step % 2, 1);
}

Tensor StepReader::norm_squared(int64_t step) const {
  return norms_squared_.Slice(step % 2, 1);
}

void StepReader::Queue(const StepMetrics& metrics) {
  const int slot = static_cast<int>(metrics.step % 2);
  p_.backend->QueueDownload(host_scalars_.data() + 2 * slot * scalar_bytes_,
                            loss_sum(metrics.step));
  p_.backend->QueueDownload(
      host_scalars_.data() + (2 * slot + 1) * scalar_bytes_,
      norm_squared(metrics.step));
  pending_ = metrics;
  pending_slot_ = slot;
}

void StepReader::RestartClock(int64_t step) {
  last_done_ = Clock::now();
  host_dt_step_ = step;
}

double StepReader::HostScalar(int index) const {
  std::vector<char> bytes(host_scalars_.begin() + index * scalar_bytes_,
                          host_scalars_.begin() + (index + 1) * scalar_bytes_);
  return DecodeHost(bytes, p_.stats_dtype)[0];
}

void StepReader::Finish(RunLog* log, TrainResult* result, bool* stop) {
  if (!pending_) return;
  StepMetrics metrics = *pending_;
  pending_.reset();
  Backend* backend = p_.backend;
  backend->WaitQueuedDownloads();
  const Clock::time_point now = Clock::now();
  // The device's time between this step's end and the last one's where the
  // backend marks them (steady on an asynchronous backend, whose host runs
  // ahead unevenly); else the host's, which covers the same span.
  const double device_ms = metrics.step != host_dt_step_
                               ? backend->DeviceStepMs(metrics.step)
                               : -1.0;
  metrics.dt_ms =
      device_ms >= 0.0
          ? device_ms
          : std::chrono::duration<double, std::milli>(now - last_done_).count();
  last_done_ = now;
  metrics.tok_per_sec = p_.step_tokens / (metrics.dt_ms / 1000.0);
  metrics.elapsed_s = SecondsSince(p_.process_start);
  metrics.loss = HostScalar(2 * pending_slot_);
  metrics.norm = std::sqrt(HostScalar(2 * pending_slot_ + 1));
  if (NonFiniteLossForTests(metrics.step)) {
    NonFiniteWeightsForTests(metrics.step, backend, p_.params);
    metrics.loss = std::nan("");
  }
  const bool finite =
      std::isfinite(metrics.loss) && std::isfinite(metrics.norm);
  if (metrics.step % p_.every_steps == 0 || metrics.step == p_.max_steps - 1 ||
      !finite) {
    log->Line(FormatStepLine(metrics));
  }
  // Now and then, how far the run is and how long the rest takes at the pace
  // of the steps since the last such line.
  if (p_.progress_every_seconds > 0 &&
      metrics.elapsed_s - mark_elapsed_s_ >= p_.progress_every_seconds) {
    const int64_t steps = metrics.step - mark_step_;
    const double ms_per_step = 1000.0 * (metrics.elapsed_s - mark_elapsed_s_) /
                               std::max<int64_t>(steps, 1);
    log->Line(FormatProgressLine(metrics.step, p_.max_steps, metrics.elapsed_s,
                                 ms_per_step));
    mark_step_ = metrics.step;
    mark_elapsed_s_ = metrics.elapsed_s;
  }
  log->Metrics(metrics);
  result->losses.push_back(metrics.loss);
  result->final_loss = metrics.loss;
  if (!finite) {
    if (p_.on_nan == config::SKIP_STEP) {
      ++result->skipped_steps;
      log->Line(absl::StrFormat(
          "step %d: loss %f / grad norm %f is not finite: update skipped "
          "(train.on_nan: SKIP_STEP)",
          metrics.step, metrics.loss, metrics.norm));
      return;
    }
    // The step's update was skipped on the device. The run stops after the
    // step already queued, and saves the weights if they are still finite.
    if (!non_finite_stop_) {
      non_finite_stop_ = absl::InternalError(absl::StrFormat(
          "step %d: the loss (%f) or grad norm (%f) is not finite; stopping "
          "(train.on_nan: STOP). Try a lower optim.lr, check the data, or "
          "set train.on_nan: SKIP_STEP.",
          metrics.step, metrics.loss, metrics.norm));
    }
    *stop = true;
    return;
  }
  for (const std::string& line : p_.target->Observe(metrics, stop)) {
    log->Line(line);
  }
}

}  // namespace gpt2
