// layerscope._core.sum_of_squares: sum_of_squares.hpp as Python sees it.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>

#include <optional>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/sum_of_squares.hpp"

namespace layerscope::bindings {

void bind_sum_of_squares(nb::module_& m) {
  m.def(
      "sum_of_squares",
      [](const AnyArray& array, std::optional<int> max_threads, const LentTeam* team) {
        const BufferView view = view_of(array, std::nullopt, "sum_of_squares");
        const unsigned threads = thread_limit(max_threads, "sum_of_squares");
        nb::gil_scoped_release released;
        return sum_of_squares(view, threads, team_of(team));
      },
      nb::arg("array"), nb::arg("max_threads") = nb::none(), nb::arg("team").none() = nb::none(),
      "The sum of the squares of a float32/float64/float16/bfloat16 CPU array's elements, any "
      "strides, in place, as a float: NaN or inf when an element is (or a float32 square "
      "overflows), so a finite sum proves every element finite; large contiguous arrays are "
      "read by at most max_threads threads (None: the hardware's)."
      " With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.");
}

}  // namespace layerscope::bindings
