// The OpenMP runtime that a library in the process has already loaded (PyTorch's), lent to the
// kernels as a ThreadTeam: its threads are the ones that wrote the tensors the kernels read.
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

#include "layerscope/thread_team.hpp"

namespace layerscope::ext {

/// Entry points of a loaded OpenMP runtime, by the GNU ABI that GCC's libgomp exports and
/// LLVM's libomp and Intel's libiomp5 export for compatibility.
struct OpenMPRuntime {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;  ///< GOMP_parallel
  int (*thread_num)() = nullptr;                                           ///< omp_get_thread_num
  int (*num_threads)() = nullptr;  ///< omp_get_num_threads
};

/// The OpenMP runtime already loaded into this process from `library` (a path or a file name),
/// or, without one, the first loaded under one of the usual names; none when there is none (also
/// on platforms without dlopen). Nothing is loaded here: a runtime that no library brought along
/// has no threads worth borrowing. The runtime stays loaded while the process lives.
inline std::optional<OpenMPRuntime> loaded_openmp_runtime(const char* library = nullptr) {
#if defined(__unix__) || defined(__APPLE__)
  const char* const usual[] = {"libgomp.so.1", "libiomp5.so", "libomp.so", "libomp.dylib"};
  const char* const* names = library != nullptr ? &library : usual;
  const std::size_t count = library != nullptr ? 1 : std::size(usual);
  for (std::size_t i = 0; i < count; ++i) {
    void* handle = dlopen(names[i], RTLD_NOLOAD | RTLD_LAZY);
    if (handle == nullptr) continue;
    OpenMPRuntime runtime;
    runtime.parallel = reinterpret_cast<decltype(runtime.parallel)>(dlsym(handle, "GOMP_parallel"));
    runtime.thread_num = reinterpret_cast<int (*)()>(dlsym(handle, "omp_get_thread_num"));
    runtime.num_threads = reinterpret_cast<int (*)()>(dlsym(handle, "omp_get_num_threads"));
    // The handle is kept, not closed: its reference keeps the entry points valid.
    if (runtime.parallel && runtime.thread_num && runtime.num_threads) return runtime;
  }
#else
  (void)library;
#endif
  return std::nullopt;
}

/// ThreadTeam::Run over an OpenMPRuntime: one parallel region asking for `workers` threads, in
/// which thread t runs the workers t, t + threads, ...: every worker runs once however many
/// threads the runtime grants (one, inside another parallel region). OpenMP numbers threads in
/// the order of its static loops' shares, so worker w reads the share that PyTorch's thread w
/// wrote.
inline void run_on_openmp(void* runtime, unsigned workers, ThreadTeam::Task task, void* context) {
  struct Region {
    const OpenMPRuntime* runtime;
    unsigned workers;
    ThreadTeam::Task task;
    void* context;
  } region{static_cast<const OpenMPRuntime*>(runtime), workers, task, context};
  region.runtime->parallel(
      [](void* data) {
        const Region& r = *static_cast<const Region*>(data);
        const auto threads = static_cast<unsigned>(r.runtime->num_threads());
        for (auto w = static_cast<unsigned>(r.runtime->thread_num()); w < r.workers; w += threads)
          r.task(r.context, w);
      },
      &region, workers, 0);
}

/// `runtime` lent as a ThreadTeam; `runtime` must outlive every kernel call given the team.
inline ThreadTeam openmp_team(const OpenMPRuntime& runtime) {
  return ThreadTeam{&run_on_openmp, const_cast<OpenMPRuntime*>(&runtime)};
}

}  // namespace layerscope::ext
