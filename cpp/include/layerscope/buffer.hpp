// A read-only, strided, typed view of someone else's memory, and the iteration every kernel
// shares: the buffer is walked as "runs" (1-d strided stretches along its innermost dimension),
// so any layout — contiguous, transposed, sliced with a step — is read in place, never copied.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "layerscope/detail/half.hpp"

namespace layerscope {

/// The floating-point element types the engine reads.
enum class DType : std::uint8_t { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

/// Bytes per element of `dtype`.
constexpr std::size_t itemsize(DType dtype) noexcept {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Float16:
    case DType::BFloat16: return 2;
  }
  return 0;
}

/// The name numpy / torch users know the dtype by.
inline const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "unknown";
}

/// Storage type of one element of `D`, and its load as a float or double.
template <DType D> struct Element;
template <> struct Element<DType::Float32> {
  using storage = float;
  static float load(const float* p) noexcept { return *p; }
};
template <> struct Element<DType::Float64> {
  using storage = double;
  static double load(const double* p) noexcept { return *p; }
};
template <> struct Element<DType::Float16> {
  using storage = std::uint16_t;
  static float load(const std::uint16_t* p) noexcept { return detail::half_to_float(*p); }
};
template <> struct Element<DType::BFloat16> {
  using storage = std::uint16_t;
  static float load(const std::uint16_t* p) noexcept { return detail::bfloat16_to_float(*p); }
};

/// Calls f(std::integral_constant<DType, D>{}) for the runtime `dtype`, so a kernel is written
/// once as a template and instantiated for every element type.
template <class F> decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float64: return f(std::integral_constant<DType, DType::Float64>{});
    case DType::Float16: return f(std::integral_constant<DType, DType::Float16>{});
    case DType::BFloat16: return f(std::integral_constant<DType, DType::BFloat16>{});
    case DType::Float32: break;
  }
  return f(std::integral_constant<DType, DType::Float32>{});
}

/// Most dimensions a view may have (torch allows 64; real activations have at most 6).
inline constexpr int kMaxDims = 16;

/// A strided N-d view. Strides count elements, not bytes, and may be zero or negative.
/// An optional channel axis marks the dimension whose index is a unit (feature, channel).
struct BufferView {
  const void* data = nullptr;
  DType dtype = DType::Float32;
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> shape{};
  std::array<std::int64_t, kMaxDims> strides{};
  int channel_axis = -1;  ///< -1: no channel axis, the whole buffer is one channel

  /// Number of elements (1 for a 0-d view, 0 if any dimension is 0).
  std::int64_t size() const noexcept {
    std::int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
  /// Number of channels: the length of the channel axis, or 1 without one.
  std::int64_t channels() const noexcept { return channel_axis < 0 ? 1 : shape[channel_axis]; }
};

/// Passed as `channel_axis` to make_view for a view without channels.
inline constexpr int kNoChannelAxis = -1000;

/// Builds a view, checking it. `channel_axis` may count from the end (as in numpy), or be
/// kNoChannelAxis. Throws std::invalid_argument for more than kMaxDims dimensions, a negative
/// extent, mismatched shape/strides, or a channel axis out of range.
inline BufferView make_view(const void* data, DType dtype, const std::vector<std::int64_t>& shape,
                            const std::vector<std::int64_t>& strides,
                            int channel_axis = kNoChannelAxis) {
  if (shape.size() != strides.size())
    throw std::invalid_argument("layerscope: shape and strides differ in length");
  if (shape.size() > static_cast<std::size_t>(kMaxDims))
    throw std::invalid_argument("layerscope: arrays of at most " + std::to_string(kMaxDims) +
                                " dimensions are accepted, got " + std::to_string(shape.size()));
  BufferView v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < v.ndim; ++d) {
    if (shape[d] < 0) throw std::invalid_argument("layerscope: negative extent in shape");
    v.shape[d] = shape[d];
    v.strides[d] = strides[d];
  }
  if (channel_axis != kNoChannelAxis) {
    const int axis = channel_axis < 0 ? channel_axis + v.ndim : channel_axis;
    if (axis < 0 || axis >= v.ndim)
      throw std::invalid_argument("layerscope: channel_axis " + std::to_string(channel_axis) +
                                  " is out of range for an array of " + std::to_string(v.ndim) +
                                  " dimensions");
    v.channel_axis = axis;
  }
  return v;
}

/// A contiguous 1-d view of n elements.
template <class T>
BufferView contiguous_view(const T* data, std::int64_t n, DType dtype) {
  return make_view(data, dtype, {n}, {1});
}

/// A contiguous rows × channels view (row-major) with the channel axis last.
template <class T>
BufferView matrix_view(const T* data, std::int64_t rows, std::int64_t channels, DType dtype) {
  return make_view(data, dtype, {rows, channels}, {channels, 1}, 1);
}

/// A view with its broadcast dimensions cut away, and how often each of its elements stands in
/// the original view.
struct DistinctView {
  BufferView view;          ///< the original with every repeating dimension cut to extent 1
  std::int64_t repeat = 1;  ///< the product of the cut extents
};

/// Cuts to extent 1 every dimension of stride 0 and extent > 1 other than the channel axis: its
/// elements are the same memory read again (torch's expand, numpy's broadcast_to). Statistics
/// of such a view follow from those of the distinct elements, each counted `repeat` times, so a
/// broadcast view of 2^48 elements is read in the time of its memory.
inline DistinctView distinct_elements(const BufferView& view) noexcept {
  DistinctView result{view, 1};
  for (int d = 0; d < view.ndim; ++d) {
    if (view.strides[d] != 0 || view.shape[d] <= 1 || d == view.channel_axis) continue;
    result.repeat *= view.shape[d];
    result.view.shape[d] = 1;
  }
  return result;
}

/// One 1-d strided stretch of a view: `length` elements `stride` elements apart. Within a run
/// the channel is fixed (`channel` >= 0), or, when the channel axis is the innermost dimension,
/// element i of the run belongs to channel i (`channel` == kChannelPerElement).
struct Run {
  static constexpr std::int64_t kChannelPerElement = -1;
  const unsigned char* data;
  std::int64_t length;
  std::int64_t stride;
  std::int64_t channel;
};

/// How a view decomposes into runs: size-1 dimensions dropped and neighbours merged where
/// their strides allow it, so a contiguous tensor is a single run (or one run per channel
/// stretch). Built once per kernel call.
class RunPlan {
 public:
  explicit RunPlan(const BufferView& view) : base_(static_cast<const unsigned char*>(view.data)) {
    bytes_ = static_cast<std::int64_t>(itemsize(view.dtype));
    // Keep non-trivial dimensions (and the channel axis even when its extent is 1).
    for (int d = 0; d < view.ndim; ++d) {
      if (view.shape[d] == 0) empty_ = true;
      if (view.shape[d] == 1 && d != view.channel_axis) continue;
      const bool is_channel = d == view.channel_axis;
      if (ndim_ > 0 && !is_channel && channel_ != ndim_ - 1 &&
          strides_[ndim_ - 1] == view.strides[d] * view.shape[d]) {
        // Merge into the previous (outer) dimension: same memory order, one longer dimension.
        shape_[ndim_ - 1] *= view.shape[d];
        strides_[ndim_ - 1] = view.strides[d];
        continue;
      }
      if (is_channel) channel_ = ndim_;
      shape_[ndim_] = view.shape[d];
      strides_[ndim_] = view.strides[d];
      ++ndim_;
    }
    if (ndim_ == 0) {  // a 0-d or all-ones view is one element
      shape_[0] = 1;
      strides_[0] = 1;
      ndim_ = 1;
    }
    run_length_ = shape_[ndim_ - 1];
    run_stride_ = strides_[ndim_ - 1];
    run_count_ = 1;
    for (int d = 0; d < ndim_ - 1; ++d) run_count_ *= shape_[d];
    if (empty_) run_count_ = 0;
  }

  std::int64_t run_count() const noexcept { return run_count_; }
  std::int64_t run_length() const noexcept { return run_length_; }
  std::int64_t run_stride() const noexcept { return run_stride_; }
  bool channel_innermost() const noexcept { return channel_ == ndim_ - 1; }

  /// Calls f(Run) for runs [begin, end) in memory-walk order.
  template <class F> void for_each_run(std::int64_t begin, std::int64_t end, F&& f) const {
    if (begin >= end) return;
    // Decompose `begin` into an index per outer dimension, then advance like an odometer.
    std::array<std::int64_t, kMaxDims> index{};
    std::int64_t offset = 0;
    std::int64_t rest = begin;
    for (int d = ndim_ - 2; d >= 0; --d) {
      index[d] = rest % shape_[d];
      rest /= shape_[d];
      offset += index[d] * strides_[d];
    }
    for (std::int64_t r = begin; r < end; ++r) {
      const std::int64_t channel =
          channel_innermost() ? Run::kChannelPerElement : (channel_ < 0 ? 0 : index[channel_]);
      f(Run{base_ + offset * bytes_, run_length_, run_stride_, channel});
      for (int d = ndim_ - 2; d >= 0; --d) {
        offset += strides_[d];
        if (++index[d] < shape_[d]) break;
        offset -= strides_[d] * shape_[d];
        index[d] = 0;
      }
    }
  }
  template <class F> void for_each_run(F&& f) const {
    for_each_run(0, run_count_, std::forward<F>(f));
  }

 private:
  const unsigned char* base_;
  std::int64_t bytes_ = 4;
  int ndim_ = 0;
  int channel_ = -1;
  bool empty_ = false;
  std::array<std::int64_t, kMaxDims> shape_{};
  std::array<std::int64_t, kMaxDims> strides_{};
  std::int64_t run_length_ = 0;
  std::int64_t run_stride_ = 1;
  std::int64_t run_count_ = 0;
};

/// Calls f(const double* values, std::int64_t n) over every element of `view`, in memory-walk
/// order, converted to double in chunks of at most 1024 (float64 runs with unit stride are
/// passed through without a copy). For consumers that need values, not channels: histograms,
/// sketches, scalar moments.
template <class F> void for_each_chunk(const BufferView& view, F&& f) {
  constexpr std::int64_t kChunk = 1024;
  const RunPlan plan(view);
  visit_dtype(view.dtype, [&](auto tag) {
    constexpr DType D = decltype(tag)::value;
    using E = Element<D>;
    using S = typename E::storage;
    double chunk[kChunk];
    plan.for_each_run([&](const Run& run) {
      const S* p = reinterpret_cast<const S*>(run.data);
      if constexpr (D == DType::Float64) {
        if (run.stride == 1) {
          f(p, run.length);
          return;
        }
      }
      for (std::int64_t start = 0; start < run.length; start += kChunk) {
        const std::int64_t n = std::min(kChunk, run.length - start);
        const S* q = p + start * run.stride;
        for (std::int64_t i = 0; i < n; ++i) chunk[i] = static_cast<double>(E::load(q + i * run.stride));
        f(static_cast<const double*>(chunk), n);
      }
    });
  });
}

}  // namespace layerscope
