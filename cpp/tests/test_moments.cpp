// Moments and ChannelMoments against direct two-pass formulas in long double, over layouts,
// dtypes and hostile values; merge laws; serialization round trips and corrupted bytes.
#include "layerscope/moments.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ls = layerscope;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Reference {
  std::int64_t count = 0, nonfinite = 0;
  double mean = kNaN, variance = kNaN, min = kNaN, max = kNaN, sum = 0.0;
};

Reference reference(const std::vector<double>& xs) {
  Reference r;
  long double sum = 0.0L;
  for (double x : xs) {
    if (!std::isfinite(x)) {
      ++r.nonfinite;
      continue;
    }
    if (r.count == 0 || x < r.min) r.min = x;
    if (r.count == 0 || x > r.max) r.max = x;
    ++r.count;
    sum += x;
  }
  if (r.count == 0) return r;
  const long double mean = sum / r.count;
  long double m2 = 0.0L;
  for (double x : xs)
    if (std::isfinite(x)) m2 += (x - mean) * (x - mean);
  r.mean = static_cast<double>(mean);
  r.variance = static_cast<double>(m2 / r.count);
  r.sum = static_cast<double>(sum);
  return r;
}

void expect_matches(const ls::Moments& m, const std::vector<double>& xs, double rtol = 1e-12) {
  const Reference r = reference(xs);
  ASSERT_EQ(m.count(), r.count);
  EXPECT_EQ(m.nonfinite(), r.nonfinite);
  if (r.count == 0) {
    EXPECT_TRUE(std::isnan(m.mean()) && std::isnan(m.variance()) && std::isnan(m.min()));
    return;
  }
  const double scale = std::max(std::fabs(r.mean), std::sqrt(r.variance)) + 1e-300;
  EXPECT_NEAR(m.mean(), r.mean, 1e-13 * scale);
  EXPECT_NEAR(m.variance(), r.variance, rtol * r.variance + 1e-300);
  EXPECT_EQ(m.min(), r.min);
  EXPECT_EQ(m.max(), r.max);
}

std::vector<double> normal(std::size_t n, double mean, double sd, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, sd);
  std::vector<double> xs(n);
  for (auto& x : xs) x = dist(rng);
  return xs;
}

TEST(Moments, EmptyIsNaNAndZero) {
  ls::Moments m;
  EXPECT_EQ(m.count(), 0);
  EXPECT_TRUE(std::isnan(m.mean()));
  EXPECT_TRUE(std::isnan(m.variance()));
  EXPECT_TRUE(std::isnan(m.sample_variance()));
  EXPECT_TRUE(std::isnan(m.std()));
  EXPECT_TRUE(std::isnan(m.min()));
  EXPECT_TRUE(std::isnan(m.max()));
  EXPECT_EQ(m.sum(), 0.0);
  EXPECT_EQ(m.sum_sq(), 0.0);
}

TEST(Moments, OneValueHasZeroVarianceAndNoSampleVariance) {
  ls::Moments m;
  m.update(3.5);
  EXPECT_EQ(m.mean(), 3.5);
  EXPECT_EQ(m.variance(), 0.0);
  EXPECT_TRUE(std::isnan(m.sample_variance()));
}

TEST(Moments, BatchMatchesReferenceWithLargeOffset) {
  // A mean far from zero relative to the spread is where naive sum-of-squares fails (it would
  // lose every digit here). A double mean of 1e6 is only known to ~1e-10, 1e-8 of the spread,
  // which bounds what any merge of double states can do: ~1e-11 relative, measured.
  const auto xs = normal(100'003, 1e6, 1e-2, 1);
  ls::Moments m;
  m.update(ls::contiguous_view(xs.data(), static_cast<std::int64_t>(xs.size()),
                               ls::DType::Float64));
  expect_matches(m, xs, 1e-10);
}

TEST(Moments, ScalarAndBatchAgree) {
  const auto xs = normal(5000, -3.0, 7.0, 2);
  ls::Moments a, b;
  for (double x : xs) a.update(x);
  b.update(ls::contiguous_view(xs.data(), 5000, ls::DType::Float64));
  EXPECT_EQ(a.count(), b.count());
  EXPECT_NEAR(a.mean(), b.mean(), 1e-12);
  EXPECT_NEAR(a.variance(), b.variance(), 1e-10);
}

TEST(Moments, SkipsNonFinite) {
  std::vector<double> xs = {1.0, kNaN, 2.0, kInf, -kInf, 3.0};
  ls::Moments m;
  m.update(ls::contiguous_view(xs.data(), 6, ls::DType::Float64));
  expect_matches(m, xs);
  EXPECT_EQ(m.nonfinite(), 3);
  EXPECT_EQ(m.sum(), 6.0);
}

TEST(Moments, AllNaNIsEmptyWithNonfinite) {
  std::vector<float> xs(10, std::numeric_limits<float>::quiet_NaN());
  ls::Moments m;
  m.update(ls::contiguous_view(xs.data(), 10, ls::DType::Float32));
  EXPECT_EQ(m.count(), 0);
  EXPECT_EQ(m.nonfinite(), 10);
  EXPECT_TRUE(std::isnan(m.mean()));
}

TEST(Moments, StridedFloat32Matrix) {
  // A 40 x 30 float32 matrix read transposed, and a column slice with step 3.
  const auto base = normal(1200, 0.5, 2.0, 3);
  std::vector<float> f(base.begin(), base.end());
  ls::Moments all, col;
  all.update(ls::make_view(f.data(), ls::DType::Float32, {30, 40}, {1, 30}));
  col.update(ls::make_view(f.data() + 2, ls::DType::Float32, {40}, {30}));
  expect_matches(all, std::vector<double>(f.begin(), f.end()));
  std::vector<double> column;
  for (int r = 0; r < 40; ++r) column.push_back(f[2 + r * 30]);
  expect_matches(col, column);
}

TEST(Moments, HalfAndBfloat16) {
  // 1, 2, Inf, the smallest subnormal, -3
  const std::vector<std::uint16_t> half = {0x3C00, 0x4000, 0x7C00, 0x0001, 0xC200};
  ls::Moments m;
  m.update(ls::contiguous_view(half.data(), 5, ls::DType::Float16));
  EXPECT_EQ(m.count(), 4);
  EXPECT_EQ(m.nonfinite(), 1);
  EXPECT_EQ(m.min(), -3.0);
  EXPECT_NEAR(m.sum(), 0.0 + std::ldexp(1.0, -24), 1e-30);
  const std::vector<std::uint16_t> bf = {0x3F80, 0x4040, 0x7FC0};  // 1, 3, NaN
  ls::Moments b;
  b.update(ls::contiguous_view(bf.data(), 3, ls::DType::BFloat16));
  EXPECT_EQ(b.mean(), 2.0);
  EXPECT_EQ(b.nonfinite(), 1);
}

TEST(Moments, HugeFloat64KeepsFiniteMean) {
  std::vector<double> xs = {1.5e308, 1.5e308, 1.5e308};
  ls::Moments m;
  m.update(ls::contiguous_view(xs.data(), 3, ls::DType::Float64));
  EXPECT_EQ(m.mean(), 1.5e308);
  EXPECT_EQ(m.variance(), 0.0);
  EXPECT_TRUE(std::isinf(m.sum()));
  const auto bytes = m.serialize();
  EXPECT_EQ(ls::Moments::deserialize(bytes.data(), bytes.size()).serialize(), bytes);
}

TEST(Moments, MergeEqualsConcatenation) {
  const auto a = normal(3001, 10.0, 1.0, 4), b = normal(17, -5.0, 3.0, 5);
  ls::Moments ma, mb;
  ma.update(ls::contiguous_view(a.data(), 3001, ls::DType::Float64));
  mb.update(ls::contiguous_view(b.data(), 17, ls::DType::Float64));
  ma.merge(mb);
  std::vector<double> both = a;
  both.insert(both.end(), b.begin(), b.end());
  expect_matches(ma, both);
}

TEST(Moments, MergeWithEmptyIsIdentity) {
  const auto a = normal(100, 1.0, 1.0, 6);
  ls::Moments m, empty;
  m.update(ls::contiguous_view(a.data(), 100, ls::DType::Float64));
  const auto before = m.serialize();
  m.merge(empty);
  EXPECT_EQ(m.serialize(), before);
  empty.merge(m);
  EXPECT_EQ(empty.serialize(), before);
}

TEST(Moments, FoldSummaryMatchesMerge) {
  const auto a = normal(500, 2.0, 0.5, 7);
  ls::Moments part, via_summary, via_merge;
  part.update(ls::contiguous_view(a.data(), 500, ls::DType::Float64));
  via_summary.update(9.0);
  via_merge.update(9.0);
  via_summary.update(part.count(), part.mean(), part.m2(), part.min(), part.max(), part.sum(),
                     part.sum_sq(), 2);
  via_merge.merge(part);
  EXPECT_EQ(via_summary.mean(), via_merge.mean());
  EXPECT_EQ(via_summary.variance(), via_merge.variance());
  EXPECT_EQ(via_summary.nonfinite(), 2);
}

TEST(Moments, FoldSummaryRejectsImpossibleStates) {
  ls::Moments m;
  EXPECT_THROW(m.update(-1, 0, 0, 0, 0, 0, 0), std::invalid_argument);
  EXPECT_THROW(m.update(2, 0, -1, 0, 1, 0, 0), std::invalid_argument);
  EXPECT_THROW(m.update(2, 0, 1, 1, 0, 0, 1), std::invalid_argument);
  EXPECT_THROW(m.update(2, 0, 1, -kInf, 0, 0, 1), std::invalid_argument);
  EXPECT_THROW(m.update(0, 1, 0, kInf, -kInf, 0, 0), std::invalid_argument);
  m.update(0, 0, 0, kInf, -kInf, 0, 0, 4);  // nothing but skipped values
  EXPECT_EQ(m.nonfinite(), 4);
  EXPECT_EQ(m.count(), 0);
}

TEST(Moments, SerializeRoundTripAndCorruption) {
  const auto a = normal(64, 0.0, 1.0, 8);
  ls::Moments m;
  m.update(ls::contiguous_view(a.data(), 64, ls::DType::Float64));
  m.update(kNaN);
  const auto bytes = m.serialize();
  const auto back = ls::Moments::deserialize(bytes.data(), bytes.size());
  EXPECT_EQ(back.serialize(), bytes);
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(ls::Moments::deserialize(bytes.data(), n), ls::SerializationError) << n;
  for (std::size_t i = 0; i < 6; ++i) {
    auto bad = bytes;
    bad[i] ^= 0x5A;
    EXPECT_THROW(ls::Moments::deserialize(bad.data(), bad.size()), ls::SerializationError) << i;
  }
  auto trailing = bytes;
  trailing.push_back(0);
  EXPECT_THROW(ls::Moments::deserialize(trailing.data(), trailing.size()), ls::SerializationError);
  auto negative = bytes;
  negative[6 + 7] = 0x80;  // count's sign byte
  EXPECT_THROW(ls::Moments::deserialize(negative.data(), negative.size()), ls::SerializationError);
}

TEST(ChannelMoments, ChannelLastMatchesPerColumnReference) {
  constexpr std::int64_t rows = 777, channels = 1500;  // more than one tile of channels
  auto xs = normal(rows * channels, 4.0, 2.0, 9);
  xs[5] = kNaN;
  xs[channels + 5] = kInf;
  ls::ChannelMoments cm(channels);
  cm.update(ls::matrix_view(xs.data(), rows, channels, ls::DType::Float64));
  const auto mean = cm.mean(), var = cm.variance(), lo = cm.min();
  const auto count = cm.count(), bad = cm.nonfinite();
  for (std::int64_t c = 0; c < channels; c += 97) {
    std::vector<double> column;
    for (std::int64_t r = 0; r < rows; ++r) column.push_back(xs[r * channels + c]);
    const Reference ref = reference(column);
    EXPECT_EQ(count[c], ref.count);
    EXPECT_EQ(bad[c], ref.nonfinite);
    EXPECT_NEAR(mean[c], ref.mean, 1e-12);
    EXPECT_NEAR(var[c], ref.variance, 1e-11);
    EXPECT_EQ(lo[c], ref.min);
  }
  EXPECT_EQ(bad[5], 2);
}

TEST(ChannelMoments, NCHWAndTransposedLayoutsAgree) {
  // [N=3, C=4, H=5, W=6] contiguous, channel axis 1; and the same values viewed as NHWC.
  const auto xs = normal(3 * 4 * 5 * 6, 1.0, 1.0, 10);
  ls::ChannelMoments nchw(4), nhwc(4);
  nchw.update(ls::make_view(xs.data(), ls::DType::Float64, {3, 4, 5, 6}, {120, 30, 6, 1}, 1));
  nhwc.update(ls::make_view(xs.data(), ls::DType::Float64, {3, 5, 6, 4}, {120, 6, 1, 30}, 3));
  for (std::int64_t c = 0; c < 4; ++c) {
    std::vector<double> values;
    for (int n = 0; n < 3; ++n)
      for (int k = 0; k < 30; ++k) values.push_back(xs[n * 120 + c * 30 + k]);
    const Reference ref = reference(values);
    EXPECT_NEAR(nchw.mean()[c], ref.mean, 1e-13);
    EXPECT_NEAR(nhwc.mean()[c], ref.mean, 1e-13);
    EXPECT_NEAR(nchw.variance()[c], ref.variance, 1e-12);
    EXPECT_NEAR(nhwc.variance()[c], ref.variance, 1e-12);
    EXPECT_EQ(nchw.count()[c], 90);
    EXPECT_EQ(nhwc.max()[c], ref.max);
  }
}

TEST(ChannelMoments, RejectsBadShapesAndCounts) {
  EXPECT_THROW(ls::ChannelMoments(0), std::invalid_argument);
  ls::ChannelMoments cm(3);
  std::vector<float> xs(12);
  EXPECT_THROW(cm.update(ls::contiguous_view(xs.data(), 12, ls::DType::Float32)),
               std::invalid_argument);
  EXPECT_THROW(cm.update(ls::matrix_view(xs.data(), 3, 4, ls::DType::Float32)),
               std::invalid_argument);
  ls::ChannelMoments other(4);
  EXPECT_THROW(cm.merge(other), std::invalid_argument);
}

TEST(ChannelMoments, EmptyChannelsAndSerialization) {
  ls::ChannelMoments cm(3);
  std::vector<float> xs = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN()};
  cm.update(ls::matrix_view(xs.data(), 1, 3, ls::DType::Float32));
  EXPECT_TRUE(std::isnan(cm.mean()[2]));
  EXPECT_EQ(cm.nonfinite()[2], 1);
  const auto bytes = cm.serialize();
  EXPECT_EQ(ls::ChannelMoments::deserialize(bytes.data(), bytes.size()).serialize(), bytes);
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(ls::ChannelMoments::deserialize(bytes.data(), n), ls::SerializationError);
  const auto scalar = ls::Moments().serialize();
  EXPECT_THROW(ls::ChannelMoments::deserialize(scalar.data(), scalar.size()),
               ls::SerializationError);
}

}  // namespace
