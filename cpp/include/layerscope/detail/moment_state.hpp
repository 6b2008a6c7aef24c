// The sufficient statistics behind Moments and ChannelMoments, their exact merge (Chan et al.)
// and the block kernel that summarises a short stretch of values in two passes. Private: the
// public, validated interface is layerscope/moments.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "layerscope/detail/pooled_moments.hpp"
#include "layerscope/serialize.hpp"

namespace layerscope::detail {

/// count, mean, M2 (sum of squared deviations from the mean), extrema, sums, and how many
/// non-finite values were skipped. The empty state is canonical (zeros, min = +Inf,
/// max = -Inf), so two empty states serialize to the same bytes.
struct MomentState {
  std::int64_t count = 0;
  double mean = 0.0;
  double m2 = 0.0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0.0;
  double sum_sq = 0.0;
  std::int64_t nonfinite = 0;

  /// Folds `other` in with Chan's parallel formula. Merging an empty state changes nothing but
  /// the non-finite count, and merging into an empty state copies `other` bit for bit.
  void fold(const MomentState& other) noexcept {
    nonfinite += other.nonfinite;
    if (other.count == 0) return;
    if (count == 0) {
      const std::int64_t skipped = nonfinite;
      *this = other;
      nonfinite = skipped;
      return;
    }
    pool_moments(count, mean, m2, other.count, other.mean, other.m2);
    min = std::min(min, other.min);
    max = std::max(max, other.max);
    sum += other.sum;
    sum_sq += other.sum_sq;
  }

  /// Adds one value (Welford's update); NaN and +-Inf only raise `nonfinite`.
  void add(double x) noexcept {
    if (!std::isfinite(x)) {
      ++nonfinite;
      return;
    }
    ++count;
    const double delta = x - mean;
    mean += delta / static_cast<double>(count);
    m2 += delta * (x - mean);
    min = std::min(min, x);
    max = std::max(max, x);
    sum += x;
    sum_sq += x * x;
  }
};

/// Values per block of the batch kernels: small enough that the second pass reads from L1/L2.
inline constexpr std::int64_t kMomentBlock = 4096;

/// Summarises x[0], x[stride], ... (n values) in two passes over the block: sums and extrema
/// first, then squared deviations from the block mean with the compensation term of the
/// corrected two-pass algorithm. One division per block, none per element.
template <class Load>
MomentState block_moments(std::int64_t n, Load&& load) noexcept {
  MomentState s;
  std::int64_t finite = 0;
  double sum = 0.0, sum_sq = 0.0;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = load(i);
    if (!std::isfinite(x)) continue;
    ++finite;
    sum += x;
    sum_sq += x * x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  s.nonfinite = n - finite;
  if (finite == 0) return s;
  if (!std::isfinite(sum)) {
    // Finite float64 values near the top of the range overflowed the sum; Welford's update
    // never forms the sum, so it keeps a finite mean wherever one exists.
    MomentState w;
    for (std::int64_t i = 0; i < n; ++i) w.add(load(i));
    return w;
  }
  const double mean = sum / static_cast<double>(finite);
  double m2 = 0.0, drift = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = load(i);
    if (!std::isfinite(x)) continue;
    const double d = x - mean;
    m2 += d * d;
    drift += d;
  }
  // Rounding in the sum leaves a small residual sum of deviations: it refines the mean (which
  // Chan's merge needs to ~1 ulp when the spread is tiny beside it) and, squared, corrects M2.
  const double residual = drift / static_cast<double>(finite);
  m2 -= drift * residual;
  s.count = finite;
  s.mean = mean + residual;
  s.m2 = std::max(m2, 0.0);
  s.min = lo;
  s.max = hi;
  s.sum = sum;
  s.sum_sq = sum_sq;
  return s;
}

/// Summarises n contiguous doubles, block by block.
inline MomentState chunk_moments(const double* x, std::int64_t n) noexcept {
  MomentState total;
  for (std::int64_t start = 0; start < n; start += kMomentBlock) {
    const double* p = x + start;
    total.fold(block_moments(std::min(kMomentBlock, n - start),
                             [p](std::int64_t i) { return p[i]; }));
  }
  return total;
}

/// Whether a state is one this library can produce: the invariants checked for states
/// deserialized from bytes and for summaries folded in through a public update(...).
/// Returns nullptr when it is, else what is wrong.
inline const char* state_problem(const MomentState& s) noexcept {
  if (s.count < 0) return "negative count";
  if (s.nonfinite < 0) return "negative non-finite count";
  if (s.count == 0) {
    const bool canonical = s.mean == 0.0 && s.m2 == 0.0 && s.sum == 0.0 && s.sum_sq == 0.0 &&
                           s.min == std::numeric_limits<double>::infinity() &&
                           s.max == -std::numeric_limits<double>::infinity();
    return canonical ? nullptr : "an empty state with non-zero fields";
  }
  if (!std::isfinite(s.min) || !std::isfinite(s.max) || s.min > s.max)
    return "min and max must be finite with min <= max";
  // M2, the sums and even the mean may be Inf or NaN after float64 overflow (values near
  // 1e308), so only a negative M2 or sum of squares is impossible.
  if (s.m2 < 0.0) return "M2 must not be negative";
  if (s.sum_sq < 0.0) return "the sum of squares must not be negative";
  return nullptr;
}

/// Writes the eight fields in a fixed order (the version-1 layout).
inline void write_state(ByteWriter& w, const MomentState& s) {
  w.write<std::int64_t>(s.count);
  w.write<double>(s.mean);
  w.write<double>(s.m2);
  w.write<double>(s.min);
  w.write<double>(s.max);
  w.write<double>(s.sum);
  w.write<double>(s.sum_sq);
  w.write<std::int64_t>(s.nonfinite);
}

/// Reads what write_state wrote and checks its invariants; throws SerializationError.
inline MomentState read_state(ByteReader& r) {
  MomentState s;
  s.count = r.read<std::int64_t>();
  s.mean = r.read<double>();
  s.m2 = r.read<double>();
  s.min = r.read<double>();
  s.max = r.read<double>();
  s.sum = r.read<double>();
  s.sum_sq = r.read<double>();
  s.nonfinite = r.read<std::int64_t>();
  const char* problem = state_problem(s);
  check_payload(problem == nullptr, problem ? problem : "");
  return s;
}

}  // namespace layerscope::detail
