// QuantileSketch against its documented rank-error bound, ExactQuantiles against a sorted
// reference, and both through merge and serialization.
#include "layerscope/quantile_sketch.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace {

using layerscope::ExactQuantiles;
using layerscope::QuantileSketch;
using layerscope::SerializationError;

// The maximum over every x of |estimated rank - true rank| / n, with `sorted` the stream sorted.
double max_rank_error(const QuantileSketch& s, const std::vector<double>& sorted) {
  const double n = static_cast<double>(sorted.size());
  double worst = 0.0, cumulative = 0.0;
  for (const auto& [v, w] : s.weighted_items()) {
    const auto lo = std::lower_bound(sorted.begin(), sorted.end(), v) - sorted.begin();
    worst = std::max(worst, std::abs(cumulative - static_cast<double>(lo)));
    cumulative += static_cast<double>(w);
    const auto hi = std::upper_bound(sorted.begin(), sorted.end(), v) - sorted.begin();
    worst = std::max(worst, std::abs(cumulative - static_cast<double>(hi)));
  }
  return worst / n;
}

std::vector<double> stream(std::size_t n, bool heavy_tailed, std::uint64_t seed) {
  layerscope::detail::Xoshiro256 g(seed);
  std::vector<double> x(n);
  for (auto& v : x) {
    const double u = g.unit();
    v = heavy_tailed ? std::pow(1.0 - u, -1.0 / 1.2) * (g.bit() ? 1.0 : -1.0)  // Pareto tails
                     : u;
  }
  return x;
}

TEST(QuantileSketch, RankErrorWithinBoundOnMillionValues) {
  for (bool heavy : {false, true}) {
    auto x = stream(1'000'000, heavy, heavy ? 2 : 1);
    QuantileSketch batch, single(200, 99);
    batch.update(x.data(), static_cast<std::int64_t>(x.size()));
    for (double v : x) single.update(v);
    std::sort(x.begin(), x.end());
    EXPECT_LT(max_rank_error(batch, x), batch.normalized_rank_error()) << "heavy=" << heavy;
    EXPECT_LT(max_rank_error(single, x), single.normalized_rank_error()) << "heavy=" << heavy;
    EXPECT_EQ(batch.count(), x.size());
    EXPECT_EQ(batch.min(), x.front());
    EXPECT_EQ(batch.max(), x.back());
    EXPECT_LT(batch.retained(), 3 * 200 + 8 * 20u);
  }
}

TEST(QuantileSketch, MergeOfManySketchesKeepsTheBound) {
  auto x = stream(400'000, false, 3);
  QuantileSketch total(200, 5);
  for (std::size_t part = 0; part < 40; ++part) {
    QuantileSketch s(200, part);
    s.update(x.data() + part * 10'000, 10'000);
    total.merge(s);
  }
  std::sort(x.begin(), x.end());
  EXPECT_EQ(total.count(), x.size());
  EXPECT_LT(max_rank_error(total, x), total.normalized_rank_error());
  QuantileSketch coarse(64);
  coarse.merge(total);
  EXPECT_EQ(coarse.min_k(), 64u);
  EXPECT_LT(max_rank_error(coarse, x), QuantileSketch::normalized_rank_error(64));
}

TEST(QuantileSketch, EdgeCases) {
  EXPECT_THROW(QuantileSketch(7), std::invalid_argument);
  EXPECT_THROW(QuantileSketch(65536), std::invalid_argument);
  QuantileSketch s;
  EXPECT_TRUE(std::isnan(s.quantile(0.5)));
  EXPECT_TRUE(std::isnan(s.rank(0.0)));
  EXPECT_THROW(s.quantile(1.5), std::invalid_argument);
  EXPECT_THROW(s.quantile(std::nan("")), std::invalid_argument);
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> v{std::nan(""), -inf, 1.0, inf, 2.0};
  s.update(v.data(), 5);
  EXPECT_EQ(s.count(), 4u);
  EXPECT_EQ(s.nan_count(), 1u);
  EXPECT_EQ(s.quantile(0.0), -inf);
  EXPECT_EQ(s.quantile(1.0), inf);
  EXPECT_EQ(s.quantile(0.5), 1.0);
  EXPECT_DOUBLE_EQ(s.rank(1.5), 0.5);
}

TEST(QuantileSketch, SameSeedSameSketch) {
  const auto x = stream(300'000, false, 4);
  QuantileSketch a(100, 7), b(100, 7);
  a.update(x.data(), 300'000);
  b.update(x.data(), 300'000);
  EXPECT_EQ(a.serialize(), b.serialize());
}

TEST(QuantileSketch, SerializationRoundTripAndContinuation) {
  const auto x = stream(200'000, true, 5);
  QuantileSketch a(128, 11);
  a.update(x.data(), 100'000);
  QuantileSketch b = QuantileSketch::deserialize(a.serialize());
  EXPECT_EQ(a.serialize(), b.serialize());
  a.update(x.data() + 100'000, 100'000);
  b.update(x.data() + 100'000, 100'000);
  EXPECT_EQ(a.serialize(), b.serialize());
  EXPECT_EQ(a.quantiles({0.1, 0.5, 0.9}), b.quantiles({0.1, 0.5, 0.9}));
  const auto empty = QuantileSketch::deserialize(QuantileSketch().serialize());
  EXPECT_TRUE(empty.empty());
}

TEST(QuantileSketch, CorruptedBytesThrow) {
  const auto x = stream(50'000, false, 6);
  QuantileSketch a;
  a.update(x.data(), 50'000);
  const auto bytes = a.serialize();
  for (std::size_t cut = 0; cut < bytes.size(); cut += 97) {
    const std::vector<std::uint8_t> truncated(bytes.begin(), bytes.begin() + cut);
    EXPECT_THROW(QuantileSketch::deserialize(truncated), SerializationError);
  }
  // Header and count are checked directly; any other flipped byte either throws or
  // gives a sketch whose invariants still hold (the sanitizer build would catch the rest).
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] ^= 0x5a;
    if (i < 6 || (i >= 22 && i < 30)) {
      EXPECT_THROW(QuantileSketch::deserialize(bad), SerializationError) << i;
      continue;
    }
    try {
      const auto s = QuantileSketch::deserialize(bad);
      EXPECT_EQ(s.count(), a.count());
      (void)s.quantiles({0.0, 0.5, 1.0});
    } catch (const SerializationError&) {
    }
  }
  EXPECT_THROW(ExactQuantiles::deserialize(bytes), SerializationError);
}

TEST(ExactQuantiles, EqualsSortedReference) {
  const auto x = stream(10'001, true, 7);
  ExactQuantiles e;
  e.update(x.data(), 10'001);
  auto sorted = x;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.0, 0.1, 0.25, 0.5, 0.333, 0.75, 0.999, 1.0}) {
    const double v = (sorted.size() - 1) * q;
    const auto lo = static_cast<std::size_t>(std::floor(v));
    const double hi = sorted[std::min(lo + 1, sorted.size() - 1)];
    EXPECT_NEAR(e.quantile(q), sorted[lo] + (v - lo) * (hi - sorted[lo]),
                1e-12 * std::abs(hi)) << q;
  }
  EXPECT_EQ(e.median(), sorted[5000]);
  EXPECT_TRUE(e.exact());
  EXPECT_THROW(ExactQuantiles(0), std::invalid_argument);
  EXPECT_TRUE(std::isnan(ExactQuantiles().median()));
}

// Many levels at once (each needs two order statistics, often at a range's end) on sizes from
// one value up, with ties: every level as the sorted reference computes it alone.
TEST(ExactQuantiles, ManyLevelsEqualSortedReference) {
  layerscope::detail::Xoshiro256 g(11);
  for (std::size_t n : {1, 2, 3, 5, 16, 17, 1000, 4097}) {
    std::vector<double> x(n);
    for (auto& v : x) v = std::floor(g.unit() * static_cast<double>(n) / 3.0);  // ties
    ExactQuantiles e;
    e.update(x.data(), static_cast<std::int64_t>(n));
    auto sorted = x;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t levels = 1; levels <= 12; ++levels) {
      std::vector<double> qs;
      for (std::size_t i = 0; i < levels; ++i) qs.push_back(i % 4 == 3 ? 1.0 : g.unit());
      const auto got = e.quantiles(qs);
      for (std::size_t i = 0; i < levels; ++i) {
        const double v = static_cast<double>(n - 1) * qs[i];
        const auto lo = std::min(static_cast<std::size_t>(std::floor(v)), n - 1);
        const double hi = sorted[std::min(lo + 1, n - 1)];
        EXPECT_NEAR(got[i], sorted[lo] + (v - static_cast<double>(lo)) * (hi - sorted[lo]),
                    1e-12 * (1.0 + std::abs(hi)))
            << "n=" << n << " q=" << qs[i];
      }
    }
  }
}

// The selection under ExactQuantiles on inputs that defeat naive quickselects: sorted, reversed,
// all equal, two values, organ pipe, Musser's median-of-3 killer; with its own depth budget and
// with none or little left (its std::nth_element fallback). Every rank must hold what sorting
// puts there.
TEST(SelectRanks, AdversarialInputsEqualSorting) {
  const std::int64_t n = 20'000;
  std::vector<std::vector<double>> inputs(6, std::vector<double>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    inputs[0][i] = static_cast<double>(i);
    inputs[1][i] = static_cast<double>(n - i);
    inputs[2][i] = 1.0;
    inputs[3][i] = static_cast<double>(i % 2);
    inputs[4][i] = static_cast<double>(std::min(i, n - i));
  }
  for (std::int64_t i = 0; i < n / 2; ++i) {  // Musser's median-of-3 killer
    inputs[5][2 * i] = static_cast<double>(i % 2 ? n / 2 + i : i + 1);
    inputs[5][2 * i + 1] = static_cast<double>(i % 2 ? i + 1 : n / 2 + i);
  }
  const std::vector<std::int64_t> ranks = {0, 1, 999, 1000, 4999, 5000, 10'000, 10'001,
                                           15'000, 19'998, 19'999};
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    auto sorted = inputs[k];
    std::sort(sorted.begin(), sorted.end());
    for (int depth : {-1, 0, 3}) {
      auto a = inputs[k];
      if (depth < 0) {
        layerscope::detail::select_ranks(a.data(), n, ranks.data(), ranks.data() + ranks.size());
      } else {
        layerscope::detail::select_ranks_within(a.data(), 0, n, ranks.data(),
                                                ranks.data() + ranks.size(), depth);
      }
      for (std::int64_t r : ranks) {
        EXPECT_EQ(a[r], sorted[r]) << "input " << k << " depth " << depth << " rank " << r;
      }
      std::sort(a.begin(), a.end());
      EXPECT_EQ(a, sorted) << "input " << k << " depth " << depth << ": not a permutation";
    }
  }
}

TEST(ExactQuantiles, ReservoirAndMerge) {
  const auto x = stream(100'000, false, 8);
  ExactQuantiles a(5'000, 1), b(5'000, 2), c(5'000, 3);
  a.update(x.data(), 3'000);
  b.update(x.data() + 3'000, 2'000);
  a.merge(b);
  EXPECT_TRUE(a.exact());
  EXPECT_EQ(a.count(), 5'000u);
  c.update(x.data() + 5'000, 95'000);
  EXPECT_FALSE(c.exact());
  EXPECT_EQ(c.stored(), 5'000u);
  a.merge(c);
  EXPECT_EQ(a.count(), 100'000u);
  EXPECT_EQ(a.stored(), 5'000u);
  EXPECT_NEAR(a.median(), 0.5, 0.03);  // a uniform sample of uniform values
  EXPECT_NEAR(a.iqr(), 0.5, 0.04);
  const auto back = ExactQuantiles::deserialize(a.serialize());
  EXPECT_EQ(back.serialize(), a.serialize());
  auto bytes = a.serialize();
  bytes.pop_back();
  EXPECT_THROW(ExactQuantiles::deserialize(bytes), SerializationError);
}

}  // namespace
