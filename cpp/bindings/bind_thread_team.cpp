// layerscope._core.ThreadTeam: thread_team.hpp over the OpenMP runtime the process has loaded.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>

#include <optional>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope_ext/openmp_team.hpp"

namespace layerscope::bindings {

void bind_thread_team(nb::module_& m) {
  nb::class_<LentTeam>(m, "ThreadTeam",
                       "Threads the kernels borrow for a large buffer (their `team` argument): "
                       "those of the OpenMP runtime already loaded into the process, which "
                       "start in microseconds where threads of the kernels' own take tens, "
                       "and which read the shares of a tensor that they wrote themselves.")
      .def_static(
          "openmp",
          []() -> std::optional<LentTeam> {
            std::optional<ext::OpenMPRuntime> runtime = ext::loaded_openmp_runtime();
            if (!runtime) return std::nullopt;
            return LentTeam{*runtime};
          },
          "The team of the OpenMP runtime (libgomp, libiomp5 or libomp) that a library of the "
          "process has loaded, such as PyTorch's; None when none is loaded (nothing is loaded "
          "here) or the platform has no dlopen.")
      .def("__repr__", [](const LentTeam&) { return "ThreadTeam.openmp()"; });
}

}  // namespace layerscope::bindings
