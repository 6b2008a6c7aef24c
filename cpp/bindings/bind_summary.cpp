// layerscope._core.Summary and layerscope._core.summarize: summary.hpp as Python sees it.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/summary.hpp"

namespace layerscope::bindings {

namespace {

double variance_of(const Summary& s) {
  return s.count > 0 ? s.m2 / static_cast<double>(s.count)
                     : std::numeric_limits<double>::quiet_NaN();
}

std::string repr_of(const Summary& s) {
  char text[320];
  std::snprintf(text, sizeof text,
                "Summary(size=%lld, count=%lld, mean=%.6g, std=%.6g, min=%.6g, max=%.6g, "
                "l2=%.6g, zeros=%lld, nan=%lld, pos_inf=%lld, neg_inf=%lld, channels=%zu)",
                static_cast<long long>(s.size), static_cast<long long>(s.count), s.mean,
                std::sqrt(variance_of(s)), s.min, s.max, s.l2, static_cast<long long>(s.zeros),
                static_cast<long long>(s.nan), static_cast<long long>(s.pos_inf),
                static_cast<long long>(s.neg_inf), s.channel_active.size());
  return text;
}

template <class T> auto numpy_copy(const std::vector<T>& values) {
  return to_numpy(std::vector<T>(values));
}

// summarize() with its arguments checked; the errors name `caller`.
Summary checked_summarize(const AnyArray& array, std::optional<int> channel_axis, double eps,
                          std::optional<double> threshold, bool channel_sums,
                          std::optional<int> max_threads, const LentTeam* team,
                          const char* caller) {
  const BufferView view = view_of(array, channel_axis, caller);
  if (!(eps >= 0.0))
    throw nb::value_error((std::string(caller) + ": eps must be >= 0, got " + std::to_string(eps)).c_str());
  if (threshold && std::isnan(*threshold))
    throw nb::value_error((std::string(caller) + ": threshold must not be NaN").c_str());
  SummaryOptions options;
  options.eps = eps;
  options.threshold = threshold;
  options.channel_sums = channel_sums;
  options.max_threads = thread_limit(max_threads, caller);
  options.team = team_of(team);
  nb::gil_scoped_release released;
  return summarize(view, options);
}

}  // namespace

void bind_summary(nb::module_& m) {
  nb::class_<Summary>(m, "Summary",
                      "Statistics of one buffer, from summarize(); read-only. NaN and +/-Inf are "
                      "counted and excluded from every other statistic.")
      .def_ro("size", &Summary::size, "All elements, finite or not.")
      .def_ro("count", &Summary::count, "Finite elements.")
      .def_ro("sum", &Summary::sum, "Sum of the finite values (0.0 when count is 0).")
      .def_ro("sum_sq", &Summary::sum_sq, "Sum of squares of the finite values.")
      .def_ro("mean", &Summary::mean, "Mean of the finite values (NaN when count is 0).")
      .def_ro("m2", &Summary::m2, "Sum of squared deviations from the mean (stable).")
      .def_ro("min", &Summary::min, "Smallest finite value (NaN when count is 0).")
      .def_ro("max", &Summary::max, "Largest finite value (NaN when count is 0).")
      .def_ro("l1", &Summary::l1, "Sum of |x| over the finite values.")
      .def_ro("l2", &Summary::l2, "Euclidean norm of the finite values.")
      .def_ro("zeros", &Summary::zeros, "Elements equal to zero.")
      .def_ro("nan", &Summary::nan, "NaN elements.")
      .def_ro("pos_inf", &Summary::pos_inf, "+Inf elements.")
      .def_ro("neg_inf", &Summary::neg_inf, "-Inf elements.")
      .def_prop_ro(
          "channel_count", [](const Summary& s) { return numpy_copy(s.channel_count); }, nb::rv_policy::move,
          "Finite elements per channel (int64 array, one entry without a channel axis; empty "
          "when summarized with channel_sums=False).")
      .def_prop_ro(
          "channel_active", [](const Summary& s) { return numpy_copy(s.channel_active); }, nb::rv_policy::move,
          "Active elements per channel: |x| > eps, or x > threshold when one was given.")
      .def_prop_ro(
          "channel_sum", [](const Summary& s) { return numpy_copy(s.channel_sum); }, nb::rv_policy::move,
          "Sum of the finite values per channel (float64 array; empty without channel_sums).")
      .def_prop_ro(
          "channel_sum_sq", [](const Summary& s) { return numpy_copy(s.channel_sum_sq); }, nb::rv_policy::move,
          "Sum of squares of the finite values per channel (float64 array; empty without "
          "channel_sums).")
      .def_prop_ro("variance", &variance_of,
                   "Population variance m2 / count (NaN when count is 0).")
      .def_prop_ro(
          "std", [](const Summary& s) { return std::sqrt(variance_of(s)); },
          "Population standard deviation (NaN when count is 0).")
      .def_prop_ro(
          "nonfinite", [](const Summary& s) { return s.nan + s.pos_inf + s.neg_inf; },
          "NaN and +/-Inf elements together.")
      .def_prop_ro(
          "channels", [](const Summary& s) { return s.channel_active.size(); },
          "Number of channels (1 without a channel axis).")
      .def("__repr__", &repr_of);

  m.def(
      "summarize",
      [](const AnyArray& array, std::optional<int> channel_axis, double eps,
         std::optional<double> threshold, bool channel_sums, std::optional<int> max_threads,
         const LentTeam* team) {
        return checked_summarize(array, channel_axis, eps, threshold, channel_sums, max_threads,
                                 team, "summarize");
      },
      nb::arg("array"), nb::arg("channel_axis") = nb::none(), nb::arg("eps") = 0.0,
      nb::arg("threshold") = nb::none(), nb::arg("channel_sums") = true,
      nb::arg("max_threads") = nb::none(), nb::arg("team").none() = nb::none(),
      "One-pass Summary of a float32/float64/float16/bfloat16 CPU array, any strides; large "
      "arrays are read by at most max_threads threads (None: the hardware's)."
      " With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.");
}

}  // namespace layerscope::bindings
