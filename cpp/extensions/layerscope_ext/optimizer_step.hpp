// Not part of layerscope::core (never installed): a kernel for the Python package's optimizer
// gatherer, specific to Adam's state, built from the core's block statistics; bound by
// bind_optimizer_step.cpp.
//
// StepSummary: what an optimizer step did to one float32 parameter, read in a single pass over
// the parameter, its copy from before the step and the optimizer's state buffers: the update's
// Summary and both norms of the update ratio, a Summary of each state buffer, and for Adam the
// effective step sizes lr / (sqrt(v / correction) + eps) at an evenly strided sample, the
// extremes of v and how many elements have v below a level. summarize_step() keeps no state.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/parallel_for.hpp"
#include "layerscope/detail/summary_simd.hpp"
#include "layerscope/summary.hpp"

namespace layerscope::ext {

/// Adam's second moment and the scalars of its effective step size.
struct AdamStep {
  /// v: exp_avg_sq, or max_exp_avg_sq under amsgrad; StepInputs::size contiguous values.
  const float* second = nullptr;
  double correction = 1.0;  ///< 1 - beta2^step; must be > 0
  double eps = 0.0;         ///< Adam's eps
  double lr = 0.0;          ///< the learning rate
  /// StepSummary::second_below counts v < level (eps² · correction: sqrt(v̂) < eps).
  double level = 0.0;
  /// Step sizes are taken at v[0], v[stride], v[2 stride]...; must be >= 1.
  std::int64_t stride = 1;
};

/// The buffers of one parameter, all contiguous float32 of `size` elements.
struct StepInputs {
  std::int64_t size = 0;
  const float* after = nullptr;   ///< the parameter after the step; null: no update read
  const float* before = nullptr;  ///< its copy from before the step; null: no update read
  std::vector<const float*> states;  ///< state buffers summarized one by one (not Adam's v)
  std::optional<AdamStep> adam;      ///< Adam's v and scalars, when its step sizes are read
  /// At most this many threads read a large parameter (the caller's included); 0: as many as
  /// the hardware has. The Python package passes torch.get_num_threads().
  unsigned max_threads = 0;
  /// Threads lent for the split (see ThreadTeam); none: threads are started for the call.
  ThreadTeam team{};
};

/// What summarize_step() read. Summaries follow summarize()'s conventions (NaN and ±Inf counted
/// and left out of the other statistics); their per-channel vectors are empty.
struct StepSummary {
  /// Δw = after - before, each difference rounded to float32 as a float32 subtraction does;
  /// size 0 when no update was read.
  Summary update;
  /// ‖Δw‖ and ‖before‖ over every element, as a plain norm: NaN when an element is NaN, else
  /// +Inf when one is infinite. NaN when no update was read.
  double update_norm = std::numeric_limits<double>::quiet_NaN();
  double before_norm = std::numeric_limits<double>::quiet_NaN();
  std::vector<Summary> states;  ///< one per StepInputs::states, in order
  Summary second;               ///< Adam's v (size 0 without AdamStep)
  /// Smallest and largest v, ±Inf included and NaN left out; both NaN when every v is NaN.
  double second_smallest = std::numeric_limits<double>::quiet_NaN();
  double second_largest = std::numeric_limits<double>::quiet_NaN();
  std::int64_t second_below = 0;  ///< elements with v < level (NaN never counts)
  /// lr / (sqrt(v / correction) + eps) at v[0], v[stride]..., in float32 operations (as torch
  /// computes it on a float32 tensor); NaN where v is NaN or negative.
  std::vector<float> step_sizes;
};

namespace step_detail {

using detail::ActiveTest;
using detail::add_block;
using detail::block_stats;
using detail::BlockStats;
using detail::kSummaryBlock;
using detail::round_down;

/// A plain norm from a Summary of the same values: NaN and Inf propagate as in sqrt(sum x²).
inline double plain_norm(const Summary& s) {
  if (s.nan > 0) return std::numeric_limits<double>::quiet_NaN();
  if (s.pos_inf + s.neg_inf > 0) return std::numeric_limits<double>::infinity();
  return std::sqrt(s.sum_sq);
}

/// Sum of x[0, n)², n <= kSummaryBlock: float lanes of 8 values each go into double, as in
/// summarize() (relative error below 5e-7); a block whose float squares overflow, or that holds
/// NaN or Inf, is added again in double, so that NaN and Inf propagate as in a plain norm.
inline double sum_of_squares(const float* x, int n) {
  constexpr int kLanes = 16, kDepth = 8;
  double sum = 0.0;
  int i = 0;
  for (; i + kLanes * kDepth <= n; i += kLanes * kDepth) {
    float lanes[kLanes] = {};
    for (int d = 0; d < kDepth; ++d)
      for (int j = 0; j < kLanes; ++j) lanes[j] += x[i + d * kLanes + j] * x[i + d * kLanes + j];
    for (float lane : lanes) sum += lane;
  }
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  if (std::isfinite(sum)) return sum;
  sum = 0.0;
  for (i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

/// One worker's share of summarize_step(): blocks [begin, end) of kSummaryBlock elements.
/// Step sizes go to `sizes` (shared by the workers: each writes the elements of its blocks).
inline void summarize_step_blocks(const StepInputs& in, std::int64_t begin, std::int64_t end,
                                  bool wide, StepSummary& out, double& before_sq, float* sizes) {
  const ActiveTest<float> any{0.0f, true, wide};
  ActiveTest<float> at_or_above{0.0f, false, wide};  // counts v >= level
  if (in.adam)
    at_or_above.limit = round_down<float>(
        std::nextafter(in.adam->level, -std::numeric_limits<double>::infinity()));
  float delta[kSummaryBlock];
  const bool update = in.after != nullptr && in.before != nullptr;
  for (std::int64_t block = begin; block < end; ++block) {
    const std::int64_t start = block * kSummaryBlock;
    const int n = static_cast<int>(std::min<std::int64_t>(kSummaryBlock, in.size - start));
    if (update) {
      const float* a = in.after + start;
      const float* b = in.before + start;
      for (int i = 0; i < n; ++i) delta[i] = a[i] - b[i];
      before_sq += sum_of_squares(b, n);
      add_block(out.update, block_stats(delta, n, any), n);
    }
    for (std::size_t k = 0; k < in.states.size(); ++k)
      add_block(out.states[k], block_stats(in.states[k] + start, n, any), n);
    if (!in.adam) continue;
    const AdamStep& adam = *in.adam;
    const float* v = adam.second + start;
    const BlockStats b = block_stats(v, n, at_or_above);
    add_block(out.second, b, n);
    out.second_below += n - b.nan - b.active;
    // Sampled elements of this block: the multiples of stride in [start, start + n). Float
    // operations in the order of torch's ((v / correction).sqrt() + eps).reciprocal() * lr.
    const float correction = static_cast<float>(adam.correction);
    const float eps = static_cast<float>(adam.eps), lr = static_cast<float>(adam.lr);
    std::int64_t k = (start + adam.stride - 1) / adam.stride;
    for (std::int64_t i = k * adam.stride; i < start + n; i += adam.stride, ++k)
      sizes[k] = 1.0f / (std::sqrt(adam.second[i] / correction) + eps) * lr;
  }
}

}  // namespace step_detail

/// Reads every buffer of `in` once, block by block; large parameters (from about a million
/// elements) are split among at most in.max_threads threads. Throws std::invalid_argument for
/// a negative size, only one of after/before, a null state buffer, or an AdamStep with a null
/// buffer, a stride below 1 or a correction that is not > 0.
inline StepSummary summarize_step(const StepInputs& in) {
  if (in.size < 0) throw std::invalid_argument("layerscope: size must be >= 0");
  if ((in.after == nullptr) != (in.before == nullptr))
    throw std::invalid_argument("layerscope: the update needs both after and before");
  for (const float* state : in.states)
    if (state == nullptr) throw std::invalid_argument("layerscope: a state buffer is null");
  if (in.adam) {
    if (in.adam->second == nullptr)
      throw std::invalid_argument("layerscope: Adam's second moment is null");
    if (in.adam->stride < 1)
      throw std::invalid_argument("layerscope: stride must be >= 1, got " +
                                  std::to_string(in.adam->stride));
    if (!(in.adam->correction > 0.0))
      throw std::invalid_argument("layerscope: correction must be > 0");
  }
  const std::int64_t blocks = (in.size + detail::kSummaryBlock - 1) / detail::kSummaryBlock;
  const unsigned workers =
      detail::split_workers(in.size, blocks, detail::kSummaryParallelMin, in.max_threads, in.team);
  const bool wide = detail::cpu_has_avx2_fma();
  StepSummary empty;
  empty.states.resize(in.states.size());
  std::vector<StepSummary> partial(workers, empty);
  std::vector<double> before_sq(workers, 0.0);
  std::vector<float> sizes;
  if (in.adam) sizes.resize(static_cast<std::size_t>((in.size + in.adam->stride - 1) / in.adam->stride));
  detail::parallel_for(
      blocks, workers,
      [&](unsigned w, std::int64_t begin, std::int64_t end) {
        step_detail::summarize_step_blocks(in, begin, end, wide, partial[w], before_sq[w],
                                           sizes.data());
      },
      in.team);
  StepSummary result = std::move(partial[0]);
  for (unsigned w = 1; w < workers; ++w) {
    merge(result.update, partial[w].update);
    before_sq[0] += before_sq[w];
    for (std::size_t k = 0; k < result.states.size(); ++k)
      merge(result.states[k], partial[w].states[k]);
    merge(result.second, partial[w].second);
    result.second_below += partial[w].second_below;
  }
  for (Summary* s : {&result.update, &result.second}) s->l2 = std::sqrt(s->sum_sq);
  for (Summary& s : result.states) s.l2 = std::sqrt(s.sum_sq);
  if (in.after != nullptr) {
    result.update_norm = step_detail::plain_norm(result.update);
    result.before_norm = std::sqrt(before_sq[0]);
  }
  if (in.adam) {
    const Summary& v = result.second;
    constexpr double inf = std::numeric_limits<double>::infinity();
    // Summary's min and max leave ±Inf out; here they count as values.
    result.second_largest = v.pos_inf > 0 ? inf : v.max;
    result.second_smallest = v.neg_inf > 0 ? -inf : (v.count > 0 ? v.min : result.second_largest);
    result.step_sizes = std::move(sizes);
  }
  return result;
}

}  // namespace layerscope::ext
