// Running moments: count, mean, variance (Welford / Chan), extrema and sums over a stream of
// buffers, for the whole stream (Moments) or per channel (ChannelMoments). Both merge exactly
// and serialize to versioned bytes, so ranks, workers and checkpoints can combine them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/moment_state.hpp"
#include "layerscope/serialize.hpp"

namespace layerscope {

/// Running moments of every finite value seen. NaN and +-Inf are skipped and counted in
/// nonfinite(); they never touch the other statistics. Everything accumulates in double.
///
/// Empty state (count() == 0): mean, variance, std, min and max are NaN; sum and sum_sq are 0.
/// Sums of finite float64 values near 1e308 can overflow to Inf; float32 / float16 / bfloat16
/// inputs cannot. Not thread-safe: one writer at a time.
class Moments {
 public:
  static constexpr std::uint8_t kVersion = 1;

  Moments() = default;

  /// Adds one value; NaN / +-Inf only raise nonfinite().
  void update(double value) noexcept { state_.add(value); }

  /// Adds every element of `view` (any layout, any DType; a channel axis is ignored). Works
  /// block by block: each block's count, mean and M2 in two passes, then one Chan merge, so
  /// there is no division per element. An empty view changes nothing.
  void update(const BufferView& view) {
    detail::MomentState total;
    for_each_chunk(view, [&](const double* values, std::int64_t n) {
      total.fold(detail::chunk_moments(values, n));
    });
    state_.fold(total);
  }

  /// Folds in a precomputed summary of `count` finite values (mean, M2 = sum of squared
  /// deviations, extrema, sums) plus `nonfinite` skipped values, exactly as merge() would.
  /// With count == 0 the other fields must be those of the empty state (0, 0, +Inf, -Inf, 0,
  /// 0). Throws std::invalid_argument for a negative count, non-finite or crossed extrema, or
  /// a negative M2 / sum of squares.
  void update(std::int64_t count, double mean, double m2, double min, double max, double sum,
              double sum_sq, std::int64_t nonfinite = 0) {
    detail::MomentState s;
    s.count = count;
    s.mean = mean;
    s.m2 = m2;
    s.min = min;
    s.max = max;
    s.sum = sum;
    s.sum_sq = sum_sq;
    s.nonfinite = nonfinite;
    if (const char* problem = detail::state_problem(s))
      throw std::invalid_argument(std::string("Moments.update: not a valid summary: ") + problem);
    state_.fold(s);
  }

  /// Folds `other` in; afterwards *this describes both streams. Merging an empty Moments is
  /// the identity. Never throws.
  void merge(const Moments& other) noexcept { state_.fold(other.state_); }

  /// Number of finite values seen.
  std::int64_t count() const noexcept { return state_.count; }
  /// Number of NaN / +-Inf values skipped.
  std::int64_t nonfinite() const noexcept { return state_.nonfinite; }
  /// Arithmetic mean; NaN when empty.
  double mean() const noexcept { return state_.count ? state_.mean : kNaN; }
  /// Population variance M2 / n; NaN when empty.
  double variance() const noexcept {
    return state_.count ? state_.m2 / static_cast<double>(state_.count) : kNaN;
  }
  /// Sample variance M2 / (n - 1); NaN for fewer than two values.
  double sample_variance() const noexcept {
    return state_.count > 1 ? state_.m2 / static_cast<double>(state_.count - 1) : kNaN;
  }
  /// Population standard deviation sqrt(variance()); NaN when empty.
  double std() const noexcept { return std::sqrt(variance()); }
  /// Sum of squared deviations from the mean; 0 when empty.
  double m2() const noexcept { return state_.m2; }
  /// Smallest / largest finite value; NaN when empty.
  double min() const noexcept { return state_.count ? state_.min : kNaN; }
  double max() const noexcept { return state_.count ? state_.max : kNaN; }
  /// Sum and sum of squares of the finite values; 0 when empty.
  double sum() const noexcept { return state_.sum; }
  double sum_sq() const noexcept { return state_.sum_sq; }

  /// Version-1 bytes: header, then count, mean, M2, min, max, sum, sum_sq, nonfinite.
  std::vector<std::uint8_t> serialize() const {
    ByteWriter w(StateType::Moments, kVersion);
    detail::write_state(w, state_);
    return w.take();
  }

  /// Inverse of serialize(). Throws SerializationError (a std::invalid_argument) for bytes that
  /// are truncated, of another type or version, or that break an invariant of the state.
  static Moments deserialize(const std::uint8_t* data, std::size_t size) {
    ByteReader r(data, size, StateType::Moments, kVersion);
    Moments m;
    m.state_ = detail::read_state(r);
    r.finish();
    return m;
  }

 private:
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  detail::MomentState state_;
};

/// Moments per channel (output feature, conv channel), the number of channels fixed at
/// construction. Each channel behaves as a Moments: non-finite values are skipped and counted,
/// and an empty channel reports NaN for mean, variance, std, min and max. Not thread-safe.
class ChannelMoments {
 public:
  static constexpr std::uint8_t kVersion = 1;

  /// Throws std::invalid_argument unless channels > 0.
  explicit ChannelMoments(std::int64_t channels) {
    if (channels <= 0)
      throw std::invalid_argument("ChannelMoments: channels must be a positive integer, got " +
                                  std::to_string(channels));
    states_.resize(static_cast<std::size_t>(channels));
  }

  std::int64_t channels() const noexcept { return static_cast<std::int64_t>(states_.size()); }

  /// Adds every element of `view` to the channel its index on the view's channel axis names.
  /// Throws std::invalid_argument when the view has no channel axis or when that axis's length
  /// differs from channels(). An empty view (with a matching channel axis) changes nothing.
  void update(const BufferView& view) {
    if (view.channel_axis < 0)
      throw std::invalid_argument(
          "ChannelMoments.update: the array has no channel axis; say which axis holds the " +
          std::to_string(channels()) + " channels");
    if (view.channels() != channels())
      throw std::invalid_argument("ChannelMoments.update: channel axis " +
                                  std::to_string(view.channel_axis) + " has length " +
                                  std::to_string(view.channels()) + ", expected " +
                                  std::to_string(channels()) + " (the channels it was built with)");
    const RunPlan plan(view);
    visit_dtype(view.dtype, [&](auto tag) {
      using E = Element<decltype(tag)::value>;
      if (plan.channel_innermost())
        update_rows<E>(plan);
      else
        update_runs<E>(plan);
    });
  }

  /// Folds `other` in, channel by channel. Throws std::invalid_argument when the channel
  /// counts differ (and then changes nothing).
  void merge(const ChannelMoments& other) {
    if (other.channels() != channels())
      throw std::invalid_argument("ChannelMoments.merge: cannot merge " +
                                  std::to_string(other.channels()) + " channels into " +
                                  std::to_string(channels()));
    for (std::size_t c = 0; c < states_.size(); ++c) states_[c].fold(other.states_[c]);
  }

  /// Per-channel statistics, one entry per channel; empty channels as in Moments.
  std::vector<std::int64_t> count() const { return field([](const auto& s) { return s.count; }); }
  std::vector<std::int64_t> nonfinite() const {
    return field([](const auto& s) { return s.nonfinite; });
  }
  std::vector<double> mean() const {
    return field([](const auto& s) { return s.count ? s.mean : kNaN; });
  }
  std::vector<double> variance() const {
    return field([](const auto& s) { return s.count ? s.m2 / double(s.count) : kNaN; });
  }
  std::vector<double> sample_variance() const {
    return field([](const auto& s) { return s.count > 1 ? s.m2 / double(s.count - 1) : kNaN; });
  }
  std::vector<double> std() const {
    return field([](const auto& s) { return s.count ? std::sqrt(s.m2 / double(s.count)) : kNaN; });
  }
  std::vector<double> m2() const { return field([](const auto& s) { return s.m2; }); }
  std::vector<double> min() const {
    return field([](const auto& s) { return s.count ? s.min : kNaN; });
  }
  std::vector<double> max() const {
    return field([](const auto& s) { return s.count ? s.max : kNaN; });
  }
  std::vector<double> sum() const { return field([](const auto& s) { return s.sum; }); }
  std::vector<double> sum_sq() const { return field([](const auto& s) { return s.sum_sq; }); }

  /// Version-1 bytes: header, channel count (u64), then each channel's eight Moments fields.
  std::vector<std::uint8_t> serialize() const {
    ByteWriter w(StateType::ChannelMoments, kVersion);
    w.write<std::uint64_t>(states_.size());
    for (const auto& s : states_) detail::write_state(w, s);
    return w.take();
  }

  /// Inverse of serialize(); throws SerializationError as Moments::deserialize does, and for a
  /// channel count of zero or one the bytes cannot hold.
  static ChannelMoments deserialize(const std::uint8_t* data, std::size_t size) {
    ByteReader r(data, size, StateType::ChannelMoments, kVersion);
    const auto channels = r.read<std::uint64_t>();
    constexpr std::size_t kStateBytes = 64;  // eight 8-byte fields
    check_payload(channels > 0, "zero channels");
    check_payload(channels <= (size - 14) / kStateBytes, "more channels than bytes");
    ChannelMoments m(static_cast<std::int64_t>(channels));
    for (auto& s : m.states_) s = detail::read_state(r);
    r.finish();
    return m;
  }

 private:
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

  using State = detail::MomentState;

  template <class F>
  auto field(F&& f) const -> std::vector<decltype(f(std::declval<const State&>()))> {
    std::vector<decltype(f(std::declval<const State&>()))> out(states_.size());
    for (std::size_t c = 0; c < states_.size(); ++c) out[c] = f(states_[c]);
    return out;
  }

  // Channel fixed per run (the channel axis is not innermost): each run is cut into blocks and
  // each block folded into its channel.
  template <class E> void update_runs(const RunPlan& plan) {
    using S = typename E::storage;
    plan.for_each_run([&](const Run& run) {
      const S* p = reinterpret_cast<const S*>(run.data);
      auto& state = states_[static_cast<std::size_t>(run.channel)];
      for (std::int64_t start = 0; start < run.length; start += detail::kMomentBlock) {
        const S* q = p + start * run.stride;
        const std::int64_t stride = run.stride;
        state.fold(detail::block_moments(
            std::min(detail::kMomentBlock, run.length - start),
            [q, stride](std::int64_t i) { return static_cast<double>(E::load(q + i * stride)); }));
      }
    });
  }

  // Channel innermost (rows x channels, the usual [batch, features] layout): a block of rows is
  // read twice per tile of channels — sums and extrema, then deviations from the block means —
  // and each channel's block is folded in with one Chan merge.
  template <class E> void update_rows(const RunPlan& plan) {
    using S = typename E::storage;
    const std::int64_t channels = this->channels();
    const std::int64_t tile = std::min<std::int64_t>(channels, 1024);
    const std::int64_t rows_per_block = std::max<std::int64_t>(1, 16384 / tile);
    std::vector<const S*> rows;
    std::int64_t stride = 1;
    std::vector<double> sum(tile), sum_sq(tile), lo(tile), hi(tile), mean(tile), m2(tile),
        drift(tile);
    std::vector<std::int64_t> finite(tile);
    for (std::int64_t r0 = 0; r0 < plan.run_count(); r0 += rows_per_block) {
      rows.clear();
      plan.for_each_run(r0, std::min(plan.run_count(), r0 + rows_per_block), [&](const Run& run) {
        rows.push_back(reinterpret_cast<const S*>(run.data));
        stride = run.stride;
      });
      const std::int64_t n_rows = static_cast<std::int64_t>(rows.size());
      for (std::int64_t c0 = 0; c0 < channels; c0 += tile) {
        const std::int64_t width = std::min(tile, channels - c0);
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(sum_sq.begin(), sum_sq.end(), 0.0);
        std::fill(lo.begin(), lo.end(), std::numeric_limits<double>::infinity());
        std::fill(hi.begin(), hi.end(), -std::numeric_limits<double>::infinity());
        std::fill(finite.begin(), finite.end(), 0);
        bool overflow = false;
        for (const S* row : rows) {
          const S* p = row + c0 * stride;
          for (std::int64_t j = 0; j < width; ++j) {
            const double x = static_cast<double>(E::load(p + j * stride));
            if (!std::isfinite(x)) continue;
            ++finite[j];
            sum[j] += x;
            sum_sq[j] += x * x;
            lo[j] = std::min(lo[j], x);
            hi[j] = std::max(hi[j], x);
          }
        }
        for (std::int64_t j = 0; j < width; ++j) {
          m2[j] = drift[j] = 0.0;
          mean[j] = finite[j] ? sum[j] / static_cast<double>(finite[j]) : 0.0;
          overflow = overflow || !std::isfinite(mean[j]);
        }
        if (overflow) {  // float64 near 1e308: fall back to Welford for this tile
          for (const S* row : rows) {
            const S* p = row + c0 * stride;
            for (std::int64_t j = 0; j < width; ++j)
              states_[static_cast<std::size_t>(c0 + j)].add(
                  static_cast<double>(E::load(p + j * stride)));
          }
          continue;
        }
        for (const S* row : rows) {
          const S* p = row + c0 * stride;
          for (std::int64_t j = 0; j < width; ++j) {
            const double x = static_cast<double>(E::load(p + j * stride));
            if (!std::isfinite(x)) continue;
            const double d = x - mean[j];
            m2[j] += d * d;
            drift[j] += d;
          }
        }
        for (std::int64_t j = 0; j < width; ++j) {
          detail::MomentState s;
          s.nonfinite = n_rows - finite[j];
          if (finite[j] > 0) {
            const double n = static_cast<double>(finite[j]);
            s.count = finite[j];
            const double residual = drift[j] / n;  // as in detail::block_moments
            s.mean = mean[j] + residual;
            s.m2 = std::max(m2[j] - drift[j] * residual, 0.0);
            s.min = lo[j];
            s.max = hi[j];
            s.sum = sum[j];
            s.sum_sq = sum_sq[j];
          }
          states_[static_cast<std::size_t>(c0 + j)].fold(s);
        }
      }
    }
  }

  std::vector<detail::MomentState> states_;
};

}  // namespace layerscope
