// The inner loops of summarize(): statistics of one block of at most kSummaryBlock values that
// sit contiguously in memory (either in the caller's buffer or in a gather buffer).
//
// A block is first read optimistically: no finiteness test per element, several independent
// accumulators in the input's precision. A NaN or Inf anywhere in the block makes the block's
// sums non-finite, and only then is the block read again, element by element and in double,
// by the careful loop. The portable loop here is what non-x86 CPUs run (and x86 CPUs without
// AVX2); summary_simd.hpp holds the AVX2 version.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// The fast passes, and how precise they are. Values are accumulated in the input's own
// precision (float for float32, float16 and bfloat16) in kSummaryLanes lanes; every
// kSummaryFlush values the lanes are added into double, so that each float partial sum holds
// 8 values: its rounding error is at most 8 units of float roundoff, 5e-7 of its magnitude,
// and in practice (errors of both signs averaging out) far less. Sums of squares are taken of deviations from a pivot near the block's mean:
// m2 = sum((x - p)^2) - sum(x - p)^2 / n then cancels little. The pivot is the mean of the
// block's first kSummaryPilot values; by Cauchy-Schwarz (p - mean)^2 <= m2 / kSummaryPilot, so
// sum((x - p)^2) <= (1 + kSummaryBlock / kSummaryPilot) m2 = 9 m2 whatever the data, and the
// float rounding reaches m2 amplified at most that much. The deviations are scaled by a power
// of two (exact) so that their squares neither overflow nor underflow the float range.
inline constexpr int kSummaryLanes = 16;
inline constexpr int kSummaryFlush = 128;
inline constexpr int kSummaryPilot = 512;

/// A power of two that brings values whose mean |x| is `mean_abs` near 1 (mean_abs 0 or not
/// finite: 1). Read off the exponent bits: this runs once per block.
template <class T> T deviation_scale(double mean_abs) noexcept {
  if (!(mean_abs > 0.0) || !(mean_abs < std::numeric_limits<double>::infinity())) return T(1);
  std::uint64_t bits;
  std::memcpy(&bits, &mean_abs, sizeof bits);
  // mean_abs is in [2^e, 2^(e+1)); a double made of float values is never subnormal.
  const int e = static_cast<int>((bits >> 52) & 0x7FF) - 1023;
  constexpr int kLimit = std::numeric_limits<T>::max_exponent - 2;
  const int power = std::clamp(-e, -kLimit, kLimit);
  const std::uint64_t scale_bits = static_cast<std::uint64_t>(power + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return static_cast<T>(scale);
}

/// How a block's deviations d = x * scale + addend = (x - value) * scale are formed, from the
/// sum and the sum of |x| of its first `k` values. `value` is the pilot mean rounded to T (a
/// constant block has deviations exactly 0), and exactly -addend / scale.
template <class T> struct Pivot {
  T scale;
  T addend;
  double value;
  Pivot(double sum, double abs_sum, int k)
      : scale(deviation_scale<T>(abs_sum / k)),
        addend(-static_cast<T>(sum / k) * scale),
        value(-static_cast<double>(addend) / static_cast<double>(scale)) {}
};

/// The sums of one fast pass over n values, all in double by now.
struct PassSums {
  double abs_sum = 0.0;  ///< sum |x|
  double dev = 0.0;      ///< sum of deviations (x - pivot) * scale
  double dev_sq = 0.0;   ///< sum of their squares
};

/// Turns a fast pass into the block's statistics; false, leaving `out` untouched, when its
/// sums are not finite (a NaN or an Inf in the block, or an overflow of T), or when the block's
/// values are so much smaller than its pilot's that their squared deviations may underflow T:
/// the block must then be read carefully.
template <class T>
bool finish_block(const Pivot<T>& pivot, const PassSums& sums, int n, std::int64_t zeros,
                  std::int64_t active, double low, double high, BlockStats& out) {
  const double scale = pivot.scale;
  if (!std::isfinite(sums.abs_sum) || !std::isfinite(sums.dev) || !std::isfinite(sums.dev_sq))
    return false;
  if (sums.abs_sum != 0.0 && sums.abs_sum / n * scale < 0x1p-20) return false;
  const double count = n, d = sums.dev / scale, q = sums.dev_sq / (scale * scale);
  BlockStats b;
  b.finite = n;
  b.zeros = zeros;
  b.active = active;
  b.l1 = sums.abs_sum;
  b.min = low;
  b.max = high;
  b.sum = count * pivot.value + d;
  b.m2 = std::max(0.0, q - d * (d / count));
  b.sum_sq = b.m2 + b.sum * (b.sum / count);  // sum x^2 = m2 + n mean^2: no cancellation
  out = b;
  return true;
}

/// Fast path, portable C++ (the compiler vectorises the fixed-width lane loops); returns
/// false, leaving `out` untouched, when finish_block says the block must be read carefully.
/// One pass after the pilot: min, max, counts, sum of |x|, deviations and their squares.
template <class T, bool kAbsolute>
bool fast_block_portable(const T* x, int n, T limit, BlockStats& out) {
  constexpr int kLanes = kSummaryLanes;
  double pilot_sum = 0.0, pilot_abs = 0.0;
  const int k = std::min(kSummaryPilot, n);
  for (int i = 0; i < k; ++i) {
    pilot_sum += x[i];
    pilot_abs += std::fabs(x[i]);
  }
  const Pivot<T> pivot(pilot_sum, pilot_abs, k);
  T lo[kLanes], hi[kLanes];
  std::int32_t zeros[kLanes] = {}, active[kLanes] = {};
  double abs_sum[kLanes] = {}, dev[kLanes] = {}, dev_sq[kLanes] = {};
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = std::numeric_limits<T>::infinity();
    hi[j] = -std::numeric_limits<T>::infinity();
  }
  for (int at = 0; at < n; at += kSummaryFlush) {
    const int m = std::min(kSummaryFlush, n - at);
    const T* p = x + at;
    T a[kLanes] = {}, s[kLanes] = {}, q[kLanes] = {};
    const auto step = [&](const T* v, int width) {  // width == kLanes but in the tail
      for (int j = 0; j < width; ++j) {
        const T mag = std::fabs(v[j]), d = v[j] * pivot.scale + pivot.addend;
        lo[j] = v[j] < lo[j] ? v[j] : lo[j];
        hi[j] = v[j] > hi[j] ? v[j] : hi[j];
        zeros[j] += v[j] == T(0);
        active[j] += (kAbsolute ? mag : v[j]) > limit;
        a[j] += mag;
        s[j] += d;
        q[j] += d * d;
      }
    };
    const int whole = m - m % kLanes;
    for (int i = 0; i < whole; i += kLanes) step(p + i, kLanes);
    if (whole < m) step(p + whole, m - whole);
    for (int j = 0; j < kLanes; ++j) {
      abs_sum[j] += a[j];
      dev[j] += s[j];
      dev_sq[j] += q[j];
    }
  }
  PassSums sums;
  T low = lo[0], high = hi[0];
  std::int64_t z = 0, act = 0;
  for (int j = 0; j < kLanes; ++j) {
    sums.abs_sum += abs_sum[j];
    sums.dev += dev[j];
    sums.dev_sq += dev_sq[j];
    low = lo[j] < low ? lo[j] : low;
    high = hi[j] > high ? hi[j] : high;
    z += zeros[j];
    act += active[j];
  }
  return finish_block(pivot, sums, n, z, act, low, high, out);
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
