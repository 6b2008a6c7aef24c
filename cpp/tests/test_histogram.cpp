// Histogram against a binary search over its own edges (the definition of the bin convention),
// for linear, symlog and explicit edges; argument checks; merge; bytes in and out.
#include "layerscope/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ls = layerscope;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Counts per bin by the definition: bin i holds e[i] <= x < e[i+1].
std::vector<std::int64_t> by_definition(const std::vector<double>& edges,
                                        const std::vector<double>& xs) {
  std::vector<std::int64_t> counts(edges.size() - 1, 0);
  for (double x : xs) {
    if (std::isnan(x) || x < edges.front() || x >= edges.back()) continue;
    ++counts[std::upper_bound(edges.begin(), edges.end(), x) - edges.begin() - 1];
  }
  return counts;
}

// Random values plus every edge and its two neighbours, where arithmetic lookups go wrong.
std::vector<double> probes(const std::vector<double>& edges, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-1.2, 1.2);
  const double span = std::max(std::fabs(edges.front()), std::fabs(edges.back()));
  std::vector<double> xs;
  for (int i = 0; i < 20000; ++i) {
    const double u = unit(rng);
    xs.push_back(u * span);
    xs.push_back(std::copysign(std::pow(10.0, 12.0 * std::fabs(u) - 10.0), u));
  }
  for (double e : edges) {
    xs.push_back(e);
    xs.push_back(std::nextafter(e, -kInf));
    xs.push_back(std::nextafter(e, kInf));
  }
  xs.insert(xs.end(), {kNaN, kInf, -kInf, 0.0, -0.0});
  return xs;
}

void expect_definition(ls::Histogram h, unsigned seed) {
  const auto xs = probes(h.edges(), seed);
  h.update(ls::contiguous_view(xs.data(), static_cast<std::int64_t>(xs.size()),
                               ls::DType::Float64));
  EXPECT_EQ(h.counts(), by_definition(h.edges(), xs));
  std::int64_t under = 0, over = 0;
  for (double x : xs) {
    under += x < h.edges().front();
    over += x >= h.edges().back();
  }
  EXPECT_EQ(h.underflow(), under);
  EXPECT_EQ(h.overflow(), over);
  EXPECT_EQ(h.nan(), 1);
  EXPECT_EQ(h.total(), static_cast<std::int64_t>(xs.size()));
}

TEST(Histogram, LinearEdgesAndLookup) {
  const auto h = ls::Histogram::linear(-1.0, 3.0, 4);
  EXPECT_EQ(h.edges(), (std::vector<double>{-1.0, 0.0, 1.0, 2.0, 3.0}));
  expect_definition(ls::Histogram::linear(-1.0, 3.0, 4), 1);
  expect_definition(ls::Histogram::linear(0.1, 0.7, 7), 2);  // edges that are not dyadic
  expect_definition(ls::Histogram::linear(-1e-3, 2e5, 1000), 3);
}

TEST(Histogram, SymlogEdges) {
  const auto h = ls::Histogram::symlog(1e-3, 10.0, 1);
  // -10 -1 -0.1 -0.01 -0.001 0 0.001 0.01 0.1 1 10: four decades, two linear bins.
  ASSERT_EQ(h.bins(), 10);
  EXPECT_EQ(h.edges()[5], 0.0);
  EXPECT_EQ(h.edges()[6], 1e-3);
  EXPECT_EQ(h.edges().back(), 10.0);
  EXPECT_EQ(h.edges().front(), -10.0);
  for (std::size_t i = 0; i < h.edges().size(); ++i)
    EXPECT_EQ(h.edges()[i], -h.edges()[h.edges().size() - 1 - i]);
  EXPECT_NEAR(h.edges()[8], 0.1, 1e-16);
  // A range that is not a whole number of steps: the last bin is narrower, max_abs the edge.
  const auto odd = ls::Histogram::symlog(1.0, 50.0, 2);
  EXPECT_EQ(odd.edges().back(), 50.0);
  EXPECT_EQ(odd.bins(), 2 * 4 + 2);  // 1, 3.16, 10, 31.6, 50
}

TEST(Histogram, SymlogLookup) {
  expect_definition(ls::Histogram::symlog(1e-8, 1e2, 5), 4);
  expect_definition(ls::Histogram::symlog(0.3, 7.0, 3), 5);
  expect_definition(ls::Histogram::symlog(1e-300, 1e300, 10), 6);
}

TEST(Histogram, ExplicitLookup) {
  expect_definition(ls::Histogram({-5.0, -1.0, -0.5, 0.0, 2.0, 100.0}), 7);
  expect_definition(ls::Histogram({0.0, 1.0}), 8);
}

TEST(Histogram, RejectsBadArguments) {
  EXPECT_THROW(ls::Histogram::linear(1.0, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(2.0, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(0.0, kInf, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(kNaN, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(-1e308, 1e308, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(0.0, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(0.0, 1.0, 1'000'001), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::linear(1.0, 1.0 + 1e-15, 1000), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::symlog(0.0, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::symlog(1.0, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::symlog(1.0, kInf, 3), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::symlog(1e-3, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(ls::Histogram::symlog(1e-300, 1e300, 1000), std::invalid_argument);
  EXPECT_THROW(ls::Histogram(std::vector<double>{1.0}), std::invalid_argument);
  EXPECT_THROW(ls::Histogram(std::vector<double>{0.0, 2.0, 1.0}), std::invalid_argument);
  EXPECT_THROW(ls::Histogram(std::vector<double>{0.0, 0.0}), std::invalid_argument);
  EXPECT_THROW(ls::Histogram(std::vector<double>{0.0, kInf}), std::invalid_argument);
  try {
    ls::Histogram::linear(0.0, 1.0, -2);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bins must be in [1, 1000000], got -2"),
              std::string::npos);
  }
}

TEST(Histogram, MergeAddsCountsOfIdenticalEdges) {
  auto a = ls::Histogram::linear(0.0, 1.0, 4);
  auto b = ls::Histogram::linear(0.0, 1.0, 4);
  a.update(0.1);
  a.update(-1.0);
  b.update(0.1);
  b.update(0.9);
  b.update(kNaN);
  b.update(kInf);
  a.merge(b);
  EXPECT_EQ(a.counts(), (std::vector<std::int64_t>{2, 0, 0, 1}));
  EXPECT_EQ(a.underflow(), 1);
  EXPECT_EQ(a.overflow(), 1);
  EXPECT_EQ(a.nan(), 1);
  EXPECT_EQ(a.total(), 6);
  // Explicit edges equal to a factory's merge with it.
  ls::Histogram same({0.0, 0.25, 0.5, 0.75, 1.0});
  EXPECT_NO_THROW(a.merge(same));
  EXPECT_THROW(a.merge(ls::Histogram::linear(0.0, 1.0, 5)), std::invalid_argument);
  EXPECT_EQ(a.total(), 6);
}

TEST(Histogram, StridedHalfInput) {
  // float16 values 1, 2, 3, 4, 5, 6 as a 2 x 3 matrix read by columns with a step.
  const std::vector<std::uint16_t> half = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
  auto h = ls::Histogram::linear(0.0, 8.0, 4);
  h.update(ls::make_view(half.data(), ls::DType::Float16, {3, 2}, {1, 3}));
  EXPECT_EQ(h.counts(), (std::vector<std::int64_t>{1, 2, 2, 1}));
}

TEST(Histogram, BroadcastViewsAreReadOnceAndCountedInFull) {
  const std::vector<float> values = {0.5f, 3.0f, -9.0f, std::nanf("")};
  auto h = ls::Histogram::linear(0.0, 4.0, 4);
  h.update(ls::make_view(values.data(), ls::DType::Float32, {4, std::int64_t{1} << 40}, {1, 0}));
  const std::int64_t repeat = std::int64_t{1} << 40;
  EXPECT_EQ(h.counts(), (std::vector<std::int64_t>{repeat, 0, 0, repeat}));
  EXPECT_EQ(h.underflow(), repeat);
  EXPECT_EQ(h.nan(), repeat);
  auto again = ls::Histogram::linear(0.0, 4.0, 4);
  again.update(ls::make_view(values.data(), ls::DType::Float32, {4, 3}, {1, 0}));
  EXPECT_EQ(again.counts(), (std::vector<std::int64_t>{3, 0, 0, 3}));
}

TEST(Histogram, SerializeRoundTripAndCorruption) {
  for (auto h : {ls::Histogram::linear(-2.0, 2.0, 9), ls::Histogram::symlog(1e-4, 1e1, 3),
                 ls::Histogram({-1.0, 0.5, 7.0})}) {
    for (double x : probes(h.edges(), 9)) h.update(x);
    const auto bytes = h.serialize();
    const auto back = ls::Histogram::deserialize(bytes.data(), bytes.size());
    EXPECT_EQ(back.serialize(), bytes);
    EXPECT_EQ(back.kind(), h.kind());
    for (std::size_t n = 0; n < bytes.size(); ++n)
      EXPECT_THROW(ls::Histogram::deserialize(bytes.data(), n), ls::SerializationError);
    auto flipped = bytes;
    flipped[7] ^= 0x01;  // a parameter no longer matches the edges (or explicit gains one)
    EXPECT_THROW(ls::Histogram::deserialize(flipped.data(), flipped.size()),
                 ls::SerializationError);
    auto kind = bytes;
    kind[6] = 7;
    EXPECT_THROW(ls::Histogram::deserialize(kind.data(), kind.size()), ls::SerializationError);
  }
}

TEST(Histogram, RandomCorruptionNeverCrashes) {
  auto h = ls::Histogram::symlog(1e-3, 1e3, 4);
  for (double x : probes(h.edges(), 10)) h.update(x);
  const auto bytes = h.serialize();
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    auto bad = bytes;
    const int flips = 1 + trial % 4;
    for (int f = 0; f < flips; ++f)
      bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    try {
      auto back = ls::Histogram::deserialize(bad.data(), bad.size());
      back.update(0.5);  // whatever was accepted must still work
      EXPECT_GE(back.total(), 1);
    } catch (const ls::SerializationError&) {
    }
  }
}

}  // namespace
