// layerscope._core.ThreadTeam: thread_team.hpp over the OpenMP runtime the process has loaded.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <string>

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
          [](std::optional<std::string> library) -> std::optional<LentTeam> {
            std::optional<ext::OpenMPRuntime> runtime =
                ext::loaded_openmp_runtime(library ? library->c_str() : nullptr);
            if (!runtime) return std::nullopt;
            return LentTeam{*runtime};
          },
          nb::arg("library") = nb::none(),
          "The team of the OpenMP runtime that a library of the process has loaded from "
          "`library` (a path or file name), such as PyTorch's; without it, the first loaded of "
          "libgomp, libiomp5 and libomp. None when none is loaded (nothing is loaded here) or "
          "the platform has no dlopen.")
      .def("__repr__", [](const LentTeam&) { return "ThreadTeam.openmp()"; });
}

}  // namespace layerscope::bindings
