// Per-channel activity counts on their own: for each channel, how many of its elements pass the
// activity test (|x| > eps, or x > threshold). summarize() runs this pass instead of its
// per-element channel bookkeeping when the caller asks for no per-channel sums: counting alone
// is one compare and one integer add per element, where the full per-channel fold also keeps
// counts, sums and squares in double (four read-modify-writes), which costs ~5x more on
// activations whose unit axis is innermost (Linear outputs). For a contiguous float32/float64
// buffer the counts are taken inside summarize()'s whole-buffer pass, a block at a time while
// the block is in L1 (ChannelActivityCounter); other buffers are counted in a pass of their own
// (channel_activity).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/parallel_for.hpp"
#include "layerscope/detail/summary_block.hpp"

namespace layerscope::detail {

template <class T> inline bool is_active(T v, ActiveTest<T> test) noexcept {
  return (test.absolute ? std::fabs(v) : v) > test.limit;  // false for NaN
}

#if defined(LAYERSCOPE_HAVE_AVX2)
/// All-ones lanes where x[i..i+8) is active.
LAYERSCOPE_AVX2_FN inline __m256i active_mask8(const float* x, __m256 limit, bool absolute) {
  __m256 v = _mm256_loadu_ps(x);
  if (absolute) v = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  return _mm256_castps_si256(_mm256_cmp_ps(v, limit, _CMP_GT_OQ));
}

/// Rows of a matrix `stride` elements apart, indexed like an array of row pointers.
struct StridedRows {
  const float* first;
  std::int64_t stride;
  const float* operator[](std::int64_t r) const { return first + r * stride; }
  StridedRows operator+(std::int64_t r) const { return {first + r * stride, stride}; }
};

/// Lanes += active(x[0, 32)) for 32 columns of `n` rows, the test chosen at compile time.
/// `Rows`: an array of row pointers, or StridedRows.
template <bool kAbsolute, class Rows>
LAYERSCOPE_AVX2_FN inline void count_columns32(Rows rows, std::int64_t n,
                                               std::int64_t column, __m256 limit,
                                               __m256i lanes[4]) {
  // Four named accumulators, not an array: compilers keep those in registers.
  __m256i a = lanes[0], b = lanes[1], d = lanes[2], e = lanes[3];
  for (std::int64_t r = 0; r < n; ++r) {
    const float* x = rows[r] + column;  // a true compare is all ones, -1: subtract it
    a = _mm256_sub_epi32(a, active_mask8(x, limit, kAbsolute));
    b = _mm256_sub_epi32(b, active_mask8(x + 8, limit, kAbsolute));
    d = _mm256_sub_epi32(d, active_mask8(x + 16, limit, kAbsolute));
    e = _mm256_sub_epi32(e, active_mask8(x + 24, limit, kAbsolute));
  }
  lanes[0] = a, lanes[1] = b, lanes[2] = d, lanes[3] = e;
}

/// counts[8 v + k] += lane k of lanes[v], for v < vectors.
LAYERSCOPE_AVX2_FN inline void add_lanes(const __m256i* lanes, int vectors, std::int64_t* counts) {
  alignas(32) std::uint32_t count8[8];
  for (int v = 0; v < vectors; ++v) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(count8), lanes[v]);
    for (int k = 0; k < 8; ++k) counts[8 * v + k] += count8[k];
  }
}

/// counts[c] += active elements in column c of the rows (rows[r][c], r < n_rows) for the
/// columns c < width - width % 8; returns how many columns it read. The unit axis innermost
/// (Linear outputs [batch, units]): a block of 32 columns is counted down every row in
/// registers, so no counter is loaded or stored per element.
template <class Rows>
LAYERSCOPE_AVX2_FN inline int add_active_columns_avx2(Rows rows, std::int64_t n_rows, int width,
                                                      ActiveTest<float> test,
                                                      std::int64_t* counts) {
  const __m256 limit = _mm256_set1_ps(test.limit);
  int c = 0;
  for (; c + 32 <= width; c += 32) {
    // A lane gains at most one a row: empty the lanes every 2^30 rows.
    for (std::int64_t first = 0; first < n_rows; first += std::int64_t{1} << 30) {
      const std::int64_t last = std::min(n_rows, first + (std::int64_t{1} << 30));
      __m256i lanes[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256(), _mm256_setzero_si256()};
      if (test.absolute)
        count_columns32<true>(rows + first, last - first, c, limit, lanes);
      else
        count_columns32<false>(rows + first, last - first, c, limit, lanes);
      add_lanes(lanes, 4, counts + c);
    }
  }
  for (; c + 8 <= width; c += 8) {
    __m256i lanes = _mm256_setzero_si256();
    for (std::int64_t r = 0; r < n_rows; ++r)
      lanes = _mm256_sub_epi32(lanes, active_mask8(rows[r] + c, limit, test.absolute));
    add_lanes(&lanes, 1, counts + c);
  }
  return c;
}

/// The sum of the eight counts in `lanes`, reduced in registers: short runs (a 7x7 feature map
/// is six vectors) would otherwise spend about as long reducing as counting.
LAYERSCOPE_AVX2_FN inline std::int64_t lane_total(__m256i lanes) {
  const __m256i quad = _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(lanes)),
                                        _mm256_cvtepu32_epi64(_mm256_extracti128_si256(lanes, 1)));
  const __m128i pair =
      _mm_add_epi64(_mm256_castsi256_si128(quad), _mm256_extracti128_si256(quad, 1));
  const __m128i one = _mm_add_epi64(pair, _mm_unpackhi_epi64(pair, pair));
  std::int64_t total;
  _mm_storel_epi64(reinterpret_cast<__m128i*>(&total), one);
  return total;
}

/// Adds to `active` the active elements among the first n - n % 8 of x[0, n), all of one
/// unit, and returns how many it read.
LAYERSCOPE_AVX2_FN inline std::int64_t count_active_avx2(const float* x, std::int64_t n,
                                                         ActiveTest<float> test,
                                                         std::int64_t& active) {
  const __m256 limit = _mm256_set1_ps(test.limit);
  const std::int64_t whole = n - n % 8;
  std::int64_t i = 0;
  while (i < whole) {
    // A lane gains at most one per vector: empty the lanes every 2^30 vectors.
    const std::int64_t stop = std::min(whole, i + (std::int64_t{1} << 33));
    __m256i lanes = _mm256_setzero_si256();
    for (; i < stop; i += 8)
      lanes = _mm256_sub_epi32(lanes, active_mask8(x + i, limit, test.absolute));
    active += lane_total(lanes);
  }
  return whole;
}
#endif

/// Active elements of x[0, n), contiguous values of type T.
template <class T> std::int64_t count_active(const T* x, std::int64_t n, ActiveTest<T> test) {
  std::int64_t active = 0, i = 0;
#if defined(LAYERSCOPE_HAVE_AVX2)
  if constexpr (std::is_same_v<T, float>)
    if (test.wide) i = count_active_avx2(x, n, test, active);
#endif
  for (; i < n; ++i) active += is_active<T>(x[i], test);
  return active;
}

#if defined(LAYERSCOPE_HAVE_AVX2)
/// narrow[j] += active(x[j]) for j < n - n % 8; returns how many it read.
LAYERSCOPE_AVX2_FN inline std::int64_t add_active_row_avx2(const float* x, std::int64_t n,
                                                           ActiveTest<float> test,
                                                           std::int32_t* narrow) {
  const __m256 limit = _mm256_set1_ps(test.limit);
  const std::int64_t whole = n - n % 8;
  for (std::int64_t j = 0; j < whole; j += 8) {
    auto* c = reinterpret_cast<__m256i*>(narrow + j);  // a true compare is -1: subtract it
    _mm256_storeu_si256(c, _mm256_sub_epi32(_mm256_loadu_si256(c),
                                            active_mask8(x + j, limit, test.absolute)));
  }
  return whole;
}
#endif

/// Per-channel activity of a contiguous buffer, counted a stretch of elements at a time, so
/// that summarize() can count each block of its whole-buffer pass while the block is still in
/// L1 instead of reading the buffer a second time from memory. Two layouts:
/// - channel axis not innermost: element i belongs to channel (i / run_length) % channels, and
///   each run of one channel is counted into its total;
/// - channel axis innermost (rows of `channels` units): element i belongs to channel
///   i % channels: whole rows are counted column-wise in registers, and the parts of rows that
///   blocks cut add to narrow per-channel counters, widened into the totals by finish().
template <class T> class ChannelActivityCounter {
 public:
  ChannelActivityCounter(ActiveTest<T> test, std::int64_t run_length, std::int64_t channels,
                         bool innermost, std::int64_t* counts)
      : test_(test), run_length_(run_length), channels_(channels), counts_(counts) {
    if (innermost) narrow_.assign(static_cast<std::size_t>(channels), 0);
  }

  /// Counts x[0, n), which are elements [first, first + n) of the buffer.
  void add(const T* x, std::int64_t n, std::int64_t first) {
    if (channels_ == 1) {
      counts_[0] += count_active(x, n, test_);
      return;
    }
    if (!narrow_.empty()) {
      add_rows(x, n, first);
      return;
    }
    // Divide once: a block of 4096 may span 80 runs of a 7x7 map.
    const std::int64_t run = first / run_length_;
    std::int64_t channel = run % channels_;
    std::int64_t run_end = (run + 1) * run_length_ - first;  // relative to x
    for (std::int64_t i = 0; i < n;) {
      const std::int64_t stop = std::min(n, run_end);
      counts_[channel] += count_active(x + i, stop - i, test_);
      i = stop;
      run_end += run_length_;
      if (++channel == channels_) channel = 0;
    }
  }

  /// Adds what the narrow counters hold to the totals; call once, after the last add().
  void finish() {
    for (std::size_t c = 0; c < narrow_.size(); ++c) counts_[c] += narrow_[c];
    std::fill(narrow_.begin(), narrow_.end(), 0);
    rows_since_widened_ = 0;
  }

 private:
  void add_rows(const T* x, std::int64_t n, std::int64_t first) {
    std::int64_t i = 0;
    const std::int64_t head = (channels_ - first % channels_) % channels_;
    if (head > 0) {  // the rest of a row begun in the previous block
      i = std::min(n, head);
      add_row(x, i, first % channels_);
    }
    const std::int64_t rows = (n - i) / channels_;
#if defined(LAYERSCOPE_HAVE_AVX2)
    if constexpr (std::is_same_v<T, float>) {
      if (test_.wide && rows > 0) {
        const StridedRows whole{x + i, channels_};
        const int width = static_cast<int>(channels_);
        const int done = add_active_columns_avx2(whole, rows, width, test_, counts_);
        for (std::int64_t r = 0; r < rows; ++r)
          for (int c = done; c < width; ++c) counts_[c] += is_active<T>(whole[r][c], test_);
        i += rows * channels_;
      }
    }
#endif
    for (; i + channels_ <= n; i += channels_) add_row(x + i, channels_, 0);
    if (i < n) add_row(x + i, n - i, 0);  // a row the next block ends
  }

  /// narrow[c + j] += active(x[j]) for j < n: part of one row, from unit c on.
  void add_row(const T* x, std::int64_t n, std::int64_t c) {
    std::int32_t* narrow = narrow_.data() + c;
    std::int64_t j = 0;
#if defined(LAYERSCOPE_HAVE_AVX2)
    if constexpr (std::is_same_v<T, float>)
      if (test_.wide) j = add_active_row_avx2(x, n, test_, narrow);
#endif
    for (; j < n; ++j) narrow[j] += is_active<T>(x[j], test_);
    // A counter gains at most one a row: widen before 2^30 rows.
    if (++rows_since_widened_ == (std::int64_t{1} << 30)) finish();
  }

  ActiveTest<T> test_;
  std::int64_t run_length_;
  std::int64_t channels_;
  std::int64_t* counts_;            ///< one per channel
  std::vector<std::int32_t> narrow_;  ///< innermost layout: per-channel counts since finish()
  std::int64_t rows_since_widened_ = 0;  ///< (parts of) rows added to narrow_
};

/// Adds each channel's active elements among the runs [begin, end) of `plan` to `counts`.
template <DType D>
void add_channel_activity(const RunPlan& plan, std::int64_t begin, std::int64_t end,
                          ActiveTest<std::conditional_t<D == DType::Float64, double, float>> test,
                          std::int64_t* counts, std::int64_t channels) {
  using S = typename Element<D>::storage;
  using T = std::conditional_t<D == DType::Float64, double, float>;
  constexpr bool kFloat = std::is_same_v<S, float>;
  if (plan.channel_innermost()) {
#if defined(LAYERSCOPE_HAVE_AVX2)
    if constexpr (kFloat) {
      if (test.wide && plan.run_stride() == 1) {  // rows of units, counted column-wise
        std::vector<const float*> rows;
        rows.reserve(static_cast<std::size_t>(end - begin));
        plan.for_each_run(begin, end, [&](const Run& run) {
          rows.push_back(reinterpret_cast<const float*>(run.data));
        });
        const int width = static_cast<int>(channels);
        const int done = add_active_columns_avx2(rows.data(), static_cast<std::int64_t>(rows.size()),
                                                 width, test, counts);
        for (const float* row : rows)
          for (int c = done; c < width; ++c) counts[c] += is_active<float>(row[c], test);
        return;
      }
    }
#endif
    // One unit per element of a run; narrow counters, widened every 2^30 runs (each run adds
    // at most one per unit).
    std::vector<std::int32_t> narrow(static_cast<std::size_t>(channels), 0);
    std::int64_t since_widened = 0;
    const auto widen = [&] {
      for (std::int64_t c = 0; c < channels; ++c) counts[c] += narrow[c];
      std::fill(narrow.begin(), narrow.end(), 0);
      since_widened = 0;
    };
    plan.for_each_run(begin, end, [&](const Run& run) {
      const S* p = reinterpret_cast<const S*>(run.data);
      const int n = static_cast<int>(run.length);
      for (int c = 0; c < n; ++c)
        narrow[c] += is_active<T>(static_cast<T>(Element<D>::load(p + c * run.stride)), test);
      if (++since_widened == (1 << 30)) widen();
    });
    widen();
    return;
  }
  plan.for_each_run(begin, end, [&](const Run& run) {
    const S* p = reinterpret_cast<const S*>(run.data);
    if constexpr (std::is_same_v<S, T>) {
      if (run.stride == 1) {
        counts[run.channel] += count_active(p, run.length, test);
        return;
      }
    }
    std::int64_t active = 0;
    for (std::int64_t i = 0; i < run.length; ++i)
      active += is_active<T>(static_cast<T>(Element<D>::load(p + i * run.stride)), test);
    counts[run.channel] += active;
  });
}

/// Active elements per channel of `view` (one entry without a channel axis). Large buffers are
/// split by runs among at most thread_cap(max_threads) threads, on `team` when one is lent.
inline std::vector<std::int64_t> channel_activity(const BufferView& view, double limit,
                                                  bool absolute, bool wide,
                                                  std::int64_t parallel_min, unsigned max_threads,
                                                  const ThreadTeam& team = {}) {
  const std::int64_t channels = view.channels();
  const RunPlan plan(view);
  const std::int64_t runs = plan.run_count();
  const std::int64_t total = runs * plan.run_length();
  const unsigned workers = split_workers(total, runs, parallel_min, max_threads, team);
  std::vector<std::vector<std::int64_t>> partial(
      workers, std::vector<std::int64_t>(static_cast<std::size_t>(channels), 0));
  visit_dtype(view.dtype, [&](auto tag) {
    constexpr DType D = decltype(tag)::value;
    using T = std::conditional_t<D == DType::Float64, double, float>;
    const ActiveTest<T> test{round_down<T>(limit), absolute, wide};
    parallel_for(
        runs, workers,
        [&](unsigned w, std::int64_t begin, std::int64_t end) {
          add_channel_activity<D>(plan, begin, end, test, partial[w].data(), channels);
        },
        team);
  });
  for (unsigned w = 1; w < workers; ++w)
    for (std::int64_t c = 0; c < channels; ++c) partial[0][c] += partial[w][c];
  return std::move(partial[0]);
}

}  // namespace layerscope::detail
