// count_nonfinite against std::isfinite of every element read by its multi-index.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <limits>
#include <random>
#include <vector>

#include "layerscope/nonfinite.hpp"
#include "stored_elements.hpp"

namespace ls = layerscope;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

using layerscope_tests::store;
using layerscope_tests::Stored;

// The oracle: every element of the view, by its multi-index, widened and tested.
std::int64_t reference(const ls::BufferView& v) {
  std::int64_t count = 0;
  layerscope_tests::for_each_element(v, [&](double x) { count += !std::isfinite(x); });
  return count;
}

// Random values with NaN, +/-Inf, zeros, subnormals, the largest finite float, and values
// float16 rounds to infinity (70000) in about one element in seven.
std::vector<float> hostile(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, 13);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  const float specials[] = {kNaN, kInf, -kInf, 0.0f, -0.0f, 1e-40f, std::numeric_limits<float>::max(), 70000.0f};
  std::vector<float> out(n);
  for (float& x : out) {
    const int k = pick(rng);
    x = k < 8 ? specials[k] : normal(rng);
  }
  return out;
}

constexpr ls::DType kTypes[] = {ls::DType::Float32, ls::DType::Float64, ls::DType::Float16,
                                ls::DType::BFloat16};

}  // namespace

TEST(CountNonfinite, ContiguousOfEveryTypeAndLengthMatchesIsfinite) {
  for (const ls::DType dtype : kTypes) {
    for (const std::int64_t n : {0, 1, 7, 8, 15, 16, 17, 255, 4097, 70001}) {
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " n=" + std::to_string(n));
      const Stored s = store(hostile(static_cast<std::size_t>(n), 7u + static_cast<unsigned>(n)), dtype);
      const ls::BufferView view = ls::make_view(s.bytes.data(), dtype, {n}, {1});
      EXPECT_EQ(ls::count_nonfinite(view), reference(view));
    }
  }
}

TEST(CountNonfinite, StridedTransposedAndBroadcastViewsCountEachElementTheyShow) {
  for (const ls::DType dtype : kTypes) {
    SCOPED_TRACE(ls::dtype_name(dtype));
    const Stored s = store(hostile(12 * 35, 3), dtype);
    const std::vector<ls::BufferView> views = layerscope_tests::scrambled_views(s);
    for (const ls::BufferView& v : views) EXPECT_EQ(ls::count_nonfinite(v), reference(v));
    const ls::BufferView& broadcast = views.back();
    EXPECT_EQ(ls::count_nonfinite(broadcast),
              6 * ls::count_nonfinite(ls::make_view(s.bytes.data(), dtype, {35}, {1})));
  }
}

TEST(CountNonfinite, ThreadsSplitALargeBufferWithoutChangingTheCount) {
  const std::int64_t n = ls::kNonfiniteParallelMin * 2 + 13;
  std::vector<float> values(static_cast<std::size_t>(n), 1.0f);
  for (std::int64_t i = 0; i < n; i += 9973) values[static_cast<std::size_t>(i)] = i % 2 ? kNaN : -kInf;
  values.back() = kInf;
  const ls::BufferView view = ls::make_view(values.data(), ls::DType::Float32, {n}, {1});
  const std::int64_t expected = n / 9973 + 1 + 1;
  EXPECT_EQ(ls::count_nonfinite(view, 1), expected);
  EXPECT_EQ(ls::count_nonfinite(view, 2), expected);
  EXPECT_EQ(ls::count_nonfinite(view, 4), expected);
}

TEST(CountNonfinite, HugeFiniteValuesAreNotCounted) {
  // A sum of these overflows to infinity; each of them is finite.
  std::vector<float> values(1000, std::numeric_limits<float>::max());
  const ls::BufferView view = ls::make_view(values.data(), ls::DType::Float32, {1000}, {1});
  EXPECT_EQ(ls::count_nonfinite(view), 0);
}
