// _core.Histogram: layerscope/histogram.hpp for Python. Arrays are counted in place with the GIL
// released; edges and counts leave as numpy arrays.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/histogram.hpp"

namespace layerscope::bindings {

namespace {

using Edges = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

Histogram from_edges(const Edges& edges) {
  return Histogram(std::vector<double>(edges.data(), edges.data() + edges.shape(0)));
}

void update_histogram(Histogram& self, const AnyArray& array) {
  const BufferView view = view_of(array, std::nullopt, "Histogram.update");
  nb::gil_scoped_release release;
  self.update(view);
}

const char* kind_name(Histogram::Kind kind) {
  switch (kind) {
    case Histogram::Kind::Linear: return "linear";
    case Histogram::Kind::Symlog: return "symlog";
    case Histogram::Kind::Explicit: break;
  }
  return "explicit";
}

}  // namespace

void bind_histogram(nb::module_& m) {
  using namespace nb::literals;

  nb::class_<Histogram>(m, "Histogram", "Counts per bin [e[i], e[i+1]) over fixed edges.")
      .def("__init__",
           [](Histogram* self, const Edges& edges) { new (self) Histogram(from_edges(edges)); },
           "edges"_a)
      .def_static("linear", &Histogram::linear, "low"_a, "high"_a, "bins"_a)
      .def_static("symlog", &Histogram::symlog, "linear_width"_a, "max_abs"_a,
                  "bins_per_decade"_a)
      .def("update", &update_histogram, "array"_a, "Counts every element of a float array.")
      .def("update_value", nb::overload_cast<double>(&Histogram::update), "value"_a)
      .def("merge", &Histogram::merge, "other"_a)
      .def_prop_ro("kind", [](const Histogram& self) { return kind_name(self.kind()); })
      .def_prop_ro("bins", &Histogram::bins)
      .def_prop_ro(
          "edges",
          [](const Histogram& self) { return to_numpy(std::vector<double>(self.edges())); },
          nb::rv_policy::automatic)  // the array owns its copy; hand it over as it is
      .def_prop_ro(
          "counts",
          [](const Histogram& self) { return to_numpy(std::vector<std::int64_t>(self.counts())); },
          nb::rv_policy::automatic)
      .def_prop_ro("underflow", &Histogram::underflow)
      .def_prop_ro("overflow", &Histogram::overflow)
      .def_prop_ro("nan", &Histogram::nan)
      .def_prop_ro("total", &Histogram::total)
      .def("serialize", [](const Histogram& self) { return to_bytes(self.serialize()); })
      .def_static(
          "deserialize",
          [](const nb::bytes& data) {
            const auto [bytes, size] = from_bytes(data);
            return Histogram::deserialize(bytes, size);
          },
          "data"_a);
}

}  // namespace layerscope::bindings
