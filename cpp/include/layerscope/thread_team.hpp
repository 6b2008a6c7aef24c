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
/// its own cache. With a team, kernels split buffers from kLentTeamParallelMin elements on.
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

/// The fewest elements a kernel splits over a lent team: starting a running team's workers costs
/// ~3 us, which a split saves from 2^16 float32 elements read fresh from another core's cache
/// (PyTorch's elementwise loops split from 2^15 elements on; a smaller output was written by one
/// thread, and splitting it only adds the start).
inline constexpr std::int64_t kLentTeamParallelMin = std::int64_t{1} << 16;

}  // namespace layerscope
