// SiteSummary: what one site's observations reduce to — the running statistics of one or more
// tensors with named fields and an exact, count-weighted merge. The CPU path makes it from a
// Summary (site_summary()), the device path from its packed float64 fields (unpacked()), and
// the scope folds those of several calls, steps and ranks with merge().
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "layerscope/detail/pooled_moments.hpp"
#include "layerscope/summary.hpp"

namespace layerscope {

/// Statistics of one or more observations of a site.
///
/// mean, m2, min, max, l1 and l2 cover the finite elements (count of size); nonfinite counts
/// NaN and ±Inf, which enter no other field. With no finite element (count == 0): mean, min
/// and max are NaN; m2, l1 and l2 are 0. channel_active[c] counts the active elements of unit
/// c; it is absent for tensors observed without a unit axis.
struct SiteSummary {
  std::int64_t size = 0;       ///< all elements, finite or not
  std::int64_t count = 0;      ///< finite elements
  double mean = std::numeric_limits<double>::quiet_NaN();  ///< mean of the finite values
  double m2 = 0.0;             ///< sum of squared deviations from mean
  double min = std::numeric_limits<double>::quiet_NaN();   ///< smallest finite value
  double max = std::numeric_limits<double>::quiet_NaN();   ///< largest finite value
  double l1 = 0.0;             ///< sum of |x| over finite values
  double l2 = 0.0;             ///< Euclidean norm of the finite values
  std::int64_t zeros = 0;      ///< elements equal to 0 (either sign)
  std::int64_t nonfinite = 0;  ///< NaN and ±Inf elements
  std::optional<std::vector<std::int64_t>> channel_active;  ///< active elements per unit
};

/// The scalar fields of SiteSummary, in the order of packed() and unpacked(): the one list a
/// packed layout (the device path's) is derived from.
inline constexpr std::array<const char*, 10> kSiteSummaryFields = {
    "size", "count", "mean", "m2", "min", "max", "l1", "l2", "zeros", "nonfinite"};
inline constexpr std::size_t kSiteSummaryScalars = kSiteSummaryFields.size();

/// The scalar fields of `s` as float64, in kSiteSummaryFields order (counts exact below 2^53).
inline std::array<double, kSiteSummaryScalars> packed(const SiteSummary& s) {
  return {static_cast<double>(s.size), static_cast<double>(s.count), s.mean, s.m2, s.min, s.max,
          s.l1, s.l2, static_cast<double>(s.zeros), static_cast<double>(s.nonfinite)};
}

/// The SiteSummary whose packed() fields are values[0, kSiteSummaryScalars): counts are
/// rounded to the nearest integer; with count 0 mean, min and max become NaN, m2, l1 and l2 0,
/// whatever `values` held there.
inline SiteSummary unpacked(const double* values,
                            std::optional<std::vector<std::int64_t>> channel_active = {}) {
  SiteSummary s;
  s.size = std::llround(values[0]);
  s.count = std::llround(values[1]);
  if (s.count > 0) {
    s.mean = values[2];
    s.m2 = values[3];
    s.min = values[4];
    s.max = values[5];
    s.l1 = values[6];
    s.l2 = values[7];
  }
  s.zeros = std::llround(values[8]);
  s.nonfinite = std::llround(values[9]);
  s.channel_active = std::move(channel_active);
  return s;
}

/// The SiteSummary of a summarize() result; `units`: keep its per-channel activity counts.
inline SiteSummary site_summary(Summary&& s, bool units) {
  SiteSummary out;
  out.size = s.size;
  out.count = s.count;
  out.mean = s.mean;
  out.m2 = s.m2;
  out.min = s.min;
  out.max = s.max;
  out.l1 = s.l1;
  out.l2 = s.l2;
  out.zeros = s.zeros;
  out.nonfinite = s.nan + s.pos_inf + s.neg_inf;
  if (units) out.channel_active = std::move(s.channel_active);
  return out;
}

/// Folds `other` into `into`, exactly as if all their elements had been summarized together:
/// counts add, mean and m2 combine by Chan's formula (weighted by the finite counts; means are
/// never averaged), min/max combine, l1 adds, l2 combines as hypot. Per-unit counts add; a
/// side without them leaves the other's. Per-unit counts of different lengths (a module called
/// on tensors of different widths) cannot be added: `other`'s, the later layout, are kept.
/// Never throws; merging an empty SiteSummary (size 0) changes nothing.
inline void merge(SiteSummary& into, const SiteSummary& other) {
  if (other.channel_active) {
    if (!into.channel_active || into.channel_active->size() != other.channel_active->size()) {
      into.channel_active = other.channel_active;
    } else {
      auto& mine = *into.channel_active;
      for (std::size_t c = 0; c < mine.size(); ++c) mine[c] += (*other.channel_active)[c];
    }
  }
  into.size += other.size;
  into.zeros += other.zeros;
  into.nonfinite += other.nonfinite;
  if (other.count == 0) return;
  if (into.count == 0) {
    into.count = other.count;
    into.mean = other.mean;
    into.m2 = other.m2;
    into.min = other.min;
    into.max = other.max;
    into.l1 = other.l1;
    into.l2 = other.l2;
    return;
  }
  detail::pool_moments(into.count, into.mean, into.m2, other.count, other.mean, other.m2);
  into.l1 += other.l1;
  into.l2 = std::hypot(into.l2, other.l2);
  into.min = std::min(into.min, other.min);
  into.max = std::max(into.max, other.max);
}

/// `a` and `b` merged (see merge()), leaving both as they are.
inline SiteSummary merged(SiteSummary a, const SiteSummary& b) {
  merge(a, b);
  return a;
}

}  // namespace layerscope
