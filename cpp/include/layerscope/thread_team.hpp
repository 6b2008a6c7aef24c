// Threads a caller lends the kernels instead of the ones they would start for a call.
#pragma once

#include <cstdint>

namespace layerscope {

/// A team of worker threads that already runs, lent by the caller: the OpenMP runtime of a
/// training framework, or any pool a C++ program keeps. Kernels split a large buffer over
/// workers; without a team each call starts std::threads, which costs tens of microseconds and
/// pays only for buffers of millions of elements. A team that is already running starts its
/// workers in a few microseconds, and one that splits buffers into contiguous shares in worker
/// order, as OpenMP's static loops do, has each core read the share it has just written, from
/// its own cache. With a team, kernels split buffers of more than kLentTeamGrain elements.
struct ThreadTeam {
  /// One worker's share of a parallel loop; must not throw.
  using Task = void (*)(void* context, unsigned worker);
  /// Calls task(context, w) once for each w in [0, workers), on the team's threads (the
  /// caller's included) and returns when every call has. Must not throw.
  using Run = void (*)(void* runtime, unsigned workers, Task task, void* context);

  /// Null: no team is lent, and kernels start threads of their own.
  Run run = nullptr;
  /// What `run` needs to reach its threads; the team's owner keeps it alive.
  void* runtime = nullptr;

  explicit operator bool() const noexcept { return run != nullptr; }
};

/// The elements a lent team's worker reads at least: PyTorch's parallel loops hand each thread at
/// least this many (at::internal::GRAIN_SIZE), so a tensor of more was written by several
/// threads, one contiguous share each, and a kernel splits it as they did: one worker per
/// started grain, up to the thread cap. A tensor of at most one grain was written by one thread
/// and is read by one; splitting it would only add the ~3 us that starting the team costs.
inline constexpr std::int64_t kLentTeamGrain = std::int64_t{1} << 15;

}  // namespace layerscope
