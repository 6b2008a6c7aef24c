// _core.QuantileSketch and _core.ExactQuantiles: declarations only; every kernel runs in
// quantile_sketch.hpp with the GIL released. Public face: layerscope.stats.quantiles.
#include <nanobind/stl/vector.h>

#include <optional>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/quantile_sketch.hpp"

namespace layerscope::bindings {

namespace {

using namespace nb::literals;
using Probabilities = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

std::vector<double> copy_of(const Probabilities& a) {
  return std::vector<double>(a.data(), a.data() + a.shape(0));
}

// The methods both classes share, declared once.
template <class State> void def_common(nb::class_<State>& cls, const char* name) {
  const std::string update_name = std::string(name) + ".update";
  cls.def(
         "update",
         [update_name](State& s, const AnyArray& array) {
           const BufferView view = view_of(array, std::nullopt, update_name.c_str());
           nb::gil_scoped_release release;
           s.update(view);
         },
         "array"_a)
      .def(
          "merge",
          [](State& s, const State& other) {
            nb::gil_scoped_release release;
            s.merge(other);
          },
          "other"_a)
      .def(
          "quantiles",
          [](const State& s, const Probabilities& qs) {
            std::vector<double> out;
            {
              const std::vector<double> probabilities = copy_of(qs);
              nb::gil_scoped_release release;
              out = s.quantiles(probabilities);
            }
            return to_numpy(std::move(out));
          },
          "qs"_a)
      .def(
          "ranks",
          [](const State& s, const Probabilities& xs) {
            std::vector<double> out(xs.shape(0));
            {
              const std::vector<double> points = copy_of(xs);
              nb::gil_scoped_release release;
              for (std::size_t i = 0; i < points.size(); ++i) out[i] = s.rank(points[i]);
            }
            return to_numpy(std::move(out));
          },
          "xs"_a)
      .def("rank", &State::rank, "x"_a, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("count", &State::count)
      .def_prop_ro("nan_count", &State::nan_count)
      .def_prop_ro("min", &State::min)
      .def_prop_ro("max", &State::max)
      .def_prop_ro("seed", &State::seed)
      .def("serialize",
           [](const State& s) {
             std::vector<std::uint8_t> bytes;
             {
               nb::gil_scoped_release release;
               bytes = s.serialize();
             }
             return to_bytes(bytes);
           })
      .def_static(
          "deserialize",
          [](const nb::bytes& data) {
            const auto [ptr, size] = from_bytes(data);
            nb::gil_scoped_release release;  // `data` is immutable and referenced by the caller
            return State::deserialize(ptr, size);
          },
          "data"_a);
}

}  // namespace

void bind_quantile_sketch(nb::module_& m) {
  nb::class_<QuantileSketch> sketch(m, "QuantileSketch");
  sketch.def(nb::init<std::uint32_t, std::uint64_t>(), "k"_a = QuantileSketch::kDefaultK,
             "seed"_a = QuantileSketch::kDefaultSeed)
      .def_prop_ro("k", &QuantileSketch::k)
      .def_prop_ro("min_k", &QuantileSketch::min_k)
      .def_prop_ro("retained", &QuantileSketch::retained)
      .def_prop_ro("num_levels", &QuantileSketch::num_levels)
      .def("normalized_rank_error",
           nb::overload_cast<>(&QuantileSketch::normalized_rank_error, nb::const_))
      .def_static("bound_for_k",
                  nb::overload_cast<std::uint32_t>(&QuantileSketch::normalized_rank_error),
                  "k"_a);
  def_common(sketch, "QuantileSketch");

  nb::class_<ExactQuantiles> exact(m, "ExactQuantiles");
  exact
      .def(nb::init<std::uint64_t, std::uint64_t>(), "capacity"_a = ExactQuantiles::kDefaultCapacity,
           "seed"_a = ExactQuantiles::kDefaultSeed)
      .def_prop_ro("capacity", &ExactQuantiles::capacity)
      .def_prop_ro("stored", &ExactQuantiles::stored)
      .def_prop_ro("exact", &ExactQuantiles::exact);
  def_common(exact, "ExactQuantiles");
}

}  // namespace layerscope::bindings
