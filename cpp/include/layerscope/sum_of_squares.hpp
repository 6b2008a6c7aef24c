// The sum of the squares of a buffer's elements, alone: the one number behind an L2 norm, for
// sites where a norm is all the lenses read (the gradient norms of parameters, read on every
// step). One fused multiply-add per eight elements, so the read runs at the speed of memory,
// where the full summary (summary.hpp) spends about nine vector operations on each eight, on
// moments, extremes and counts that nobody reads there.
//
// A NaN or an infinity among the elements makes the sum NaN or +Inf, so a finite result also
// proves every element finite; a non-finite one leaves the counting to the full summary.
// Narrow types are squared in float: squares below 1.2e-38 (values below ~1e-19) are subnormal
// and lose digits, so a caller checks the mean square before it trusts a tiny sum (the Python
// side takes the full summary below 2^-100, TINY_MEAN_SQUARE in stats/tensors.py).
#pragma once

#include <cstdint>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/sum_over_elements.hpp"

namespace layerscope {

/// Elements a call reads on one thread before it uses more: threads are started per call
/// (tens of microseconds), which pays off only over this much memory traffic.
inline constexpr std::int64_t kSquaresParallelMin = std::int64_t{1} << 20;

namespace detail {

/// Elements whose squares are added in float lanes before the lanes go into double: 16 per
/// lane, as the summary's positive sums, so the relative error stays below 1e-6.
inline constexpr std::int64_t kSquaresFlush = 128;

/// Sum of squares of x[0, n), contiguous. Narrow types are squared in float, eight lanes at a
/// time (a loop the compiler vectorises), and flushed to double every kSquaresFlush elements;
/// double input is squared in double.
template <DType D>
double squares_portable(const typename Element<D>::storage* x, std::int64_t n) {
  if constexpr (D == DType::Float64) {
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int j = 0; j < 4; ++j) lanes[j] += x[i + j] * x[i + j];
    for (; i < n; ++i) lanes[0] += x[i] * x[i];
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  } else {
    using E = Element<D>;
    double total = 0.0;
    std::int64_t i = 0;
    for (; i + kSquaresFlush <= n; i += kSquaresFlush) {
      float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
      for (std::int64_t k = 0; k < kSquaresFlush; k += 8)
        for (int j = 0; j < 8; ++j) {
          const float v = E::load(x + i + k + j);
          lanes[j] += v * v;
        }
      for (const float lane : lanes) total += lane;
    }
    for (; i < n; ++i) {
      const double v = E::load(x + i);
      total += v * v;
    }
    return total;
  }
}

#if defined(LAYERSCOPE_HAVE_AVX2)
/// squares_portable for float32 with 256-bit registers: four accumulators (a fused
/// multiply-add takes four cycles; four in flight keep the unit busy), paired and widened to
/// double every kSquaresFlush elements.
LAYERSCOPE_AVX2_FN inline double squares_float_avx2(const float* x, std::int64_t n) {
  static_assert(kSquaresFlush % 32 == 0, "a flush holds whole turns of four vectors");
  __m256d wide = _mm256_setzero_pd();
  std::int64_t i = 0;
  for (; i + kSquaresFlush <= n; i += kSquaresFlush) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (std::int64_t k = 0; k < kSquaresFlush; k += 32)
      for (int h = 0; h < 4; ++h) {
        const __m256 v = _mm256_loadu_ps(x + i + k + 8 * h);
        a[h] = _mm256_fmadd_ps(v, v, a[h]);
      }
    for (int h = 0; h < 4; h += 2) {
      const __m256 pair = _mm256_add_ps(a[h], a[h + 1]);
      wide = _mm256_add_pd(wide, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(pair)),
                                               _mm256_cvtps_pd(_mm256_extractf128_ps(pair, 1))));
    }
  }
  const __m128d half = _mm_add_pd(_mm256_castpd256_pd128(wide), _mm256_extractf128_pd(wide, 1));
  double total = _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)));
  for (; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}
#endif

/// squares_portable by the widest kernel this CPU runs.
template <DType D>
double squares_fast(const typename Element<D>::storage* x, std::int64_t n, bool wide) {
#if defined(LAYERSCOPE_HAVE_AVX2)
  if constexpr (D == DType::Float32)
    if (wide) return squares_float_avx2(x, n);
#endif
  (void)wide;
  return squares_portable<D>(x, n);
}

}  // namespace detail

/// The sum of the squares of `view`'s elements (any strides; each element of a broadcast view
/// counts as often as it appears), in double: sqrt of it is the view's L2 norm. NaN or +Inf
/// when an element is NaN or infinite, and +Inf also when a float32 square overflows
/// (|x| > 1.8e19): a finite result proves every element finite. Float16, bfloat16 and float32
/// squares are added in float for at most 16 terms a lane, so the relative error against a
/// float64 oracle stays below 1e-6. A contiguous view is split over at most `max_threads`
/// threads (0: the hardware's): from kSquaresParallelMin elements over threads started for the
/// call, or past kLentTeamGrain over `team` when one is lent.
/// Never throws but for std::system_error when a thread cannot start.
inline double sum_of_squares(const BufferView& view, unsigned max_threads = 0,
                             const ThreadTeam& team = {}) {
  const bool wide = detail::cpu_has_avx2_fma();
  return visit_dtype(view.dtype, [&](auto tag) {
    constexpr DType D = decltype(tag)::value;
    using S = typename Element<D>::storage;
    return detail::sum_over_elements<double, S>(
        view, kSquaresParallelMin, max_threads, team,
        [&](const S* x, std::int64_t n) { return detail::squares_fast<D>(x, n, wide); },
        [](const S* x) {
          const double v = Element<D>::load(x);
          return v * v;
        });
  });
}

}  // namespace layerscope
