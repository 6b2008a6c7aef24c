// _core.Moments and _core.ChannelMoments: layerscope/moments.hpp for Python. Arrays are read in
// place with the GIL released; per-channel results leave as numpy arrays that own their data.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/moments.hpp"

namespace layerscope::bindings {

namespace {

void update_moments(Moments& self, const AnyArray& array) {
  const BufferView view = view_of(array, std::nullopt, "Moments.update");
  nb::gil_scoped_release release;
  self.update(view);
}

void update_channels(ChannelMoments& self, const AnyArray& array, int channel_axis) {
  const BufferView view = view_of(array, channel_axis, "ChannelMoments.update");
  nb::gil_scoped_release release;
  self.update(view);
}

// The arrays own their data (a capsule), so they are handed over as they are, never copied.
constexpr auto kOwned = nb::rv_policy::automatic;

// An accessor of ChannelMoments returning std::vector<T>, bound as a numpy-valued property.

template <class T> auto per_channel(std::vector<T> (ChannelMoments::*accessor)() const) {
  return [accessor](const ChannelMoments& self) { return to_numpy((self.*accessor)()); };
}

}  // namespace

void bind_moments(nb::module_& m) {
  using namespace nb::literals;

  nb::class_<Moments>(m, "Moments", "Running moments of the finite values of a stream.")
      .def(nb::init<>())
      .def("update", &update_moments, "array"_a, "Adds every element of a float array.")
      .def("update_value", nb::overload_cast<double>(&Moments::update), "value"_a)
      .def("update_summary",
           nb::overload_cast<std::int64_t, double, double, double, double, double, double,
                             std::int64_t>(&Moments::update),
           "count"_a, "mean"_a, "m2"_a, "min"_a, "max"_a, "sum"_a, "sum_sq"_a,
           "nonfinite"_a = 0, "Folds in a precomputed summary; ValueError if impossible.")
      .def("merge", &Moments::merge, "other"_a)
      .def_prop_ro("count", &Moments::count)
      .def_prop_ro("nonfinite", &Moments::nonfinite)
      .def_prop_ro("mean", &Moments::mean)
      .def_prop_ro("variance", &Moments::variance)
      .def_prop_ro("sample_variance", &Moments::sample_variance)
      .def_prop_ro("std", &Moments::std)
      .def_prop_ro("m2", &Moments::m2)
      .def_prop_ro("min", &Moments::min)
      .def_prop_ro("max", &Moments::max)
      .def_prop_ro("sum", &Moments::sum)
      .def_prop_ro("sum_sq", &Moments::sum_sq)
      .def("serialize", [](const Moments& self) { return to_bytes(self.serialize()); })
      .def_static(
          "deserialize",
          [](const nb::bytes& data) {
            const auto [bytes, size] = from_bytes(data);
            return Moments::deserialize(bytes, size);
          },
          "data"_a);

  nb::class_<ChannelMoments>(m, "ChannelMoments", "Running moments per channel.")
      .def(nb::init<std::int64_t>(), "channels"_a)
      .def("update", &update_channels, "array"_a, "channel_axis"_a,
           "Adds every element to the channel its index on channel_axis names.")
      .def("merge", &ChannelMoments::merge, "other"_a)
      .def_prop_ro("channels", &ChannelMoments::channels)
      .def_prop_ro("count", per_channel(&ChannelMoments::count), kOwned)
      .def_prop_ro("nonfinite", per_channel(&ChannelMoments::nonfinite), kOwned)
      .def_prop_ro("mean", per_channel(&ChannelMoments::mean), kOwned)
      .def_prop_ro("variance", per_channel(&ChannelMoments::variance), kOwned)
      .def_prop_ro("sample_variance", per_channel(&ChannelMoments::sample_variance), kOwned)
      .def_prop_ro("std", per_channel(&ChannelMoments::std), kOwned)
      .def_prop_ro("m2", per_channel(&ChannelMoments::m2), kOwned)
      .def_prop_ro("min", per_channel(&ChannelMoments::min), kOwned)
      .def_prop_ro("max", per_channel(&ChannelMoments::max), kOwned)
      .def_prop_ro("sum", per_channel(&ChannelMoments::sum), kOwned)
      .def_prop_ro("sum_sq", per_channel(&ChannelMoments::sum_sq), kOwned)
      .def("serialize", [](const ChannelMoments& self) { return to_bytes(self.serialize()); })
      .def_static(
          "deserialize",
          [](const nb::bytes& data) {
            const auto [bytes, size] = from_bytes(data);
            return ChannelMoments::deserialize(bytes, size);
          },
          "data"_a);
}

}  // namespace layerscope::bindings
