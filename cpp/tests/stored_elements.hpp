// Test helpers shared by the kernels' oracles: values stored in any element type, and every
// element of a view read back by its multi-index (the slow, obviously right way).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/half.hpp"

namespace layerscope_tests {

namespace ls = layerscope;

// `values` stored in `dtype` (float16/bfloat16 rounded to nearest): raw bytes and a view.
struct Stored {
  std::vector<unsigned char> bytes;
  ls::DType dtype;
};

inline Stored store(const std::vector<float>& values, ls::DType dtype) {
  Stored s{{}, dtype};
  const std::size_t size = ls::itemsize(dtype);
  s.bytes.resize(values.size() * size);
  for (std::size_t i = 0; i < values.size(); ++i) {
    unsigned char* at = s.bytes.data() + i * size;
    switch (dtype) {
      case ls::DType::Float32: std::memcpy(at, &values[i], 4); break;
      case ls::DType::Float64: {
        const double d = values[i];
        std::memcpy(at, &d, 8);
        break;
      }
      case ls::DType::Float16: {
        const std::uint16_t h = ls::detail::float_to_half(values[i]);
        std::memcpy(at, &h, 2);
        break;
      }
      case ls::DType::BFloat16: {
        const std::uint16_t b = ls::detail::float_to_bfloat16(values[i]);
        std::memcpy(at, &b, 2);
        break;
      }
    }
  }
  return s;
}

// Calls f(double) with every element the view shows, by its multi-index, widened.
template <class F> void for_each_element(const ls::BufferView& v, F&& f) {
  std::vector<std::int64_t> index(static_cast<std::size_t>(v.ndim), 0);
  for (std::int64_t n = 0; n < v.size(); ++n) {
    std::int64_t offset = 0;
    for (int d = 0; d < v.ndim; ++d) offset += index[d] * v.strides[d];
    f(ls::visit_dtype(v.dtype, [&](auto tag) {
      using E = ls::Element<decltype(tag)::value>;
      return static_cast<double>(E::load(static_cast<const typename E::storage*>(v.data) + offset));
    }));
    for (int d = v.ndim - 1; d >= 0; --d) {
      if (++index[d] < v.shape[d]) break;
      index[d] = 0;
    }
  }
}

// Views that read the 12 x 35 elements of `s` out of their stored order: transposed, every
// third row, reversed (a negative stride) and broadcast (a zero stride).
inline std::vector<ls::BufferView> scrambled_views(const Stored& s) {
  const void* data = s.bytes.data();
  const ls::DType dtype = s.dtype;
  return {
      ls::make_view(data, dtype, {35, 12}, {1, 35}),
      ls::make_view(data, dtype, {4, 35}, {105, 1}),
      ls::make_view(static_cast<const unsigned char*>(data) + (12 * 35 - 1) * ls::itemsize(dtype),
                    dtype, {12 * 35}, {-1}),
      ls::make_view(data, dtype, {6, 35}, {0, 1}),
  };
}

}  // namespace layerscope_tests
