#include "src/backend/update_claims.h"

#include <algorithm>

namespace gpt2 {

void UpdateClaims::Add(int update, const void* begin, int64_t bytes,
                       bool written, bool outside_gather) {
  if (begin == nullptr || bytes <= 0) return;
  const uintptr_t b = reinterpret_cast<uintptr_t>(begin);
  claims_.push_back(
      {b, b + static_cast<uintptr_t>(bytes), update, written, outside_gather});
  newest_ = std::max(newest_, update);
  sorted_ = false;
}

void UpdateClaims::Sort() {
  std::sort(claims_.begin(), claims_.end(), [](const Claim& a, const Claim& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::vector<Claim> merged;
  merged.reserve(claims_.size());
  for (const Claim& c : claims_) {
    if (!merged.empty() && merged.back().begin == c.begin &&
        merged.back().end == c.end &&
        merged.back().outside_gather == c.outside_gather) {
      merged.back().update = std::max(merged.back().update, c.update);
      merged.back().written = merged.back().written || c.written;
    } else {
      merged.push_back(c);
    }
  }
  claims_ = std::move(merged);
  disjoint_ = true;
  for (size_t i = 1; i < claims_.size(); ++i)
    disjoint_ = disjoint_ && claims_[i].begin >= claims_[i - 1].end;
  sorted_ = true;
}

int UpdateClaims::Scan(uintptr_t begin, uintptr_t end, Access access) const {
  int need = -1;
  auto it = claims_.begin();
  if (disjoint_) {
    // Disjoint and sorted by start: the ends ascend too.
    it = std::partition_point(claims_.begin(), claims_.end(),
                              [&](const Claim& c) { return c.end <= begin; });
  }
  for (; it != claims_.end(); ++it) {
    if (it->begin >= end) {
      if (disjoint_) break;
      continue;
    }
    if (it->end <= begin) continue;
    const bool conflicts =
        access == Access::kWrite ||
        (it->written && (access == Access::kRead || !it->outside_gather));
    if (conflicts) need = std::max(need, it->update);
  }
  return need;
}

int UpdateClaims::Needed(std::initializer_list<Tensor> writes,
                         std::initializer_list<Tensor> reads,
                         std::initializer_list<Tensor> gathered) {
  if (claims_.empty()) return -1;
  if (!sorted_) Sort();
  int need = -1;
  const auto scan = [&](const Tensor& t, Access access) {
    if (t.data == nullptr || t.numel <= 0) return;
    const uintptr_t b = reinterpret_cast<uintptr_t>(t.data);
    need =
        std::max(need, Scan(b, b + static_cast<uintptr_t>(t.bytes()), access));
  };
  for (const Tensor& t : writes) scan(t, Access::kWrite);
  for (const Tensor& t : reads) scan(t, Access::kRead);
  for (const Tensor& t : gathered) scan(t, Access::kGathered);
  return need;
}

void UpdateClaims::Joined(int update) {
  claims_.erase(
      std::remove_if(claims_.begin(), claims_.end(),
                     [&](const Claim& c) { return c.update <= update; }),
      claims_.end());
  if (claims_.empty()) newest_ = -1;
}

}  // namespace gpt2
