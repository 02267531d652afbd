#include "src/train/run_log.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gpt2 {

std::string FormatStepLine(const StepMetrics& m) {
  return absl::StrFormat(
      "step %d | loss: %.6f | lr: %.4e | dt: %.2fms | tok/sec: %.2f | norm: "
      "%.4f",
      m.step, m.loss, m.lr, m.dt_ms, m.tok_per_sec, m.norm);
}

namespace {

// A JSON number: %.9g keeps full float precision; non-finite values become
// JSON null.
std::string JsonNumber(double v) {
  return std::isfinite(v) ? absl::StrFormat("%.9g", v) : std::string("null");
}

// `text` and a newline to `file`, flushed: false where either failed (errno
// says why), with the stream's error flag cleared for the next try.
bool WriteLine(FILE* file, const std::string& text) {
  const bool printed = std::fprintf(file, "%s\n", text.c_str()) >= 0;
  const bool flushed = std::fflush(file) == 0;
  if (printed && flushed) return true;
  const int error = errno;
  std::clearerr(file);
  errno = error;
  return false;
}

// The measures of the weights, where taken, as event-file scalars.
void AddEvals(std::optional<double> val_loss, std::optional<double> hellaswag,
              std::vector<TensorBoardWriter::Scalar>* scalars) {
  if (val_loss.has_value()) scalars->emplace_back("val/loss", *val_loss);
  if (hellaswag.has_value()) {
    scalars->emplace_back("eval/hellaswag_acc_norm", *hellaswag);
  }
}

}  // namespace

std::string FormatMetricsJson(const StepMetrics& m) {
  const auto num = JsonNumber;
  std::string json = absl::StrCat(
      "{\"step\": ", m.step, ", \"loss\": ", num(m.loss),
      ", \"lr\": ", num(m.lr), ", \"norm\": ", num(m.norm),
      ", \"dt_ms\": ", num(m.dt_ms), ", \"tok_per_sec\": ", num(m.tok_per_sec),
      ", \"elapsed_s\": ", num(m.elapsed_s));
  if (m.val_loss.has_value())
    absl::StrAppend(&json, ", \"val_loss\": ", num(*m.val_loss));
  if (m.hellaswag.has_value())
    absl::StrAppend(&json, ", \"hellaswag\": ", num(*m.hellaswag));
  absl::StrAppend(&json, "}");
  return json;
}

std::string FormatRestartJson(int64_t step) {
  return absl::StrCat("{\"step\": ", step, ", \"restart\": true}");
}

std::string FormatFinalJson(int64_t step, std::optional<double> val_loss,
                            std::optional<double> hellaswag) {
  std::string json = absl::StrCat("{\"step\": ", step, ", \"final\": true");
  if (val_loss.has_value())
    absl::StrAppend(&json, ", \"val_loss\": ", JsonNumber(*val_loss));
  if (hellaswag.has_value())
    absl::StrAppend(&json, ", \"hellaswag\": ", JsonNumber(*hellaswag));
  absl::StrAppend(&json, "}");
  return json;
}

absl::StatusOr<RunLog> RunLog::Open(const std::string& run_dir, bool enabled,
                                    bool append, bool tensorboard) {
  RunLog log;
  log.dir_ = run_dir;
  log.enabled_ = enabled;
  if (!enabled) return log;
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        run_dir, ": cannot create the run folder: ", ec.message()));
  }
  const std::string log_path = run_dir + "/train.log";
  const std::string metrics_path = run_dir + "/metrics.jsonl";
  log.log_.reset(std::fopen(log_path.c_str(), append ? "a" : "w"));
  if (log.log_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(log_path, ": cannot open: ", std::strerror(errno)));
  }
  log.metrics_.reset(std::fopen(metrics_path.c_str(), append ? "a" : "w"));
  if (log.metrics_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(metrics_path, ": cannot open: ", std::strerror(errno)));
  }
  if (tensorboard) {
    absl::StatusOr<TensorBoardWriter> writer = TensorBoardWriter::Open(run_dir);
    if (!writer.ok()) return writer.status();
    log.tensorboard_.emplace(*std::move(writer));
    log.restart_pending_ = append;
  }
  log.metrics_restart_pending_ = append;
  return log;
}

void RunLog::Line(const std::string& text) {
  if (!enabled_) return;
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  if (capturing_) absl::StrAppend(&captured_, text, "\n");
  Track(WriteLine(log_.get(), text), "train.log", "lines", &log_lost_, -1);
}

std::string RunLog::TakeCapture() {
  capturing_ = false;
  return std::exchange(captured_, std::string());
}

void RunLog::Track(bool written, const char* file, const char* what,
                   int64_t* lost, int64_t step) {
  if (written && *lost == 0) return;  // every line while all is well
  const std::string at = step >= 0 ? absl::StrCat(" at step ", step) : "";
  if (!written) {
    // The first failure of a stretch says so (stderr: the console still
    // shows it when the file it is about cannot be written).
    if ((*lost)++ == 0) {
      std::fprintf(stderr,
                   "warning: %s/%s: cannot write%s: %s; its %s go on on the "
                   "console, and into the file again once it can be written\n",
                   dir_.c_str(), file, at.c_str(), std::strerror(errno), what);
    }
    return;
  }
  if (*lost > 0) {
    std::fprintf(stderr, "warning: %s/%s: written again%s; %lld %s missing\n",
                 dir_.c_str(), file, at.c_str(), static_cast<long long>(*lost),
                 what);
    *lost = 0;
  }
}

void RunLog::Metrics(const StepMetrics& m) {
  if (!enabled_) return;
  if (metrics_restart_pending_) {
    metrics_restart_pending_ = false;
    Track(WriteLine(metrics_.get(), FormatRestartJson(m.step)), "metrics.jsonl",
          "step records", &metrics_lost_, m.step);
  }
  Track(WriteLine(metrics_.get(), FormatMetricsJson(m)), "metrics.jsonl",
        "step records", &metrics_lost_, m.step);
  if (!tensorboard_.has_value()) return;
  std::vector<TensorBoardWriter::Scalar> scalars = {
      {"train/loss", m.loss},
      {"train/lr", m.lr},
      {"train/grad_norm", m.norm},
      {"train/step_ms", m.dt_ms},
      {"train/tokens_per_sec", m.tok_per_sec}};
  AddEvals(m.val_loss, m.hellaswag, &scalars);
  Scalars(m.step, std::move(scalars));
}

void RunLog::FinalEval(int64_t step, std::optional<double> val_loss,
                       std::optional<double> hellaswag) {
  if (!enabled_ || (!val_loss.has_value() && !hellaswag.has_value())) return;
  Track(WriteLine(metrics_.get(), FormatFinalJson(step, val_loss, hellaswag)),
        "metrics.jsonl", "step records", &metrics_lost_, step);
  if (!tensorboard_.has_value()) return;
  std::vector<TensorBoardWriter::Scalar> scalars;
  AddEvals(val_loss, hellaswag, &scalars);
  if (!scalars.empty()) Scalars(step, std::move(scalars));
}

void RunLog::Text(int64_t step, const std::string& tag,
                  const std::string& text) {
  if (!enabled_ || !tensorboard_.has_value()) return;
  ToEvents(step, [&](double now) {
    return tensorboard_->Text(step, now, tag, text);
  });
}

void RunLog::Scalars(int64_t step,
                     std::vector<TensorBoardWriter::Scalar> scalars) {
  ToEvents(step, [&](double now) {
    return tensorboard_->Scalars(step, now, scalars);
  });
}

void RunLog::ToEvents(int64_t step,
                      const std::function<absl::Status(double)>& write) {
  const double now = UnixSeconds();
  absl::Status written = absl::OkStatus();
  if (restart_pending_) {
    written = tensorboard_->Restart(step, now);
    restart_pending_ = false;
  }
  if (written.ok()) written = write(now);
  if (!written.ok()) {
    Line(absl::StrCat("warning: ", written.message(),
                      "; no more TensorBoard events this run (metrics.jsonl "
                      "goes on)"));
    tensorboard_.reset();
  }
}

}  // namespace gpt2
