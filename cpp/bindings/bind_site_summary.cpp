// layerscope._core.SiteSummary and summarize_site: site_summary.hpp as Python sees it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/site_summary.hpp"

namespace layerscope::bindings {

namespace {

using Units = std::optional<std::vector<std::int64_t>>;
using UnitArray = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::device::cpu>;

// Per-unit counts from None, an int64 array (converted from other integer arrays) or a sequence.
Units units_from(nb::handle value) {
  if (value.is_none()) return std::nullopt;
  UnitArray array;
  if (nb::try_cast(value, array, true)) {
    std::vector<std::int64_t> out(array.shape(0));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = array(i);
    return out;
  }
  return nb::cast<std::vector<std::int64_t>>(value);
}

// A read-only numpy view of the per-unit counts, kept alive by the SiteSummary: a SiteSummary
// never changes once Python holds it (merge returns a new one).
nb::object units_of(nb::handle self) {
  const SiteSummary& s = nb::cast<const SiteSummary&>(self);
  if (!s.channel_active) return nb::none();
  const std::size_t shape[1] = {s.channel_active->size()};
  return nb::cast(
      nb::ndarray<nb::numpy, const std::int64_t, nb::ndim<1>>(s.channel_active->data(), 1, shape,
                                                               self),
      nb::rv_policy::reference);
}

double variance_of(const SiteSummary& s) {
  return s.count > 0 ? s.m2 / static_cast<double>(s.count) : std::nan("");
}

std::string repr_of(const SiteSummary& s) {
  char text[320];
  std::snprintf(text, sizeof text,
                "SiteSummary(size=%lld, count=%lld, mean=%.6g, m2=%.6g, min=%.6g, max=%.6g, "
                "l1=%.6g, l2=%.6g, zeros=%lld, nonfinite=%lld, units=%s)",
                static_cast<long long>(s.size), static_cast<long long>(s.count), s.mean, s.m2,
                s.min, s.max, s.l1, s.l2, static_cast<long long>(s.zeros),
                static_cast<long long>(s.nonfinite),
                s.channel_active ? std::to_string(s.channel_active->size()).c_str() : "None");
  return text;
}

// nanobind hands a None element of a sequence of SiteSummary pointers over as a null pointer:
// refused here, by position.
void require_summaries(const std::vector<const SiteSummary*>& parts, const char* where) {
  for (std::size_t i = 0; i < parts.size(); ++i)
    if (parts[i] == nullptr)
      throw nb::type_error((std::string(where) + ": element " + std::to_string(i) +
                            " is None; expected a SiteSummary")
                               .c_str());
}

nb::tuple state_of(const SiteSummary& s) {
  nb::object units = nb::none();
  if (s.channel_active) units = nb::cast(*s.channel_active);
  return nb::make_tuple(s.size, s.count, s.mean, s.m2, s.min, s.max, s.l1, s.l2, s.zeros,
                        s.nonfinite, units);
}

}  // namespace

void bind_site_summary(nb::module_& m) {
  nb::tuple names = nb::steal<nb::tuple>(PyTuple_New(kSiteSummaryScalars));
  for (std::size_t i = 0; i < kSiteSummaryScalars; ++i)
    PyTuple_SET_ITEM(names.ptr(), i, nb::str(kSiteSummaryFields[i]).release().ptr());

  auto cls = nb::class_<SiteSummary>(m, "SiteSummary",
                          "Statistics of one or more observations of a site; read-only.")
      .def(
          "__init__",
          [](SiteSummary* self, std::int64_t size, std::int64_t count, double mean, double m2,
             double min, double max, double l1, double l2, std::int64_t zeros,
             std::int64_t nonfinite, nb::handle channel_active) {
            new (self) SiteSummary{size, count, mean, m2,    min,       max,
                                   l1,   l2,    zeros, nonfinite, units_from(channel_active)};
          },
          nb::kw_only(), nb::arg("size") = 0, nb::arg("count") = 0,
          nb::arg("mean") = std::nan(""), nb::arg("m2") = 0.0, nb::arg("min") = std::nan(""),
          nb::arg("max") = std::nan(""), nb::arg("l1") = 0.0, nb::arg("l2") = 0.0,
          nb::arg("zeros") = 0, nb::arg("nonfinite") = 0, nb::arg("channel_active") = nb::none(),
          "A SiteSummary from its named fields (keywords only); the defaults are the empty one.")
      .def_ro("size", &SiteSummary::size, "All elements, finite or not.")
      .def_ro("count", &SiteSummary::count, "Finite elements.")
      .def_ro("mean", &SiteSummary::mean, "Mean of the finite values (NaN when count is 0).")
      .def_ro("m2", &SiteSummary::m2, "Sum of squared deviations from the mean (0 when empty).")
      .def_ro("min", &SiteSummary::min, "Smallest finite value (NaN when count is 0).")
      .def_ro("max", &SiteSummary::max, "Largest finite value (NaN when count is 0).")
      .def_ro("l1", &SiteSummary::l1, "Sum of the absolute finite values.")
      .def_ro("l2", &SiteSummary::l2, "Euclidean norm of the finite values.")
      .def_ro("zeros", &SiteSummary::zeros, "Elements equal to zero.")
      .def_ro("nonfinite", &SiteSummary::nonfinite, "NaN and +/-Inf elements.")
      .def_prop_ro("channel_active", &units_of,
                   "Active elements per unit (read-only int64 array), None without a unit axis.")
      .def_prop_ro("variance", &variance_of,
                   "Population variance m2 / count (NaN when count is 0).")
      .def_prop_ro(
          "std", [](const SiteSummary& s) { return std::sqrt(variance_of(s)); },
          "Population standard deviation (NaN when count is 0).")
      .def(
          "merge", [](const SiteSummary& a, const SiteSummary& b) { return merged(a, b); },
          nb::arg("other"),
          "A new SiteSummary of both summaries' elements together (exact: Chan's formula for "
          "mean and m2, counts and l1 add, l2 as hypot, per-unit counts add).")
      .def_static(
          "merge_all",
          [](const std::vector<const SiteSummary*>& parts) {
            require_summaries(parts, "SiteSummary.merge_all");
            SiteSummary out;
            for (const SiteSummary* part : parts) merge(out, *part);
            return out;
          },
          nb::arg("summaries"), "The merge of every summary of a sequence (empty: the empty one).")
      .def_static(
          "from_packed",
          [](nb::ndarray<const double, nb::ndim<1>, nb::device::cpu> values,
             nb::handle channel_active) {
            if (values.shape(0) != kSiteSummaryScalars)
              throw nb::value_error(("SiteSummary.from_packed: expected " +
                                     std::to_string(kSiteSummaryScalars) +
                                     " float64 values in SiteSummary.fields order, got " +
                                     std::to_string(values.shape(0)))
                                        .c_str());
            double packed_values[kSiteSummaryScalars];
            for (std::size_t i = 0; i < kSiteSummaryScalars; ++i) packed_values[i] = values(i);
            return unpacked(packed_values, units_from(channel_active));
          },
          nb::arg("values"), nb::arg("channel_active") = nb::none(),
          "The SiteSummary whose scalar fields are `values` (float64, SiteSummary.fields order; "
          "counts rounded; with count 0, mean/min/max become NaN and m2/l1/l2 0).")
      .def("__getstate__", &state_of)
      .def("__setstate__",
           [](SiteSummary& s, const nb::tuple& t) {
             if (t.size() != kSiteSummaryScalars + 1)
               throw nb::value_error("SiteSummary.__setstate__: expected 11 fields");
             new (&s) SiteSummary{
                 nb::cast<std::int64_t>(t[0]), nb::cast<std::int64_t>(t[1]),
                 nb::cast<double>(t[2]),       nb::cast<double>(t[3]),
                 nb::cast<double>(t[4]),       nb::cast<double>(t[5]),
                 nb::cast<double>(t[6]),       nb::cast<double>(t[7]),
                 nb::cast<std::int64_t>(t[8]), nb::cast<std::int64_t>(t[9]),
                 units_from(t[10])};
           })
      .def("__repr__", &repr_of);
  // The names of the scalar fields, in the order of packed layouts (from_packed, the device
  // path's packed vector).
  cls.attr("fields") = names;

  m.def(
      "summarize_site",
      [](const AnyArray& array, std::optional<int> channel_axis, double eps,
         std::optional<double> threshold, std::optional<int> max_threads, const LentTeam* team) {
        const BufferView view = view_of(array, channel_axis, "summarize_site");
        SummaryOptions options;
        options.eps = eps;
        options.threshold = threshold;
        options.channel_sums = false;
        options.max_threads = thread_limit(max_threads, "summarize_site");
        options.team = team_of(team);
        nb::gil_scoped_release released;
        return site_summary(summarize(view, options), channel_axis.has_value());
      },
      nb::arg("array"), nb::arg("channel_axis") = nb::none(), nb::arg("eps") = 0.0,
      nb::arg("threshold") = nb::none(), nb::arg("max_threads") = nb::none(),
      nb::arg("team").none() = nb::none(),
      "The SiteSummary of a float32/float64/float16/bfloat16 CPU array, any strides: one pass "
      "of summarize(); per-unit active counts along `channel_axis` (None: no unit counts); "
      "large arrays are read by at most max_threads threads (None: the hardware's)."
      " With `team` (a ThreadTeam), the split runs on its threads from smaller sizes on.");
}

}  // namespace layerscope::bindings
