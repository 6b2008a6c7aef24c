// The x86 version of the fast block pass of summary_block.hpp, with 256-bit registers. The
// AVX2+FMA kernel is compiled and chosen at run time as cpu_features.hpp says, so one portable
// wheel runs everywhere and still uses AVX2 where the CPU has it; elsewhere the portable loop
// runs, which the compiler vectorises for the baseline ISA (SSE2 on x86-64). bfloat16 is
// widened in registers (a 16-bit shift), so it costs what float32 costs, at half the memory
// traffic.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/summary_block.hpp"

namespace layerscope::detail {

#if defined(LAYERSCOPE_HAVE_AVX2)
/// Sixteen values as two vectors of floats: float32 loaded as is; bfloat16 widened by
/// interleaving zero low halves (its bits are a float's upper half), one instruction per
/// vector. The unpack works within 128-bit lanes, so the values come out permuted: harmless,
/// as every statistic here ignores order.
template <class In> LAYERSCOPE_AVX2_FN inline void load16(const In* p, __m256& u, __m256& v) {
  if constexpr (std::is_same_v<In, float>) {
    u = _mm256_loadu_ps(p);
    v = _mm256_loadu_ps(p + 8);
  } else {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i zero = _mm256_setzero_si256();
    u = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, raw));
    v = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, raw));
  }
}

template <class In> inline float load1(const In* p) {
  if constexpr (std::is_same_v<In, float>) {
    return *p;
  } else {
    const std::uint32_t bits = static_cast<std::uint32_t>(*p) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
}

/// Sum of the lanes of two float accumulators, added in double once the two are combined.
LAYERSCOPE_AVX2_FN inline double total16(__m256 u, __m256 v) {
  const __m256 t = _mm256_add_ps(u, v);
  const __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(t)),
                                  _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/// Adds two float accumulators into a double one.
LAYERSCOPE_AVX2_FN inline __m256d flush16(__m256d into, __m256 u, __m256 v) {
  const __m256 t = _mm256_add_ps(u, v);
  return _mm256_add_pd(into, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(t)),
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1))));
}

LAYERSCOPE_AVX2_FN inline double total4(__m256d v) {
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/// The fast pass with 256-bit float lanes over float32 or bfloat16 (In = std::uint16_t)
/// values; same contract and same scheme as fast_block_portable, two accumulators of eight
/// lanes each. kCountZeros false: the caller tests |x| > 0, so that (the block being finite)
/// zeros = n - active, one compare less per vector.
template <class In, bool kAbsolute, bool kCountZeros>
LAYERSCOPE_AVX2_FN bool fast_block_avx2(const In* x, int n, float limit, BlockStats& out) {
  constexpr int kStep = 16;  // two vectors a turn, one per accumulator
  const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
  double pilot_sum = 0.0, pilot_abs = 0.0;
  const int k = std::min(kSummaryPilot, n), k_whole = k - k % kStep;
  {
    __m256 s[2] = {zero, zero}, a[2] = {zero, zero};
    for (int i = 0; i < k_whole; i += kStep) {
      __m256 v[2];
      load16(x + i, v[0], v[1]);
      for (int h = 0; h < 2; ++h) {
        s[h] = _mm256_add_ps(s[h], v[h]);
        a[h] = _mm256_add_ps(a[h], _mm256_andnot_ps(sign, v[h]));
      }
    }
    for (int i = k_whole; i < k; ++i) {
      pilot_sum += load1(x + i);
      pilot_abs += std::fabs(load1(x + i));
    }
    pilot_sum += total16(s[0], s[1]);
    pilot_abs += total16(a[0], a[1]);
  }
  const Pivot<float> pivot(pilot_sum, pilot_abs, k);
  const __m256 scale = _mm256_set1_ps(pivot.scale), addend = _mm256_set1_ps(pivot.addend);
  const __m256 lim = _mm256_set1_ps(limit);
  __m256 lo = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 hi = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256i counts = _mm256_setzero_si256();
  __m256d abs_sum = _mm256_setzero_pd(), dev = abs_sum, dev_sq = abs_sum;
  const int whole = n - n % kStep;
  // The positive sums go into double every kSummaryFlush values (8 per float lane), the
  // signed one, less exposed, every 4 times that.
  for (int outer = 0; outer < whole; outer += 4 * kSummaryFlush) {
    __m256 s[2] = {zero, zero};
    for (int at = outer; at < std::min(whole, outer + 4 * kSummaryFlush); at += kSummaryFlush) {
      const int stop = std::min(whole, at + kSummaryFlush);
      __m256 a[2] = {zero, zero}, q[2] = {zero, zero};
      for (int i = at; i < stop; i += kStep) {
        __m256 v[2];
        load16(x + i, v[0], v[1]);
        for (int h = 0; h < 2; ++h) {
          const __m256 mag = _mm256_andnot_ps(sign, v[h]);
          lo = _mm256_min_ps(lo, v[h]);
          hi = _mm256_max_ps(hi, v[h]);
          // A true compare is all ones, -1 as an integer: subtracting it counts. Zeros share
          // the register: subtracted as 16-bit integers, a zero adds one to both halves of
          // its lane, so the upper half counts zeros and the lower one active values plus
          // zeros (at most 512 per lane in a block: no carry).
          counts = _mm256_sub_epi32(
              counts,
              _mm256_castps_si256(_mm256_cmp_ps(kAbsolute ? mag : v[h], lim, _CMP_GT_OQ)));
          if constexpr (kCountZeros)
            counts = _mm256_sub_epi16(
                counts, _mm256_castps_si256(_mm256_cmp_ps(v[h], zero, _CMP_EQ_OQ)));
          a[h] = _mm256_add_ps(a[h], mag);
          const __m256 d = _mm256_fmadd_ps(v[h], scale, addend);
          s[h] = _mm256_add_ps(s[h], d);
          q[h] = _mm256_fmadd_ps(d, d, q[h]);
        }
      }
      abs_sum = flush16(abs_sum, a[0], a[1]);
      dev_sq = flush16(dev_sq, q[0], q[1]);
    }
    dev = flush16(dev, s[0], s[1]);
  }
  PassSums sums{total4(abs_sum), total4(dev), total4(dev_sq)};
  float low = std::numeric_limits<float>::infinity(), high = -low;
  std::int64_t z = 0, act = 0;
  for (int i = whole; i < n; ++i) {  // fewer than kStep values
    const float v = load1(x + i), d = v * pivot.scale + pivot.addend;
    low = v < low ? v : low;
    high = v > high ? v : high;
    if constexpr (kCountZeros) z += v == 0.0f;
    act += (kAbsolute ? std::fabs(v) : v) > limit;
    sums.abs_sum += std::fabs(v);
    sums.dev += d;
    sums.dev_sq += static_cast<double>(d) * d;
  }
  alignas(32) float low8[8], high8[8];
  alignas(32) std::uint32_t count8[8];
  _mm256_store_ps(low8, lo);
  _mm256_store_ps(high8, hi);
  _mm256_store_si256(reinterpret_cast<__m256i*>(count8), counts);
  for (int j = 0; j < 8; ++j) {
    low = low8[j] < low ? low8[j] : low;
    high = high8[j] > high ? high8[j] : high;
    const std::int64_t zeros_here = kCountZeros ? count8[j] >> 16 : 0;
    z += zeros_here;
    act += (count8[j] & 0xFFFF) - zeros_here;
  }
  if constexpr (!kCountZeros) z = n - act;
  return finish_block(pivot, sums, n, z, act, low, high, out);
}
/// channel_stretch for float input with 256-bit registers, four channels at a time; same
/// contract. (The portable loop does not vectorise: its select of 0 for non-finite values is
/// control flow to a compiler that must not raise floating-point exceptions.)
LAYERSCOPE_AVX2_FN inline void channel_stretch_avx2(const float* x, int n, ActiveTest<float> test,
                                                   std::int64_t* count, std::int64_t* active,
                                                   double* sum, double* sum_sq) {
  const __m256d sign = _mm256_set1_pd(-0.0);
  const __m256d largest = _mm256_set1_pd(std::numeric_limits<float>::max());
  const __m256d limit = _mm256_set1_pd(static_cast<double>(test.limit));
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    const __m256d mag = _mm256_andnot_pd(sign, v);
    const __m256d finite = _mm256_cmp_pd(mag, largest, _CMP_LE_OQ);  // false for NaN and Inf
    const __m256d hit = _mm256_cmp_pd(test.absolute ? mag : v, limit, _CMP_GT_OQ);
    const __m256d d = _mm256_and_pd(v, finite);
    auto* c = reinterpret_cast<__m256i*>(count + i);
    auto* a = reinterpret_cast<__m256i*>(active + i);
    // a true compare is all ones, -1 as an integer: subtracting it counts
    _mm256_storeu_si256(c, _mm256_sub_epi64(_mm256_loadu_si256(c), _mm256_castpd_si256(finite)));
    _mm256_storeu_si256(a, _mm256_sub_epi64(_mm256_loadu_si256(a), _mm256_castpd_si256(hit)));
    _mm256_storeu_pd(sum + i, _mm256_add_pd(_mm256_loadu_pd(sum + i), d));
    _mm256_storeu_pd(sum_sq + i, _mm256_fmadd_pd(d, d, _mm256_loadu_pd(sum_sq + i)));
  }
  channel_stretch(x + i, n - i, test, count + i, active + i, sum + i, sum_sq + i);
}
#endif

/// The AVX2 pass for float or bfloat16 input, the zero count derived when the test is |x| > 0.
template <class In, bool kAbsolute>
bool fast_block_wide(const In* x, int n, float limit, BlockStats& out) {
#if defined(LAYERSCOPE_HAVE_AVX2)
  if (kAbsolute && limit == 0.0f) return fast_block_avx2<In, kAbsolute, false>(x, n, limit, out);
  return fast_block_avx2<In, kAbsolute, true>(x, n, limit, out);
#else
  (void)x, (void)n, (void)limit, (void)out;
  return false;
#endif
}

/// The fast path for this element type and CPU.
template <class T, bool kAbsolute>
bool fast_block(const T* x, int n, T limit, bool wide, BlockStats& out) {
#if defined(LAYERSCOPE_HAVE_AVX2)
  if constexpr (std::is_same_v<T, float>)
    if (wide) return fast_block_wide<float, kAbsolute>(x, n, limit, out);
#endif
  (void)wide;
  return fast_block_portable<T, kAbsolute>(x, n, limit, out);
}

/// channel_stretch by the fastest kernel this CPU runs (test.wide: AVX2 for float input).
template <class T>
void channel_stretch_fast(const T* x, int n, ActiveTest<T> test, std::int64_t* count,
                          std::int64_t* active, double* sum, double* sum_sq) {
#if defined(LAYERSCOPE_HAVE_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (test.wide) {
      channel_stretch_avx2(x, n, test, count, active, sum, sum_sq);
      return;
    }
  }
#endif
  channel_stretch(x, n, test, count, active, sum, sum_sq);
}

/// Statistics of x[0, n), 1 <= n <= kSummaryBlock, by the fast path when it can.
template <class T> BlockStats block_stats(const T* x, int n, ActiveTest<T> test) {
  BlockStats b;
  if (test.absolute) {
    if (!fast_block<T, true>(x, n, test.limit, test.wide, b))
      careful_block<T, true>(x, n, test.limit, b);
  } else {
    if (!fast_block<T, false>(x, n, test.limit, test.wide, b))
      careful_block<T, false>(x, n, test.limit, b);
  }
  return b;
}

/// Fast pass over n contiguous bfloat16 values read in place, when the CPU has AVX2. Returns
/// false, leaving `out` untouched, when it cannot (no AVX2, or a NaN/Inf in the block): the
/// caller then widens the values to float and calls block_stats.
inline bool bfloat16_block_stats(const std::uint16_t* x, int n, ActiveTest<float> test,
                                 BlockStats& out) {
  if (!test.wide) return false;
  return test.absolute ? fast_block_wide<std::uint16_t, true>(x, n, test.limit, out)
                       : fast_block_wide<std::uint16_t, false>(x, n, test.limit, out);
}

}  // namespace layerscope::detail
