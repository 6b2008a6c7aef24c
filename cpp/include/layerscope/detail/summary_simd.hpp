// x86 versions of the fast block pass of summary_block.hpp. SSE2 is part of x86-64, so the
// SSE2 kernel needs no flag; the AVX2+FMA kernels are compiled for that target function by
// function and chosen at run time (cpu_has_avx2_fma), so one portable wheel runs everywhere and
// still uses 256-bit registers where the CPU has them. The compiler does not vectorise the
// mixed float/double loop of fast_block_portable by itself, hence the intrinsics.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "layerscope/detail/summary_block.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define LAYERSCOPE_SUMMARY_SSE2 1
#endif
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define LAYERSCOPE_SUMMARY_AVX2 1
#endif

namespace layerscope::detail {

/// True when this CPU executes AVX2 and FMA instructions.
inline bool cpu_has_avx2_fma() noexcept {
#if defined(LAYERSCOPE_SUMMARY_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

#if defined(LAYERSCOPE_SUMMARY_SSE2)
/// The float32 fast path written for SSE2, which every x86-64 CPU has (the compiler does not
/// vectorise the mixed float/double loop above by itself). Same results as the portable loop up
/// to the order of additions.
template <bool kAbsolute>
bool fast_block_sse2(const float* x, int n, float limit, BlockStats& out) {
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  const __m128d abs_mask_d = _mm_castsi128_pd(_mm_set1_epi64x(0x7FFFFFFFFFFFFFFF));
  const __m128 zero = _mm_setzero_ps();
  const __m128 lim = _mm_set1_ps(limit);
  const double shift = x[0];
  const __m128d k = _mm_set1_pd(shift);
  __m128 lo0 = _mm_set1_ps(std::numeric_limits<float>::infinity()), lo1 = lo0;
  __m128 hi0 = _mm_set1_ps(-std::numeric_limits<float>::infinity()), hi1 = hi0;
  __m128i zeros = _mm_setzero_si128(), active = _mm_setzero_si128();
  __m128d dev[4], dev_sq[4], l1[4];
  for (int j = 0; j < 4; ++j) dev[j] = dev_sq[j] = l1[j] = _mm_setzero_pd();
  const int whole = n - n % 8;
  for (int i = 0; i < whole; i += 8) {
    const __m128 v0 = _mm_loadu_ps(x + i), v1 = _mm_loadu_ps(x + i + 4);
    lo0 = _mm_min_ps(lo0, v0);
    lo1 = _mm_min_ps(lo1, v1);
    hi0 = _mm_max_ps(hi0, v0);
    hi1 = _mm_max_ps(hi1, v1);
    // A true compare is all ones, -1 as an integer: subtracting it counts.
    zeros = _mm_sub_epi32(zeros, _mm_castps_si128(_mm_cmpeq_ps(v0, zero)));
    zeros = _mm_sub_epi32(zeros, _mm_castps_si128(_mm_cmpeq_ps(v1, zero)));
    const __m128 key0 = kAbsolute ? _mm_and_ps(v0, abs_mask) : v0;
    const __m128 key1 = kAbsolute ? _mm_and_ps(v1, abs_mask) : v1;
    active = _mm_sub_epi32(active, _mm_castps_si128(_mm_cmpgt_ps(key0, lim)));
    active = _mm_sub_epi32(active, _mm_castps_si128(_mm_cmpgt_ps(key1, lim)));
    const __m128d d[4] = {_mm_cvtps_pd(v0), _mm_cvtps_pd(_mm_movehl_ps(v0, v0)),
                          _mm_cvtps_pd(v1), _mm_cvtps_pd(_mm_movehl_ps(v1, v1))};
    for (int j = 0; j < 4; ++j) {
      const __m128d s = _mm_sub_pd(d[j], k);
      dev[j] = _mm_add_pd(dev[j], s);
      dev_sq[j] = _mm_add_pd(dev_sq[j], _mm_mul_pd(s, s));
      l1[j] = _mm_add_pd(l1[j], _mm_and_pd(d[j], abs_mask_d));
    }
  }
  alignas(16) double lanes[3][10];
  alignas(16) float low4[8], high4[8];
  alignas(16) std::int32_t counts[8];
  for (int j = 0; j < 4; ++j) {
    _mm_store_pd(lanes[0] + 2 * j, dev[j]);
    _mm_store_pd(lanes[1] + 2 * j, dev_sq[j]);
    _mm_store_pd(lanes[2] + 2 * j, l1[j]);
  }
  _mm_store_ps(low4, _mm_min_ps(lo0, lo1));
  _mm_store_ps(high4, _mm_max_ps(hi0, hi1));
  _mm_store_si128(reinterpret_cast<__m128i*>(counts), zeros);
  _mm_store_si128(reinterpret_cast<__m128i*>(counts + 4), active);
  double low = low4[0], high = high4[0];
  std::int64_t z = 0, a = 0;
  for (int j = 0; j < 4; ++j) {
    low = std::min<double>(low, low4[j]);
    high = std::max<double>(high, high4[j]);
    z += counts[j];
    a += counts[4 + j];
  }
  // The tail, fewer than 8 values, into two spare lanes.
  lanes[0][8] = lanes[1][8] = lanes[2][8] = 0.0;
  lanes[0][9] = lanes[1][9] = lanes[2][9] = 0.0;
  for (int i = whole; i < n; ++i) {
    const float v = x[i];
    low = v < low ? v : low;
    high = v > high ? v : high;
    z += v == 0.0f;
    a += (kAbsolute ? std::fabs(v) : v) > limit;
    const double s = static_cast<double>(v) - shift;
    lanes[0][8] += s;
    lanes[1][8] += s * s;
    lanes[2][8] += std::fabs(static_cast<double>(v));
  }
  // min/max ignore a NaN in one operand; finish_block still sees it through the sums.
  return finish_block(lanes[0], lanes[1], lanes[2], 10, shift, n, low, high, z, a, out);
}
#endif


#if defined(LAYERSCOPE_SUMMARY_AVX2)
#define LAYERSCOPE_AVX2_FN __attribute__((target("avx2,fma")))

/// Eight values as floats: float32 loaded as is, bfloat16 widened (its bits are the upper half).
template <class In> LAYERSCOPE_AVX2_FN inline __m256 load8(const In* p) {
  if constexpr (std::is_same_v<In, float>) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
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

/// The fast pass with 256-bit registers over float32 or bfloat16 (In = std::uint16_t) values;
/// same contract as fast_block_portable.
template <class In, bool kAbsolute>
LAYERSCOPE_AVX2_FN bool fast_block_avx2(const In* x, int n, float limit, BlockStats& out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256d abs_mask_d = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFF));
  const __m256 lim = _mm256_set1_ps(limit);
  const double shift = load1(x);
  const __m256d k = _mm256_set1_pd(shift);
  __m256 lo = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 hi = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256i zeros = _mm256_setzero_si256(), active = _mm256_setzero_si256();
  // Four sets of double accumulators, 16 values a turn: enough independent chains to hide the
  // add latency, few enough to stay in the 16 registers.
  __m256d dev[4], dev_sq[4], l1[4];
  for (int j = 0; j < 4; ++j) dev[j] = dev_sq[j] = l1[j] = _mm256_setzero_pd();
  const int whole = n - n % 16;
  for (int i = 0; i < whole; i += 16) {
    const __m256 v[2] = {load8(x + i), load8(x + i + 8)};
    lo = _mm256_min_ps(lo, _mm256_min_ps(v[0], v[1]));
    hi = _mm256_max_ps(hi, _mm256_max_ps(v[0], v[1]));
    for (int h = 0; h < 2; ++h) {
      // A true compare is all ones, -1 as an integer: subtracting it counts.
      zeros = _mm256_sub_epi32(
          zeros, _mm256_castps_si256(_mm256_cmp_ps(v[h], _mm256_setzero_ps(), _CMP_EQ_OQ)));
      const __m256 key = kAbsolute ? _mm256_and_ps(v[h], abs_mask) : v[h];
      active =
          _mm256_sub_epi32(active, _mm256_castps_si256(_mm256_cmp_ps(key, lim, _CMP_GT_OQ)));
      const __m256d d[2] = {_mm256_cvtps_pd(_mm256_castps256_ps128(v[h])),
                            _mm256_cvtps_pd(_mm256_extractf128_ps(v[h], 1))};
      for (int j = 0; j < 2; ++j) {
        const int a = 2 * h + j;
        const __m256d s = _mm256_sub_pd(d[j], k);
        dev[a] = _mm256_add_pd(dev[a], s);
        dev_sq[a] = _mm256_fmadd_pd(s, s, dev_sq[a]);
        l1[a] = _mm256_add_pd(l1[a], _mm256_and_pd(d[j], abs_mask_d));
      }
    }
  }
  alignas(32) double lanes[3][20];  // rows of 20 doubles keep every row 32-byte aligned
  alignas(32) float low8[8], high8[8];
  alignas(32) std::int32_t zero8[8], active8[8];
  for (int j = 0; j < 4; ++j) {
    _mm256_store_pd(lanes[0] + 4 * j, dev[j]);
    _mm256_store_pd(lanes[1] + 4 * j, dev_sq[j]);
    _mm256_store_pd(lanes[2] + 4 * j, l1[j]);
  }
  _mm256_store_ps(low8, lo);
  _mm256_store_ps(high8, hi);
  _mm256_store_si256(reinterpret_cast<__m256i*>(zero8), zeros);
  _mm256_store_si256(reinterpret_cast<__m256i*>(active8), active);
  double low = low8[0], high = high8[0];
  std::int64_t z = 0, a = 0;
  for (int j = 0; j < 8; ++j) {
    low = std::min<double>(low, low8[j]);
    high = std::max<double>(high, high8[j]);
    z += zero8[j];
    a += active8[j];
  }
  for (int j = 16; j < 18; ++j) lanes[0][j] = lanes[1][j] = lanes[2][j] = 0.0;
  for (int i = whole; i < n; ++i) {
    const float v = load1(x + i);
    low = v < low ? v : low;
    high = v > high ? v : high;
    z += v == 0.0f;
    a += (kAbsolute ? std::fabs(v) : v) > limit;
    const double s = static_cast<double>(v) - shift;
    lanes[0][16] += s;
    lanes[1][16] += s * s;
    lanes[2][16] += std::fabs(static_cast<double>(v));
  }
  return finish_block(lanes[0], lanes[1], lanes[2], 18, shift, n, low, high, z, a, out);
}
#undef LAYERSCOPE_AVX2_FN
#endif

/// The fast path for this element type and CPU.
template <class T, bool kAbsolute>
bool fast_block(const T* x, int n, T limit, bool wide, BlockStats& out) {
#if defined(LAYERSCOPE_SUMMARY_AVX2)
  if constexpr (std::is_same_v<T, float>)
    if (wide) return fast_block_avx2<float, kAbsolute>(x, n, limit, out);
#endif
#if defined(LAYERSCOPE_SUMMARY_SSE2)
  if constexpr (std::is_same_v<T, float>) return fast_block_sse2<kAbsolute>(x, n, limit, out);
#endif
  (void)wide;
  return fast_block_portable<T, kAbsolute>(x, n, limit, out);
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
#if defined(LAYERSCOPE_SUMMARY_AVX2)
  if (test.wide) {
    return test.absolute ? fast_block_avx2<std::uint16_t, true>(x, n, test.limit, out)
                         : fast_block_avx2<std::uint16_t, false>(x, n, test.limit, out);
  }
#endif
  (void)x, (void)n, (void)test, (void)out;
  return false;
}

}  // namespace layerscope::detail
