// Test helper shared by the kernels' tests: two summaries of the same data agree, counts
// exactly and sums to a tolerance relative to the data's scale.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "layerscope/summary.hpp"

namespace layerscope_tests {

namespace ls = layerscope;

inline void near(double got, double want, double scale, const char* what, double tol) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what;
  } else {
    EXPECT_NEAR(got, want, tol * scale + 1e-300) << what;
  }
}

inline void expect_same(const ls::Summary& got, const ls::Summary& want, double tol = 1e-11) {
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.zeros, want.zeros);
  EXPECT_EQ(got.nan, want.nan);
  EXPECT_EQ(got.pos_inf, want.pos_inf);
  EXPECT_EQ(got.neg_inf, want.neg_inf);
  near(got.sum, want.sum, want.l1, "sum", tol);
  near(got.sum_sq, want.sum_sq, want.sum_sq, "sum_sq", tol);
  near(got.l1, want.l1, want.l1, "l1", tol);
  near(got.l2, want.l2, want.l2, "l2", tol);
  near(got.mean, want.mean, want.l1 / std::max<double>(1.0, static_cast<double>(want.count)),
       "mean", tol);
  near(got.m2, want.m2, want.sum_sq, "m2", tol);
  near(got.min, want.min, 0.0, "min", tol);
  near(got.max, want.max, 0.0, "max", tol);
  ASSERT_EQ(got.channel_count.size(), want.channel_count.size());
  EXPECT_EQ(got.channel_count, want.channel_count);
  EXPECT_EQ(got.channel_active, want.channel_active);
  for (std::size_t c = 0; c < want.channel_sum.size(); ++c) {
    near(got.channel_sum[c], want.channel_sum[c], want.l1, "channel_sum", tol);
    near(got.channel_sum_sq[c], want.channel_sum_sq[c], want.sum_sq, "channel_sum_sq", tol);
  }
}

}  // namespace layerscope_tests
