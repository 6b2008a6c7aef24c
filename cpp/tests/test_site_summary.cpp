// SiteSummary's merge laws: merging the summaries of the parts of a buffer gives the summary
// of the whole, in any grouping and order; the empty summary is the identity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "layerscope/site_summary.hpp"

namespace ls = layerscope;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::int64_t kUnits = 7;

// The SiteSummary of rows × kUnits values (units last), through the kernel.
ls::SiteSummary of(const std::vector<double>& values) {
  const auto rows = static_cast<std::int64_t>(values.size()) / kUnits;
  ls::SummaryOptions options;
  options.channel_sums = false;
  return ls::site_summary(
      ls::summarize(ls::matrix_view(values.data(), rows, kUnits, ls::DType::Float64), options),
      true);
}

std::vector<double> random_rows(std::int64_t rows, std::uint32_t seed, double offset) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(offset, 3.0);
  std::vector<double> v(static_cast<std::size_t>(rows * kUnits));
  for (auto& x : v) x = normal(gen);
  for (std::size_t i = 0; i < v.size(); i += 11) v[i] = 0.0;
  return v;
}

void near(double got, double want, const char* field) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << field << ": " << got;
    return;
  }
  EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want))) << field;
}

void expect_same(const ls::SiteSummary& got, const ls::SiteSummary& want) {
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.zeros, want.zeros);
  EXPECT_EQ(got.nonfinite, want.nonfinite);
  near(got.mean, want.mean, "mean");
  near(got.m2, want.m2, "m2");
  near(got.min, want.min, "min");
  near(got.max, want.max, "max");
  near(got.l1, want.l1, "l1");
  near(got.l2, want.l2, "l2");
  ASSERT_EQ(got.channel_active.has_value(), want.channel_active.has_value());
  if (want.channel_active) {
    EXPECT_EQ(*got.channel_active, *want.channel_active);
  }
}

std::vector<double> concat(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST(SiteSummary, MergeOfSplitsIsTheSummaryOfTheConcatenation) {
  // Parts of very different sizes and means: an average of means would be far off.
  const auto a = random_rows(1, 1, 100.0), b = random_rows(300, 2, -5.0),
             c = random_rows(17, 3, 1e4);
  expect_same(ls::merged(ls::merged(of(a), of(b)), of(c)), of(concat(concat(a, b), c)));
}

TEST(SiteSummary, MergeIsAssociativeAndCommutative) {
  const auto a = of(random_rows(3, 4, 1.0)), b = of(random_rows(50, 5, -2.0)),
             c = of(random_rows(9, 6, 1e3));
  const auto left = ls::merged(ls::merged(a, b), c);
  expect_same(ls::merged(a, ls::merged(b, c)), left);
  expect_same(ls::merged(ls::merged(c, a), b), left);
  expect_same(ls::merged(ls::merged(b, c), a), left);
}

TEST(SiteSummary, EmptyIsTheIdentity) {
  const auto a = of(random_rows(5, 7, 0.5));
  expect_same(ls::merged(ls::SiteSummary{}, a), a);
  expect_same(ls::merged(a, ls::SiteSummary{}), a);
  const ls::SiteSummary empty = ls::merged(ls::SiteSummary{}, ls::SiteSummary{});
  EXPECT_EQ(empty.size, 0);
  EXPECT_TRUE(std::isnan(empty.mean));
  EXPECT_EQ(empty.m2, 0.0);
  EXPECT_FALSE(empty.channel_active.has_value());
}

TEST(SiteSummary, AllNonFinitePartsAddTheirCountsOnly) {
  const std::vector<double> bad(2 * kUnits, kNaN);
  std::vector<double> infs(kUnits, kInf);
  infs[3] = -kInf;
  const auto good = random_rows(4, 8, 2.0);
  const auto all_bad = ls::merged(of(bad), of(infs));
  EXPECT_EQ(all_bad.count, 0);
  EXPECT_EQ(all_bad.nonfinite, 3 * kUnits);
  EXPECT_TRUE(std::isnan(all_bad.mean) && std::isnan(all_bad.min) && std::isnan(all_bad.max));
  EXPECT_EQ(all_bad.l2, 0.0);
  const auto whole = of(concat(concat(bad, good), infs));
  expect_same(ls::merged(ls::merged(of(bad), of(good)), of(infs)), whole);
  expect_same(ls::merged(of(infs), ls::merged(of(good), of(bad))), whole);
}

TEST(SiteSummary, PackedRoundTripsAndEmptyUnpacksToTheConvention) {
  const auto a = of(random_rows(6, 9, -1.0));
  const auto p = ls::packed(a);
  expect_same(ls::unpacked(p.data(), a.channel_active), a);
  const double device_empty[ls::kSiteSummaryScalars] = {4, 0, kNaN, kNaN, kInf, -kInf,
                                                        0, 0, 0,    4};
  const auto e = ls::unpacked(device_empty);
  EXPECT_TRUE(std::isnan(e.min) && std::isnan(e.max) && std::isnan(e.mean));
  EXPECT_EQ(e.m2, 0.0);
  EXPECT_EQ(e.nonfinite, 4);
}

TEST(SiteSummary, UnitCountsOfDifferentWidthsKeepTheLaterLayout) {
  ls::SiteSummary narrow, wide, plain;
  narrow.channel_active = std::vector<std::int64_t>{1, 2};
  wide.channel_active = std::vector<std::int64_t>{3, 4, 5};
  EXPECT_EQ(*ls::merged(narrow, wide).channel_active, *wide.channel_active);
  EXPECT_EQ(*ls::merged(narrow, plain).channel_active, *narrow.channel_active);
  EXPECT_EQ(*ls::merged(plain, narrow).channel_active, *narrow.channel_active);
}
