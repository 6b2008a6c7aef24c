// layerscope._core.count_nonfinite: nonfinite.hpp as Python sees it.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>

#include <cstdint>
#include <optional>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/nonfinite.hpp"

namespace layerscope::bindings {

void bind_nonfinite(nb::module_& m) {
  m.def(
      "count_nonfinite",
      [](const AnyArray& array, std::optional<int> max_threads, const LentTeam* team) {
        const BufferView view = view_of(array, std::nullopt, "count_nonfinite");
        const unsigned threads = thread_limit(max_threads, "count_nonfinite");
        nb::gil_scoped_release released;
        return count_nonfinite(view, threads, team_of(team));
      },
      nb::arg("array"), nb::arg("max_threads") = nb::none(), nb::arg("team").none() = nb::none(),
      "The NaN and +/-Inf elements of a float32/float64/float16/bfloat16 CPU array, any "
      "strides, read by their exponent bits in place; large contiguous arrays are read by at "
      "most max_threads threads (None: the hardware's)."
      " With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.");
}

}  // namespace layerscope::bindings
