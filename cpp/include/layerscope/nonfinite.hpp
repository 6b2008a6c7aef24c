// Counting the NaN and +/-Inf elements of a buffer by their bits: the search for a first
// non-finite value that the Python scope runs on every step, whatever the lenses' schedules.
//
// A floating-point value is NaN or infinite exactly when its exponent bits are all ones, so the
// count needs one mask and one compare per element, on the element's own bits (no conversion,
// bfloat16 and float16 included): a fraction of a summary's work, and, unlike a sum, never
// fooled by finite values whose total overflows.
#pragma once

#include <cstdint>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/sum_over_elements.hpp"

namespace layerscope {

/// Elements a kernel call reads on one thread before it uses more: the threads are started per
/// call (tens of microseconds), which pays off only over this much memory traffic.
inline constexpr std::int64_t kNonfiniteParallelMin = std::int64_t{1} << 22;

namespace detail {

/// The unsigned integer of an element's width and the mask of its exponent bits.
template <DType D> struct ExponentBits;
template <> struct ExponentBits<DType::Float32> {
  using type = std::uint32_t;
  static constexpr type mask = 0x7f800000u;
};
template <> struct ExponentBits<DType::Float64> {
  using type = std::uint64_t;
  static constexpr type mask = 0x7ff0000000000000ull;
};
template <> struct ExponentBits<DType::Float16> {
  using type = std::uint16_t;
  static constexpr type mask = 0x7c00u;
};
template <> struct ExponentBits<DType::BFloat16> {
  using type = std::uint16_t;
  static constexpr type mask = 0x7f80u;
};

/// Elements of x[0, n) whose exponent bits are all ones. Written for the vectoriser: a 32-bit
/// counter per block, which the compiler keeps in vector lanes.
template <class U, U kMask> inline std::int64_t count_exponent_ones(const U* x, std::int64_t n) {
  constexpr std::int64_t kBlock = std::int64_t{1} << 16;  // no 32-bit counter overflows
  std::int64_t total = 0;
  for (std::int64_t start = 0; start < n; start += kBlock) {
    const std::int64_t stop = start + kBlock < n ? start + kBlock : n;
    std::uint32_t count = 0;
    for (std::int64_t i = start; i < stop; ++i) count += (x[i] & kMask) == kMask;
    total += count;
  }
  return total;
}

#if defined(LAYERSCOPE_HAVE_AVX2)
/// count_exponent_ones vectorised for 256-bit registers (chosen at run time, see cpu_features).
template <class U, U kMask>
LAYERSCOPE_AVX2_FN std::int64_t count_exponent_ones_avx2(const U* x, std::int64_t n) {
  return count_exponent_ones<U, kMask>(x, n);
}
#endif

/// count_exponent_ones by the widest kernel this CPU runs.
template <class U, U kMask>
std::int64_t count_exponent_ones_fast(const U* x, std::int64_t n, bool wide) {
#if defined(LAYERSCOPE_HAVE_AVX2)
  if (wide) return count_exponent_ones_avx2<U, kMask>(x, n);
#endif
  (void)wide;
  return count_exponent_ones<U, kMask>(x, n);
}

}  // namespace detail

/// The NaN and +/-Inf elements of `view` (any strides; each element of a broadcast view counts
/// as often as it appears). A contiguous view is split over at most `max_threads` threads (0:
/// the hardware's): from kNonfiniteParallelMin elements over threads started for the call, or
/// past kLentTeamGrain over `team` when one is lent.
/// Never throws but for std::system_error when a thread cannot start.
inline std::int64_t count_nonfinite(const BufferView& view, unsigned max_threads = 0,
                                    const ThreadTeam& team = {}) {
  const bool wide = detail::cpu_has_avx2_fma();
  return visit_dtype(view.dtype, [&](auto tag) {
    constexpr DType D = decltype(tag)::value;
    using U = typename detail::ExponentBits<D>::type;
    constexpr U kMask = detail::ExponentBits<D>::mask;
    return detail::sum_over_elements<std::int64_t, U>(
        view, kNonfiniteParallelMin, max_threads, team,
        [&](const U* bits, std::int64_t n) {
          return detail::count_exponent_ones_fast<U, kMask>(bits, n, wide);
        },
        [](const U* bits) -> std::int64_t { return (*bits & kMask) == kMask; });
  });
}

}  // namespace layerscope
