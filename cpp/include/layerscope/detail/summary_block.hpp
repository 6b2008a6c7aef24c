// The inner loops of summarize(): statistics of one block of at most kSummaryBlock values that
// sit contiguously in memory (either in the caller's buffer or in a gather buffer).
//
// A block is first read optimistically: no finiteness test per element, several independent
// accumulators. A NaN or Inf anywhere in the block makes the block's sum of |x| non-finite, and
// only then is the block read again, element by element, by the careful loop. The portable
// loop here is what non-x86 CPUs run; summary_simd.hpp holds the x86 versions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace layerscope::detail {

/// Values per block: small enough that a block stays in L1 for its second (deviation) pass,
/// large enough that the per-block merge costs nothing.
inline constexpr int kSummaryBlock = 4096;

/// Statistics of one block. `m2` is about the block's own mean, `sum / finite`.
struct BlockStats {
  std::int64_t finite = 0;
  std::int64_t zeros = 0;
  std::int64_t active = 0;
  std::int64_t nan = 0;
  std::int64_t pos_inf = 0;
  std::int64_t neg_inf = 0;
  double sum = 0.0;
  double sum_sq = 0.0;
  double m2 = 0.0;
  double l1 = 0.0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
};

/// The activity test in the block's own type: `absolute` compares |x|, else x, against `limit`.
/// `limit` is the largest T not above the caller's double threshold, so that for every T value
/// `key > limit` agrees with the comparison in double. NaN is never active.
/// `wide`: the CPU runs AVX2 and FMA (checked once per summarize() call), so the 256-bit
/// kernels of summary_simd.hpp may be used.
template <class T> struct ActiveTest {
  T limit;
  bool absolute;
  bool wide = false;
};

/// The largest T that is <= `threshold` (T = float or double).
template <class T> T round_down(double threshold) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    return threshold;
  } else {
    float f = static_cast<float>(threshold);
    if (static_cast<double>(f) > threshold) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    return f;
  }
}

/// Careful path: every element is classified; non-finite values are counted and skipped.
template <class T, bool kAbsolute>
void careful_block(const T* x, int n, T limit, BlockStats& out) {
  BlockStats b;
  for (int i = 0; i < n; ++i) {
    const T v = x[i];
    const T key = kAbsolute ? std::fabs(v) : v;
    b.active += key > limit;
    if (std::isnan(v)) {
      ++b.nan;
    } else if (std::isinf(v)) {
      ++(v > 0 ? b.pos_inf : b.neg_inf);
    } else {
      const double d = v;
      ++b.finite;
      b.zeros += v == T(0);
      b.sum += d;
      b.sum_sq += d * d;  // direct: float64 input near 1e308 may overflow here, legitimately
      b.l1 += std::fabs(d);
      b.min = d < b.min ? d : b.min;
      b.max = d > b.max ? d : b.max;
    }
  }
  if (b.finite > 0) {
    const double mean = b.sum / static_cast<double>(b.finite);
    for (int i = 0; i < n; ++i) {
      if (!std::isfinite(x[i])) continue;
      const double d = static_cast<double>(x[i]) - mean;
      b.m2 += d * d;
    }
  }
  out = b;
}

/// Folds the lane partials of a fast pass into `out`; false when they show a NaN or an Inf.
inline bool finish_block(const double* dev, const double* dev_sq, const double* l1, int lanes,
                         double shift, int n, double low, double high, std::int64_t zeros,
                         std::int64_t active, BlockStats& out) {
  double d = 0.0, q = 0.0, a = 0.0;
  for (int j = 0; j < lanes; ++j) {
    d += dev[j];
    q += dev_sq[j];
    a += l1[j];
  }
  // For float input a double sum of |x| cannot overflow: not finite means a NaN or an Inf.
  if (!std::isfinite(a) || !std::isfinite(q)) return false;
  const double count = n;
  BlockStats b;
  b.finite = n;
  b.zeros = zeros;
  b.active = active;
  b.l1 = a;
  b.min = low;
  b.max = high;
  b.sum = shift * count + d;
  b.m2 = std::max(0.0, q - d * (d / count));
  // sum x^2 = sum (x-K)^2 + K (n K + 2 sum (x-K)), from the shifted sums.
  b.sum_sq = std::max(0.0, q + shift * (count * shift + 2.0 * d));
  out = b;
  return true;
}

/// Fast path, portable C++; returns false, leaving `out` untouched, when the block holds a NaN
/// or an Inf (or, for float64, values whose sums overflow), so that the caller reads it
/// carefully instead. One pass: sums are shifted by the block's first value K, so m2 comes from
/// sum((x-K)^2) - sum(x-K)^2 / n without the cancellation of the unshifted formula.
template <class T, bool kAbsolute>
bool fast_block_portable(const T* x, int n, T limit, BlockStats& out) {
  constexpr int kLanes = 8;
  using Counter = std::int64_t;
  const double shift = x[0];
  T lo[kLanes], hi[kLanes];
  Counter zeros[kLanes] = {}, active[kLanes] = {};
  double dev[kLanes] = {}, dev_sq[kLanes] = {}, l1[kLanes] = {};
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = std::numeric_limits<T>::infinity();
    hi[j] = -std::numeric_limits<T>::infinity();
  }
  for (int i = 0; i < n; ++i) {
    const T v = x[i];
    const int j = i % kLanes;
    lo[j] = v < lo[j] ? v : lo[j];
    hi[j] = v > hi[j] ? v : hi[j];
    zeros[j] += v == T(0);
    active[j] += (kAbsolute ? std::fabs(v) : v) > limit;
    const double d = static_cast<double>(v) - shift;
    dev[j] += d;
    dev_sq[j] += d * d;
    l1[j] += std::fabs(static_cast<double>(v));
  }
  double lanes[4][kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lanes[0][j] = dev[j];
    lanes[1][j] = dev_sq[j];
    lanes[2][j] = l1[j];
    lanes[3][j] = 0.0;
  }
  T low = lo[0], high = hi[0];
  Counter z = 0, a = 0;
  for (int j = 0; j < kLanes; ++j) {
    low = lo[j] < low ? lo[j] : low;
    high = hi[j] > high ? hi[j] : high;
    z += zeros[j];
    a += active[j];
  }
  return finish_block(lanes[0], lanes[1], lanes[2], kLanes, shift, n, low, high, z, a, out);
}
/// Per-channel updates when channel i of a stretch is element i (channel axis innermost):
/// the stretch x[0, n) covers channels [0, n) of the arrays passed in.
template <class T>
void channel_stretch(const T* x, int n, ActiveTest<T> test, std::int64_t* count,
                     std::int64_t* active, double* sum, double* sum_sq) {
  for (int i = 0; i < n; ++i) {
    const T v = x[i];
    const bool finite = std::isfinite(v);
    const double d = finite ? static_cast<double>(v) : 0.0;
    count[i] += finite;
    active[i] += (test.absolute ? std::fabs(v) : v) > test.limit;
    sum[i] += d;
    sum_sq[i] += d * d;
  }
}

}  // namespace layerscope::detail
