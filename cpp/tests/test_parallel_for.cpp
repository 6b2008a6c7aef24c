// How the kernels split work among threads: the cap the caller gives (max_threads), the
// hardware's when it gives none, and parallel_for's slices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "layerscope/detail/parallel_for.hpp"
#include "layerscope/summary.hpp"

namespace ls = layerscope;

namespace {

constexpr std::int64_t kMin = std::int64_t{1} << 20;  // the kernels' parallel_min

}  // namespace

TEST(SplitWorkers, CountsUnitsBeyondUnsigned) {
  const std::int64_t huge = std::int64_t{1} << 48;
  EXPECT_GE(ls::detail::split_workers(huge, std::int64_t{1} << 32, kMin, 0), 1u);
  EXPECT_GE(ls::detail::split_workers(huge, (std::int64_t{1} << 32) + 1, kMin, 0), 1u);
  EXPECT_EQ(ls::detail::split_workers(100, 100, kMin, 0), 1u);
  EXPECT_EQ(ls::detail::split_workers(huge, 1, kMin, 0), 1u);
}

TEST(SplitWorkers, NoCapMeansTheHardwareThreads) {
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(ls::detail::thread_cap(0), hardware);
  // 2^40 elements in 2^20 units want far more workers than any machine has.
  const std::int64_t total = std::int64_t{1} << 40, units = std::int64_t{1} << 20;
  EXPECT_EQ(ls::detail::split_workers(total, units, kMin, 0), hardware);
}

TEST(SplitWorkers, FollowsTheCallersCap) {
  const std::int64_t total = std::int64_t{1} << 40, units = std::int64_t{1} << 20;
  EXPECT_EQ(ls::detail::split_workers(total, units, kMin, 1), 1u);
  // A cap above the hardware's threads is the caller's choice (torch may oversubscribe too).
  for (unsigned cap : {2u, 3u, 64u}) EXPECT_EQ(ls::detail::split_workers(total, units, kMin, cap), cap);
  // The cap never adds workers the work does not want.
  EXPECT_EQ(ls::detail::split_workers(kMin / 2, units, kMin, 8), 1u);
  EXPECT_EQ(ls::detail::split_workers(total, 3, kMin, 8), 3u);
}

TEST(ParallelFor, OneWorkerRunsOnTheCallersThread) {
  for (unsigned workers : {1u, 4u}) {
    std::mutex lock;
    std::set<std::thread::id> seen;
    std::vector<int> hits(1000, 0);
    ls::detail::parallel_for(1000, workers, [&](unsigned, std::int64_t begin, std::int64_t end) {
      const std::lock_guard<std::mutex> guard(lock);
      seen.insert(std::this_thread::get_id());
      for (std::int64_t i = begin; i < end; ++i) ++hits[static_cast<std::size_t>(i)];
    });
    EXPECT_EQ(seen.size(), workers);
    EXPECT_EQ(seen.count(std::this_thread::get_id()), 1u);
    EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  }
}

TEST(Summarize, SameStatisticsWhateverTheThreadCap) {
  // Large enough to be split (4 M elements, 4 channels innermost).
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.5f, 2.0f);
  std::vector<float> x(std::size_t{1} << 22);
  for (float& v : x) v = normal(rng);
  const ls::BufferView view =
      ls::matrix_view(x.data(), static_cast<std::int64_t>(x.size() / 4), 4, ls::DType::Float32);
  for (bool channel_sums : {true, false}) {
    ls::SummaryOptions one, many;
    one.channel_sums = many.channel_sums = channel_sums;
    one.eps = many.eps = 1.0;
    one.max_threads = 1;
    many.max_threads = 4;
    const ls::Summary a = ls::summarize(view, one), b = ls::summarize(view, many);
    EXPECT_EQ(a.count, b.count);
    EXPECT_EQ(a.zeros, b.zeros);
    EXPECT_EQ(a.channel_active, b.channel_active);
    EXPECT_EQ(a.channel_count, b.channel_count);
    EXPECT_EQ(a.min, b.min);
    EXPECT_EQ(a.max, b.max);
    // Partial sums merge in another order: equal to rounding.
    EXPECT_NEAR(a.sum, b.sum, 1e-12 * a.l1);
    EXPECT_NEAR(a.m2, b.m2, 1e-12 * a.m2);
    EXPECT_NEAR(a.l1, b.l1, 1e-12 * a.l1);
  }
}
