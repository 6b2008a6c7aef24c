// summarize_step() against summarize() of the same buffers and straightforward loops in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "layerscope/summary.hpp"
#include "layerscope_ext/optimizer_step.hpp"

namespace ls = layerscope;
namespace ext = layerscope::ext;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> normal(std::int64_t n, float mean, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, scale);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

ls::Summary reference(const std::vector<float>& x) {
  return ls::summarize(ls::make_view(x.data(), ls::DType::Float32,
                                     {static_cast<std::int64_t>(x.size())}, {1}));
}

void expect_same(const ls::Summary& got, const ls::Summary& want) {
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.zeros, want.zeros);
  EXPECT_EQ(got.nan, want.nan);
  EXPECT_EQ(got.pos_inf, want.pos_inf);
  EXPECT_EQ(got.neg_inf, want.neg_inf);
  EXPECT_DOUBLE_EQ(got.min, want.min);
  EXPECT_DOUBLE_EQ(got.max, want.max);
  const double scale = std::max(1.0, want.l1);
  EXPECT_NEAR(got.mean, want.mean, 1e-12 * scale);
  EXPECT_NEAR(got.m2, want.m2, 1e-9 * std::max(1.0, want.m2));
  EXPECT_NEAR(got.l1, want.l1, 1e-9 * scale);
  EXPECT_NEAR(got.l2, want.l2, 1e-9 * std::max(1.0, want.l2));
}

struct Case {
  std::vector<float> after, before, momentum, second;
};

Case make_case(std::int64_t n, unsigned seed) {
  Case c{normal(n, 0.1f, 1.0f, seed), {}, normal(n, 0.0f, 1e-2f, seed + 1),
         normal(n, 0.0f, 1e-3f, seed + 2)};
  const std::vector<float> step = normal(n, 0.0f, 1e-3f, seed + 3);
  c.before.resize(c.after.size());
  for (std::size_t i = 0; i < c.after.size(); ++i) {
    c.before[i] = c.after[i] - step[i];
    c.second[i] = c.second[i] * c.second[i];  // v >= 0, spread over decades
  }
  return c;
}

ext::StepSummary run(const Case& c, double level, std::int64_t stride) {
  ext::StepInputs in;
  in.size = static_cast<std::int64_t>(c.after.size());
  in.after = c.after.data();
  in.before = c.before.data();
  in.states = {c.momentum.data()};
  in.adam = ext::AdamStep{c.second.data(), 0.02, 1e-8, 1e-3, level, stride};
  return ext::summarize_step(in);
}

void check(const Case& c, double level, std::int64_t stride) {
  const ext::StepSummary got = run(c, level, stride);
  std::vector<float> delta(c.after.size());
  double before_sq = 0.0;
  for (std::size_t i = 0; i < delta.size(); ++i) {
    delta[i] = c.after[i] - c.before[i];
    before_sq += static_cast<double>(c.before[i]) * c.before[i];
  }
  expect_same(got.update, reference(delta));
  // summarize()'s documented precision: sums of squares of float32 within 1e-6 relative.
  if (std::isfinite(before_sq))
    EXPECT_NEAR(got.before_norm, std::sqrt(before_sq), 5e-7 * std::sqrt(before_sq));
  else
    EXPECT_EQ(got.before_norm, std::sqrt(before_sq));
  ASSERT_EQ(got.states.size(), 1u);
  expect_same(got.states[0], reference(c.momentum));
  expect_same(got.second, reference(c.second));
  std::int64_t below = 0;
  double lo = kInf, hi = -kInf;
  for (float v : c.second) {
    if (std::isnan(v)) continue;
    below += static_cast<double>(v) < level;
    lo = std::min<double>(lo, v);
    hi = std::max<double>(hi, v);
  }
  EXPECT_EQ(got.second_below, below);
  EXPECT_EQ(got.second_smallest, lo);
  EXPECT_EQ(got.second_largest, hi);
  const std::size_t sampled = (c.second.size() + stride - 1) / stride;
  ASSERT_EQ(got.step_sizes.size(), sampled);
  for (std::size_t k = 0; k < sampled; ++k) {
    const double v = c.second[k * stride];
    const double want = 1e-3 / (std::sqrt(v / 0.02) + 1e-8);  // float rounding apart
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got.step_sizes[k])) << k;
    else
      EXPECT_NEAR(got.step_sizes[k], want, 1e-6 * want) << k;
  }
}

}  // namespace

TEST(SummarizeStep, MatchesSummarizeAndLoopsOnSmallAndBlockEdgeSizes) {
  for (std::int64_t n : {1, 7, 4095, 4096, 4097, 20000}) {
    const Case c = make_case(n, static_cast<unsigned>(n));
    check(c, 1e-7, 1);
    check(c, 1e-7, 3);
    check(c, 1e-6, 4096);
  }
}

TEST(SummarizeStep, LargeParameterSplitAmongThreads) {
  const Case c = make_case(3 << 20, 11);  // above kSummaryParallelMin: several workers
  check(c, 2e-7, 193);
}

TEST(SummarizeStep, NonFiniteValuesAreCountedAndPropagateIntoTheNorms) {
  Case c = make_case(10000, 5);
  c.after[17] = kNaN;         // Δw NaN
  c.before[9000] = kInf;      // Δw -Inf, before Inf
  c.momentum[3] = -kInf;
  c.second[0] = kNaN;         // sampled: its step size is NaN
  c.second[4100] = kInf;      // largest v
  c.second[5] = -1.0f;        // negative v: NaN step size, counted below any level > -1
  check(c, 1e-7, 5);
  const ext::StepSummary got = run(c, 1e-7, 5);
  EXPECT_EQ(got.update.nan, 1);
  EXPECT_EQ(got.update.neg_inf, 1);
  EXPECT_TRUE(std::isnan(got.update_norm));
  EXPECT_EQ(got.before_norm, kInf);
  EXPECT_EQ(got.second_largest, kInf);
  EXPECT_EQ(got.second_smallest, -1.0);
  EXPECT_TRUE(std::isnan(got.step_sizes[0]));
  EXPECT_TRUE(std::isnan(got.step_sizes[1]));  // v[5] < 0
}

TEST(SummarizeStep, EveryNaNSecondMomentGivesNaNExtremesAndNothingBelow) {
  Case c = make_case(100, 3);
  for (float& v : c.second) v = kNaN;
  const ext::StepSummary got = run(c, 1.0, 1);
  EXPECT_TRUE(std::isnan(got.second_smallest));
  EXPECT_TRUE(std::isnan(got.second_largest));
  EXPECT_EQ(got.second_below, 0);
}

TEST(SummarizeStep, LevelBetweenTwoFloatsSplitsThemAsRealNumbers) {
  Case c = make_case(3, 1);
  c.second = {0.25f, 0.5f, 0.75f};
  EXPECT_EQ(run(c, 0.5, 1).second_below, 1);
  EXPECT_EQ(run(c, 0.5000000001, 1).second_below, 2);
}

TEST(SummarizeStep, PartsLeftOutAreEmptyAndBadInputsThrow) {
  const Case c = make_case(50, 2);
  ext::StepInputs in;
  in.size = 50;
  in.states = {c.momentum.data()};
  const ext::StepSummary got = ext::summarize_step(in);
  EXPECT_EQ(got.update.size, 0);
  EXPECT_TRUE(std::isnan(got.update_norm));
  EXPECT_EQ(got.second.size, 0);
  EXPECT_TRUE(got.step_sizes.empty());
  expect_same(got.states[0], reference(c.momentum));
  ext::StepInputs empty;  // no elements at all
  EXPECT_EQ(ext::summarize_step(empty).update.size, 0);

  ext::StepInputs half = in;
  half.after = c.after.data();
  EXPECT_THROW(ext::summarize_step(half), std::invalid_argument);
  ext::StepInputs stride = in;
  stride.adam = ext::AdamStep{c.second.data(), 1.0, 1e-8, 1e-3, 0.0, 0};
  EXPECT_THROW(ext::summarize_step(stride), std::invalid_argument);
  ext::StepInputs correction = in;
  correction.adam = ext::AdamStep{c.second.data(), 0.0, 1e-8, 1e-3, 0.0, 1};
  EXPECT_THROW(ext::summarize_step(correction), std::invalid_argument);
  ext::StepInputs null_state = in;
  null_state.states.push_back(nullptr);
  EXPECT_THROW(ext::summarize_step(null_state), std::invalid_argument);
}
