// The skeleton of a one-number reduction over a buffer (the non-finite count, the sum of
// squares): the sum over every element a view shows of a per-element quantity, read run by run
// with the caller's fast kernel, large contiguous buffers split over threads.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/parallel_for.hpp"

namespace layerscope::detail {

/// The sum over `view`'s elements of a quantity that `contiguous(x, n)` adds up over n
/// contiguous elements from x (the fast kernel) and `one(p)` gives for the element at p (a
/// strided run), both reading the elements as `S` (their storage, or their bits). Each element
/// of a broadcast view counts as often as it appears. A contiguous view is split as
/// split_workers() says: over at most `max_threads` threads (0: the hardware's), from
/// `parallel_min` elements on threads started for the call, or on `team` when one is lent.
template <class T, class S, class Contiguous, class One>
T sum_over_elements(const BufferView& view, std::int64_t parallel_min, unsigned max_threads,
                    const ThreadTeam& team, Contiguous&& contiguous, One&& one) {
  const DistinctView distinct = distinct_elements(view);
  const RunPlan plan(distinct.view);
  const std::int64_t length = plan.run_length();
  T total{};
  if (plan.run_count() == 1 && plan.run_stride() == 1) {  // contiguous: the usual case
    const S* x = nullptr;
    plan.for_each_run([&](const Run& run) { x = reinterpret_cast<const S*>(run.data); });
    const unsigned workers = split_workers(length, length, parallel_min, max_threads, team);
    if (workers == 1) {  // the usual size: no partial sums to allocate
      total = contiguous(x, length);
    } else {
      std::vector<T> parts(workers, T{});
      parallel_for(
          length, workers,
          [&](unsigned w, std::int64_t begin, std::int64_t end) {
            parts[w] = contiguous(x + begin, end - begin);
          },
          team);
      for (const T part : parts) total += part;
    }
  } else {
    plan.for_each_run([&](const Run& run) {
      const S* x = reinterpret_cast<const S*>(run.data);
      if (run.stride == 1) {
        total += contiguous(x, run.length);
        return;
      }
      for (std::int64_t i = 0; i < run.length; ++i) total += one(x + i * run.stride);
    });
  }
  return total * static_cast<T>(distinct.repeat);
}

}  // namespace layerscope::detail
