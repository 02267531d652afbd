#include "src/ckpt/inspect.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "google/protobuf/util/message_differencer.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

// Elements per window: 8 MiB of doubles.
constexpr int64_t kWindow = int64_t{1} << 20;

}  // namespace

absl::StatusOr<TensorStats> ComputeTensorStats(CheckpointReader* reader,
                                               const std::string& name) {
  const TensorInfo* tensor = reader->Find(name);
  if (tensor == nullptr) {
    return absl::NotFoundError(absl::StrCat(reader->path(), ": no tensor '",
                                            name, "' in the checkpoint"));
  }
  TensorStats stats;
  stats.count = tensor->numel;
  if (tensor->dtype == DType::kI32) {
    return absl::InvalidArgumentError(
        absl::StrCat(reader->path(), ": tensor '", name, "' is i32"));
  }
  // Finite elements: count, mean and sum of squared deviations, merged
  // window by window (Chan et al.) so the std stays accurate.
  int64_t n = 0;
  double mean = 0, m2 = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, abs_max = 0;
  std::vector<double> window(
      static_cast<size_t>(std::min(kWindow, tensor->numel)));
  for (int64_t offset = 0; offset < tensor->numel; offset += kWindow) {
    const int64_t count = std::min(kWindow, tensor->numel - offset);
    GPT2_RETURN_IF_ERROR(reader->ReadTensorSlice(name, DType::kF64, offset,
                                                 count, window.data()));
    int64_t wn = 0;
    double sum = 0;
    for (int64_t i = 0; i < count; ++i) {
      const double x = window[i];
      if (std::isnan(x)) {
        ++stats.nan;
      } else if (std::isinf(x)) {
        ++stats.inf;
      } else {
        ++wn;
        sum += x;
        lo = std::min(lo, x);
        hi = std::max(hi, x);
        abs_max = std::max(abs_max, std::fabs(x));
      }
    }
    if (wn == 0) continue;
    const double wmean = sum / wn;
    double wm2 = 0;
    for (int64_t i = 0; i < count; ++i) {
      if (std::isfinite(window[i]))
        wm2 += (window[i] - wmean) * (window[i] - wmean);
    }
    const double delta = wmean - mean;
    const int64_t total = n + wn;
    mean += delta * wn / total;
    m2 += wm2 + delta * delta * static_cast<double>(n) * wn / total;
    n = total;
  }
  if (n == 0) {
    stats.mean = stats.std = std::numeric_limits<double>::quiet_NaN();
    return stats;
  }
  stats.mean = mean;
  stats.std = std::sqrt(m2 / n);
  stats.min = lo;
  stats.max = hi;
  stats.abs_max = abs_max;
  return stats;
}

SizeBreakdown ComputeSizeBreakdown(const CheckpointReader& reader) {
  SizeBreakdown size;
  size.header = reader.header_bytes();
  size.overhead = reader.trailer_bytes();
  for (const RecordInfo& record : reader.records()) {
    size.overhead += record.frame_bytes - record.data_bytes;
    if (absl::StartsWith(record.name, "adamw.")) {
      size.optimizer += record.data_bytes;
    } else if (absl::StartsWith(record.name, "master/")) {
      size.master += record.data_bytes;
    } else {
      size.params += record.data_bytes;
    }
  }
  size.total = reader.file_size();
  return size;
}

bool CheckpointDiff::identical() const {
  if (!only_in_a.empty() || !only_in_b.empty()) return false;
  for (const TensorDiff& d : tensors) {
    if (!d.same_shape() || d.num_different > 0) return false;
  }
  return true;
}

absl::StatusOr<CheckpointDiff> DiffCheckpoints(CheckpointReader* a,
                                               CheckpointReader* b) {
  CheckpointDiff diff;
  for (const TensorInfo& tb : b->tensors()) {
    if (a->Find(tb.name) == nullptr) diff.only_in_b.push_back(tb.name);
  }
  std::vector<double> wa, wb;
  for (const TensorInfo& ta : a->tensors()) {
    const TensorInfo* tb = b->Find(ta.name);
    if (tb == nullptr) {
      diff.only_in_a.push_back(ta.name);
      continue;
    }
    TensorDiff d;
    d.name = ta.name;
    d.shape_a = ta.shape;
    d.shape_b = tb->shape;
    if (!d.same_shape() || ta.dtype == DType::kI32 ||
        tb->dtype == DType::kI32) {
      if (d.same_shape() && ta.dtype != tb->dtype) d.num_different = ta.numel;
      diff.tensors.push_back(std::move(d));
      continue;
    }
    wa.resize(static_cast<size_t>(std::min(kWindow, ta.numel)));
    wb.resize(wa.size());
    for (int64_t offset = 0; offset < ta.numel; offset += kWindow) {
      const int64_t count = std::min(kWindow, ta.numel - offset);
      GPT2_RETURN_IF_ERROR(
          a->ReadTensorSlice(ta.name, DType::kF64, offset, count, wa.data()));
      GPT2_RETURN_IF_ERROR(
          b->ReadTensorSlice(ta.name, DType::kF64, offset, count, wb.data()));
      for (int64_t i = 0; i < count; ++i) {
        const double x = wa[i], y = wb[i];
        if (x == y || (std::isnan(x) && std::isnan(y))) continue;
        ++d.num_different;
        const double abs_diff = std::isfinite(x) && std::isfinite(y)
                                    ? std::fabs(x - y)
                                    : std::numeric_limits<double>::infinity();
        const double scale = std::max(std::fabs(x), std::fabs(y));
        d.max_abs = std::max(d.max_abs, abs_diff);
        d.max_rel = std::max(
            d.max_rel, std::isfinite(abs_diff) ? abs_diff / scale : abs_diff);
      }
    }
    diff.tensors.push_back(std::move(d));
  }
  ckpt::Header ha = a->header(), hb = b->header();
  for (ckpt::Header* h : {&ha, &hb}) {
    h->clear_created_by();
    h->clear_created_unix_time();
  }
  google::protobuf::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff.header_differences);
  differ.Compare(ha, hb);
  return diff;
}

}  // namespace gpt2
