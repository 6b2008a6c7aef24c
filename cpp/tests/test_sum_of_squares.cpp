// sum_of_squares against a long-double sum of every element's square, read by its multi-index.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "layerscope/sum_of_squares.hpp"
#include "stored_elements.hpp"

namespace ls = layerscope;

namespace {

using layerscope_tests::store;
using layerscope_tests::Stored;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr ls::DType kTypes[] = {ls::DType::Float32, ls::DType::Float64, ls::DType::Float16,
                                ls::DType::BFloat16};

// The oracle: the squares of the values the view shows, as stored, added in long double.
double reference(const ls::BufferView& v) {
  long double total = 0.0L;
  layerscope_tests::for_each_element(v, [&](double x) { total += static_cast<long double>(x) * x; });
  return static_cast<double>(total);
}

// Values of mixed scales and signs, some exact zeros and subnormals: what gradients hold.
std::vector<float> gradients(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 9);
  std::vector<float> out(n);
  for (float& x : out) {
    const int k = pick(rng);
    x = k == 0 ? 0.0f : k == 1 ? 1e-40f : normal(rng) * (k < 5 ? 1e-3f : 30.0f);
  }
  return out;
}

}  // namespace

TEST(SumOfSquares, ContiguousOfEveryTypeAndLengthMatchesTheOracle) {
  for (const ls::DType dtype : kTypes) {
    for (const std::int64_t n : {0, 1, 7, 31, 32, 127, 128, 129, 1000, 4097, 70001}) {
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " n=" + std::to_string(n));
      const Stored s = store(gradients(static_cast<std::size_t>(n), 5u + static_cast<unsigned>(n)), dtype);
      const ls::BufferView view = ls::make_view(s.bytes.data(), dtype, {n}, {1});
      const double want = reference(view);
      EXPECT_NEAR(ls::sum_of_squares(view), want, 1e-6 * want);
    }
  }
}

TEST(SumOfSquares, StridedTransposedReversedAndBroadcastViewsReadEachElementTheyShow) {
  for (const ls::DType dtype : kTypes) {
    SCOPED_TRACE(ls::dtype_name(dtype));
    const Stored s = store(gradients(12 * 35, 3), dtype);
    for (const ls::BufferView& v : layerscope_tests::scrambled_views(s)) {
      const double want = reference(v);
      EXPECT_NEAR(ls::sum_of_squares(v), want, 1e-6 * want);
    }
  }
}

TEST(SumOfSquares, ThreadsSplitALargeBufferWithoutChangingTheSum) {
  const std::int64_t n = ls::kSquaresParallelMin * 2 + 13;
  const std::vector<float> values = gradients(static_cast<std::size_t>(n), 11);
  const ls::BufferView view = ls::make_view(values.data(), ls::DType::Float32, {n}, {1});
  const double want = reference(view);
  for (const unsigned threads : {1u, 2u, 4u}) {
    SCOPED_TRACE(threads);
    EXPECT_NEAR(ls::sum_of_squares(view, threads), want, 1e-6 * want);
  }
}

TEST(SumOfSquares, ANonfiniteElementAnywhereMakesTheSumNonfinite) {
  for (const ls::DType dtype : kTypes) {
    for (const float bad : {kNaN, kInf, -kInf}) {
      for (const std::int64_t at : {0, 5, 127, 128, 300, 999}) {
        SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " at=" + std::to_string(at));
        std::vector<float> values = gradients(1000, 2);
        values[static_cast<std::size_t>(at)] = bad;
        const Stored s = store(values, dtype);
        const ls::BufferView view = ls::make_view(s.bytes.data(), dtype, {1000}, {1});
        EXPECT_FALSE(std::isfinite(ls::sum_of_squares(view)));
      }
    }
  }
}

TEST(SumOfSquares, Float32SquaresThatOverflowAreNotTakenForFinite) {
  // Each value is finite; its square is not, in float32: the caller must fall back to the full
  // summary, which squares in double.
  std::vector<float> values(300, 1.0f);
  values[200] = 3e19f;
  const ls::BufferView view = ls::make_view(values.data(), ls::DType::Float32, {300}, {1});
  EXPECT_FALSE(std::isfinite(ls::sum_of_squares(view)));
}
