// layerscope._core.summarize_step: the extension optimizer_step.hpp as Python sees it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/site_summary.hpp"
#include "layerscope_ext/optimizer_step.hpp"

namespace layerscope::bindings {

namespace {

using Floats = nb::ndarray<const float, nb::device::cpu, nb::c_contig>;

nb::object fields_of(Summary& s) { return nb::cast(site_summary(std::move(s), false)); }

const float* checked(const Floats& array, std::int64_t size, const char* what) {
  if (static_cast<std::int64_t>(array.size()) != size)
    throw nb::value_error((std::string("summarize_step: ") + what + " holds " +
                           std::to_string(array.size()) + " elements, the parameter " +
                           std::to_string(size))
                              .c_str());
  return array.data();
}

}  // namespace

void bind_optimizer_step(nb::module_& m) {
  m.def(
      "summarize_step",
      [](std::int64_t size, std::optional<Floats> after, std::optional<Floats> before,
         const std::vector<Floats>& states, std::optional<Floats> second, double correction,
         double eps, double lr, double level, std::int64_t stride,
         std::optional<int> max_threads, const LentTeam* team) {
        ext::StepInputs in;
        in.size = size;
        in.max_threads = thread_limit(max_threads, "summarize_step");
        in.team = team_of(team);
        if (after.has_value() != before.has_value())
          throw nb::value_error("summarize_step: give both after and before, or neither");
        if (after) {
          in.after = checked(*after, size, "after");
          in.before = checked(*before, size, "before");
        }
        for (const Floats& state : states) in.states.push_back(checked(state, size, "a state"));
        if (second) {
          if (stride < 1)
            throw nb::value_error(("summarize_step: stride must be >= 1, got " +
                                   std::to_string(stride)).c_str());
          if (!(correction > 0.0))
            throw nb::value_error("summarize_step: correction must be > 0");
          in.adam = ext::AdamStep{checked(*second, size, "second"), correction, eps, lr, level,
                                  stride};
        }
        ext::StepSummary s;
        {
          nb::gil_scoped_release released;
          s = ext::summarize_step(in);
        }
        nb::list state_fields;
        for (Summary& state : s.states) state_fields.append(fields_of(state));
        nb::object update = nb::none(), adam = nb::none();
        if (after) update = nb::make_tuple(fields_of(s.update), s.update_norm, s.before_norm);
        if (second)
          adam = nb::make_tuple(fields_of(s.second), s.second_smallest, s.second_largest,
                                s.second_below, to_numpy(std::move(s.step_sizes)));
        return nb::make_tuple(update, state_fields, adam);
      },
      nb::arg("size"), nb::arg("after").none(), nb::arg("before").none(), nb::arg("states"),
      nb::arg("second").none(), nb::arg("correction") = 1.0, nb::arg("eps") = 0.0,
      nb::arg("lr") = 0.0, nb::arg("level") = 0.0, nb::arg("stride") = 1,
      nb::arg("max_threads") = nb::none(), nb::arg("team").none() = nb::none(),
      "One pass over a parameter's step, every array contiguous float32 on the CPU with `size` "
      "elements. Returns (update, states, adam): update is None without after/before, else "
      "(SiteSummary of Δw = after - before, ‖Δw‖, ‖before‖) with plain norms (NaN/Inf propagate); "
      "states the SiteSummary of each state array; adam None without `second`, else (the "
      "SiteSummary of v, "
      "smallest v, largest v (±Inf included, NaN left out), count of v < level, float32 step "
      "sizes lr / (sqrt(v / correction) + eps) at v[0], v[stride], ...). max_threads caps "
      "the threads that read a large parameter (None: the hardware's)."
      " With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.");
}

}  // namespace layerscope::bindings
