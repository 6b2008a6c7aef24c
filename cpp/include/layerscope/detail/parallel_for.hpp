// Splits an index range over a few threads: a team the caller lends, or std::threads started
// for the call, of which the caller's thread takes the first share.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "layerscope/thread_team.hpp"

namespace layerscope::detail {

/// The most threads a kernel may use: `max_threads` as its caller chose (the Python package
/// passes torch.get_num_threads(), so the engine follows torch's intra-op setting), or what the
/// hardware offers when 0. The cap travels in each call's options rather than in a setting of
/// the engine's own, so two callers with different caps never affect each other.
inline unsigned thread_cap(unsigned max_threads) noexcept {
  return max_threads > 0 ? max_threads : std::max(1u, std::thread::hardware_concurrency());
}

/// Number of workers worth using for `work` items when each worker should get at least
/// `min_per_worker` of them; never more than thread_cap(max_threads), never less than one.
inline unsigned worker_count(std::int64_t work, std::int64_t min_per_worker,
                             unsigned max_threads) noexcept {
  if (work <= 0 || min_per_worker <= 0) return 1;
  const std::int64_t wanted = work / min_per_worker;
  return static_cast<unsigned>(std::clamp<std::int64_t>(wanted, 1, thread_cap(max_threads)));
}

/// Workers for `total` elements cut into `units` pieces of work, never more than there are
/// units. On a lent team one per started kLentTeamGrain elements, as PyTorch's loops split;
/// else one below `parallel_min` elements, and worker_count(total, parallel_min / 2,
/// max_threads) from there. Counted in 64 bits throughout: a view of 2^48 elements has more
/// units than `unsigned` holds.
inline unsigned split_workers(std::int64_t total, std::int64_t units, std::int64_t parallel_min,
                              unsigned max_threads, const ThreadTeam& team = {}) noexcept {
  std::int64_t wanted = 1;
  if (team) {
    const std::int64_t grains = (total + kLentTeamGrain - 1) / kLentTeamGrain;
    wanted = std::clamp<std::int64_t>(grains, 1, thread_cap(max_threads));
  } else if (total >= parallel_min) {
    wanted = worker_count(total, parallel_min / 2, max_threads);
  }
  return static_cast<unsigned>(std::clamp<std::int64_t>(units, 1, wanted));
}

/// Where worker `w`'s contiguous slice of [0, count) starts when `workers` share it evenly.
inline std::int64_t slice_start(std::int64_t count, unsigned workers, unsigned w) noexcept {
  return count * w / workers;
}

/// Calls body(worker, begin, end) on `workers` contiguous slices of [0, count), on `team` when
/// one is lent, else on threads started here. Slices are disjoint and cover the range in order;
/// an exception thrown by any worker is rethrown here after all workers have finished.
template <class Body>
void parallel_for(std::int64_t count, unsigned workers, Body&& body, const ThreadTeam& team = {}) {
  if (workers <= 1 || count <= 1) {
    body(0u, std::int64_t{0}, count);
    return;
  }
  std::vector<std::exception_ptr> errors(workers);
  const auto run_worker = [&](unsigned w) {
    try {
      body(w, slice_start(count, workers, w), slice_start(count, workers, w + 1));
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  using Worker = decltype(run_worker);
  if (team) {
    team.run(
        team.runtime, workers,
        [](void* context, unsigned w) { (*static_cast<const Worker*>(context))(w); },
        const_cast<void*>(static_cast<const void*>(&run_worker)));
  } else {
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (unsigned w = 1; w < workers; ++w) threads.emplace_back(run_worker, w);
    run_worker(0);
    for (auto& t : threads) t.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace layerscope::detail
