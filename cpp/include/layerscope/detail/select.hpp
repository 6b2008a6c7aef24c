// Private helper of exact_quantiles.hpp: several order statistics of one array at once.
//
// std::nth_element partitions with a branch per element, which random data mispredicts half the
// time (~11 ns per element on 16k doubles). The partition here moves every element
// unconditionally and advances by the comparison's result, so nothing is predicted (~2 ns per
// element), and one partition serves every rank on both of its sides.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

namespace layerscope::detail {

// Moves the elements x of a[begin, end) with goes_left(x) to the front (in no particular order)
// and returns where the others start.
template <class GoesLeft>
std::int64_t partition_branchless(double* a, std::int64_t begin, std::int64_t end,
                                  GoesLeft goes_left_of) {
  std::int64_t left = begin;
  // Invariant: a[begin, left) go left, a[left, right) do not.
  for (std::int64_t right = begin; right < end; ++right) {
    const double x = a[right];
    const bool goes_left = goes_left_of(x);
    a[right] = a[left];
    a[left] = x;
    left += goes_left;
  }
  return left;
}

// Index of the first smallest (less) or largest (greater) element of the non-empty a[begin,
// end). Keeping the value in a register is several times faster than std::min_element.
template <class Order>
std::int64_t extreme_at(const double* a, std::int64_t begin, std::int64_t end, Order order) {
  double best = a[begin];
  std::int64_t at = begin;
  for (std::int64_t i = begin + 1; i < end; ++i) {
    if (order(a[i], best)) {
      best = a[i];
      at = i;
    }
  }
  return at;
}

inline double median_of_three(double x, double y, double z) {
  return std::max(std::min(x, y), std::min(std::max(x, y), z));
}

// select_ranks on a[begin, end) with at most depth_left further partitions on any path.
inline void select_ranks_within(double* a, std::int64_t begin, std::int64_t end,
                                const std::int64_t* rank, const std::int64_t* rank_end,
                                int depth_left) {
  constexpr std::int64_t kSmall = 16;
  while (rank != rank_end) {
    if (*rank == begin) {
      std::swap(a[begin], a[extreme_at(a, begin, end, [](double x, double y) { return x < y; })]);
      begin = *rank++ + 1;
      continue;
    }
    if (rank_end[-1] == end - 1) {
      std::swap(a[end - 1], a[extreme_at(a, begin, end, [](double x, double y) { return x > y; })]);
      end = *--rank_end;
      continue;
    }
    if (end - begin <= kSmall || depth_left-- == 0) {
      for (const std::int64_t* r = rank; r != rank_end; ++r) {  // left to right: each shrinks
        std::nth_element(a + begin, a + *r, a + end);
        begin = *r + 1;
      }
      return;
    }
    const double pivot =
        median_of_three(a[begin], a[begin + (end - begin) / 2], a[end - 1]);
    std::int64_t split =
        partition_branchless(a, begin, end, [pivot](double x) { return x < pivot; });
    const std::int64_t* right_rank = std::lower_bound(rank, rank_end, split);
    if (split == begin) {
      // The pivot is the range's smallest value: gather the values equal to it, which are the
      // order statistics of every rank they cover, and go on with the larger ones.
      split = partition_branchless(a, begin, end, [pivot](double x) { return !(pivot < x); });
      begin = split;
      rank = std::lower_bound(rank, rank_end, split);
      continue;
    }
    select_ranks_within(a, begin, split, rank, right_rank, depth_left);
    begin = split;
    rank = right_rank;
  }
}

/// Puts into a[r], for every rank r of [rank, rank_end) (sorted, unique, each in [0, n)), the
/// value std::nth_element(a, a + r, a + n) would put there; a stays a permutation of itself.
/// No NaN may be among the values (they have no order).
/// Each partition splits the ranks between its sides, so k ranks cost about log2(k) + 2 passes
/// over the values, and a rank at either end of its range is a min / max scan. A range still
/// unfinished after 2 log2(n) + 16 partitions (adversarial input) is finished by
/// std::nth_element, so the worst case stays O(n log n).
inline void select_ranks(double* a, std::int64_t n, const std::int64_t* rank,
                         const std::int64_t* rank_end) {
  int depth = 16;
  for (std::int64_t m = n; m > 1; m /= 2) depth += 2;
  select_ranks_within(a, 0, n, rank, rank_end, depth);
}

}  // namespace layerscope::detail
