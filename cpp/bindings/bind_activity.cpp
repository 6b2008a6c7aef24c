// _core.ActivityTracker: layerscope/activity.hpp for Python. Per-unit flags arrive as a 1-d
// integer or bool array read in place; results leave as numpy arrays.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/activity.hpp"

namespace layerscope::bindings {

namespace {

constexpr const char* kAccepted = "int8, int16, int32, int64, uint8, uint16, uint32, uint64 or bool";

// Calls f(static_cast<const T*>(nullptr)) with T the C++ type of `dt`, or throws TypeError.
template <class F> void visit_flag_dtype(const nb::dlpack::dtype& dt, F&& f) {
  const auto code = static_cast<nb::dlpack::dtype_code>(dt.code);
  if (dt.lanes == 1 && code == nb::dlpack::dtype_code::Bool && dt.bits == 8)
    return f(static_cast<const bool*>(nullptr));
  if (dt.lanes == 1 && code == nb::dlpack::dtype_code::Int) {
    switch (dt.bits) {
      case 8: return f(static_cast<const std::int8_t*>(nullptr));
      case 16: return f(static_cast<const std::int16_t*>(nullptr));
      case 32: return f(static_cast<const std::int32_t*>(nullptr));
      case 64: return f(static_cast<const std::int64_t*>(nullptr));
    }
  }
  if (dt.lanes == 1 && code == nb::dlpack::dtype_code::UInt) {
    switch (dt.bits) {
      case 8: return f(static_cast<const std::uint8_t*>(nullptr));
      case 16: return f(static_cast<const std::uint16_t*>(nullptr));
      case 32: return f(static_cast<const std::uint32_t*>(nullptr));
      case 64: return f(static_cast<const std::uint64_t*>(nullptr));
    }
  }
  throw nb::type_error((std::string("ActivityTracker.update: expected an array of per-unit "
                                    "counts or flags (") +
                        kAccepted + "), got " + describe_dtype(dt))
                           .c_str());
}

void update(ActivityTracker& t, std::int64_t step, const AnyArray& active) {
  if (active.device_type() != nb::device::cpu::value)
    throw nb::type_error("ActivityTracker.update: the array is not in CPU memory");
  if (active.ndim() != 1)
    throw nb::value_error(("ActivityTracker.update: expected a 1-d array of " +
                           std::to_string(t.units()) + " values, got " +
                           std::to_string(active.ndim()) + " dimensions")
                              .c_str());
  if (active.shape(0) != t.units())
    throw nb::value_error(("ActivityTracker.update: got " + std::to_string(active.shape(0)) +
                           " values for " + std::to_string(t.units()) + " units")
                              .c_str());
  visit_flag_dtype(active.dtype(), [&](auto* type) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(type)>>;
    const auto* data = static_cast<const T*>(active.data());
    const std::size_t length = active.shape(0);
    const std::ptrdiff_t stride = active.stride(0);
    nb::gil_scoped_release release;
    t.update(step, data, length, stride);
  });
}

// dead() flags are 0/1 bytes, which is what a numpy bool array holds.
nb::ndarray<nb::numpy, bool, nb::ndim<1>> bool_array(std::vector<std::uint8_t>&& flags) {
  auto* owned = new std::vector<std::uint8_t>(std::move(flags));
  nb::capsule owner(owned, [](void* p) noexcept {
    delete static_cast<std::vector<std::uint8_t>*>(p);
  });
  return nb::ndarray<nb::numpy, bool, nb::ndim<1>>(reinterpret_cast<bool*>(owned->data()),
                                                   {owned->size()}, owner);
}

}  // namespace

void bind_activity(nb::module_& m) {
  nb::class_<ActivityTracker>(m, "ActivityTracker",
                              "Per-unit activity over a window of observed steps; dead units.")
      .def(nb::init<std::int64_t, std::int64_t>(), nb::arg("units"), nb::arg("window"))
      .def_prop_ro("units", &ActivityTracker::units)
      .def_prop_ro("window", &ActivityTracker::window)
      .def("update", &update, nb::arg("step"), nb::arg("active"))
      .def("merge", &ActivityTracker::merge, nb::arg("other"))
      .def("steps_observed", &ActivityTracker::steps_observed)
      .def("last_step", &ActivityTracker::last_step)
      .def("window_full", &ActivityTracker::window_full)
      .def("last_active",
           [](const ActivityTracker& t) {
             return to_numpy(std::vector<std::int64_t>(t.last_active()));
           })
      .def("active_steps",
           [](const ActivityTracker& t) {
             std::vector<std::int64_t> counts;
             {
               nb::gil_scoped_release release;
               counts = t.active_steps();
             }
             return to_numpy(std::move(counts));
           })
      .def("dead",
           [](const ActivityTracker& t) {
             std::vector<std::uint8_t> flags;
             {
               nb::gil_scoped_release release;
               flags = t.dead();
             }
             return bool_array(std::move(flags));
           })
      .def("dead_count", &ActivityTracker::dead_count)
      .def("dead_fraction", &ActivityTracker::dead_fraction)
      .def("serialize", [](const ActivityTracker& t) { return to_bytes(t.serialize()); })
      .def_static(
          "deserialize",
          [](const nb::bytes& bytes) {
            const auto [data, size] = from_bytes(bytes);
            return ActivityTracker::deserialize(data, size);
          },
          nb::arg("data"));
}

}  // namespace layerscope::bindings
