// What every bind_<concept>.cpp shares: turning a Python array into a checked BufferView with
// errors a user can act on, bytes in and out, and std::vector results handed to numpy.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/thread_team.hpp"
#include "layerscope_ext/openmp_team.hpp"

namespace layerscope::bindings {

namespace nb = nanobind;

/// Any read-only array: numpy, torch (through DLPack), anything with the buffer protocol.
using AnyArray = nb::ndarray<nb::ro>;

inline std::string describe_dtype(const nb::dlpack::dtype& dt) {
  const std::string bits = std::to_string(dt.bits);
  switch (static_cast<nb::dlpack::dtype_code>(dt.code)) {
    case nb::dlpack::dtype_code::Int: return "int" + bits;
    case nb::dlpack::dtype_code::UInt: return "uint" + bits;
    case nb::dlpack::dtype_code::Float: return "float" + bits;
    case nb::dlpack::dtype_code::Bfloat: return "bfloat" + bits;
    case nb::dlpack::dtype_code::Complex: return "complex" + bits;
    case nb::dlpack::dtype_code::Bool: return "bool";
    default: return "an unsupported dtype (code " + std::to_string(dt.code) + ", " + bits + " bits)";
  }
}

/// Checks that `array` lives on the CPU and holds float32/float64/float16/bfloat16, and views it
/// without copying. `caller` names the API function in error messages. Raises TypeError for a
/// wrong dtype or device and ValueError for a bad channel axis.
inline BufferView view_of(const AnyArray& array, std::optional<int> channel_axis,
                          const char* caller) {
  if (array.device_type() != nb::device::cpu::value)
    throw nb::type_error((std::string(caller) +
                          ": the array is not in CPU memory; layerscope.stats reads CPU buffers "
                          "(call .cpu() first; the Scope reduces CUDA tensors on the device)")
                             .c_str());
  const nb::dlpack::dtype dt = array.dtype();
  DType dtype;
  if (dt.lanes == 1 && dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) &&
      dt.bits == 32) {
    dtype = DType::Float32;
  } else if (dt.lanes == 1 && dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) &&
             dt.bits == 64) {
    dtype = DType::Float64;
  } else if (dt.lanes == 1 && dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) &&
             dt.bits == 16) {
    dtype = DType::Float16;
  } else if (dt.lanes == 1 &&
             dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bfloat) &&
             dt.bits == 16) {
    dtype = DType::BFloat16;
  } else {
    throw nb::type_error((std::string(caller) + ": expected a floating-point array (float32, "
                          "float64, float16 or bfloat16), got " + describe_dtype(dt))
                             .c_str());
  }
  std::vector<std::int64_t> shape(array.ndim()), strides(array.ndim());
  for (std::size_t d = 0; d < array.ndim(); ++d) {
    shape[d] = static_cast<std::int64_t>(array.shape(d));
    strides[d] = array.stride(d);
  }
  try {
    return make_view(array.data(), dtype, shape, strides,
                     channel_axis ? *channel_axis : kNoChannelAxis);
  } catch (const std::invalid_argument& e) {
    throw nb::value_error((std::string(caller) + ": " + e.what()).c_str());
  }
}

/// The kernels' thread cap from Python's max_threads: None gives 0 (the hardware's threads);
/// anything below 1 is a ValueError naming `caller`.
inline unsigned thread_limit(std::optional<int> max_threads, const char* caller) {
  if (!max_threads) return 0;
  if (*max_threads < 1)
    throw nb::value_error((std::string(caller) + ": max_threads must be >= 1 (or None for the "
                           "hardware's threads), got " + std::to_string(*max_threads))
                              .c_str());
  return static_cast<unsigned>(*max_threads);
}

/// layerscope._core.ThreadTeam: the OpenMP runtime a kernel call may borrow threads from.
struct LentTeam {
  ext::OpenMPRuntime runtime;
};

/// The ThreadTeam behind a kernel's `team` argument; no team when Python passed None.
inline ThreadTeam team_of(const LentTeam* team) {
  return team != nullptr ? ext::openmp_team(team->runtime) : ThreadTeam{};
}

/// A copy of serialized state as Python bytes.
inline nb::bytes to_bytes(const std::vector<std::uint8_t>& bytes) {
  return nb::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

/// Pointer and size of Python bytes, for deserialize().
inline std::pair<const std::uint8_t*, std::size_t> from_bytes(const nb::bytes& bytes) {
  return {reinterpret_cast<const std::uint8_t*>(bytes.c_str()), bytes.size()};
}

/// Hands a vector to numpy as a 1-d array that owns it (no copy).
template <class T> nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(owned->data(), {owned->size()}, owner);
}

}  // namespace layerscope::bindings
