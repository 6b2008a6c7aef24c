// How the kernels split work among threads: the cap the caller gives (max_threads), the
// hardware's when it gives none, parallel_for's slices, and a team of threads the caller lends.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "layerscope/detail/parallel_for.hpp"
#include "layerscope/nonfinite.hpp"
#include "layerscope/sum_of_squares.hpp"
#include "layerscope/summary.hpp"
#include "layerscope/thread_team.hpp"
#include "same_summary.hpp"

namespace ls = layerscope;
using layerscope_tests::expect_same;

namespace {

constexpr std::int64_t kMin = std::int64_t{1} << 20;  // the kernels' parallel_min

/// A team lent by a test: each run starts the workers on threads of its own, the last worker
/// first, and notes the workers and the calls.
struct RecordingTeam {
  std::mutex lock;
  std::vector<unsigned> workers_run;
  std::set<std::thread::id> threads;
  int runs = 0;

  static void run(void* runtime, unsigned workers, ls::ThreadTeam::Task task, void* context) {
    auto& team = *static_cast<RecordingTeam*>(runtime);
    ++team.runs;
    std::vector<std::thread> threads;
    for (unsigned w = workers; w-- > 0;) {
      threads.emplace_back([&team, task, context, w] {
        {
          const std::lock_guard<std::mutex> guard(team.lock);
          team.workers_run.push_back(w);
          team.threads.insert(std::this_thread::get_id());
        }
        task(context, w);
      });
    }
    for (auto& t : threads) t.join();
  }

  ls::ThreadTeam lend() { return ls::ThreadTeam{&RecordingTeam::run, this}; }
};

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
    // Partial sums merge in another order: equal to rounding.
    expect_same(ls::summarize(view, one), ls::summarize(view, many), 1e-12);
  }
}

TEST(ThreadTeam, SplitsAsPyTorchsLoopsDo) {
  RecordingTeam recording;
  const ls::ThreadTeam team = recording.lend();
  const std::int64_t grain = ls::kLentTeamGrain;
  EXPECT_EQ(ls::detail::split_workers(grain + 1, grain + 1, kMin, 2), 1u);  // own: too small
  EXPECT_EQ(ls::detail::split_workers(grain + 1, grain + 1, kMin, 2, team), 2u);
  EXPECT_EQ(ls::detail::split_workers(grain, grain, kMin, 2, team), 1u);  // one thread wrote it
  // One worker per started grain, up to the cap.
  EXPECT_EQ(ls::detail::split_workers(3 * grain, 3 * grain, kMin, 8, team), 3u);
  EXPECT_EQ(ls::detail::split_workers(3 * grain + 1, 3 * grain + 1, kMin, 8, team), 4u);
  EXPECT_EQ(ls::detail::split_workers(100 * grain, 100 * grain, kMin, 8, team), 8u);
  EXPECT_EQ(ls::detail::split_workers(100 * grain, 100 * grain, kMin, 1, team), 1u);
  EXPECT_EQ(ls::detail::split_workers(100 * grain, 3, kMin, 8, team), 3u);  // and the units
  EXPECT_EQ(ls::detail::split_workers(0, 0, kMin, 8, team), 1u);
}

TEST(ThreadTeam, EveryWorkerRunsOnceOnTheTeamsThreads) {
  RecordingTeam recording;
  std::vector<int> hits(1000, 0);
  std::vector<std::pair<std::int64_t, std::int64_t>> slices(4);
  ls::detail::parallel_for(
      1000, 4,
      [&](unsigned w, std::int64_t begin, std::int64_t end) {
        slices[w] = {begin, end};
        for (std::int64_t i = begin; i < end; ++i) ++hits[static_cast<std::size_t>(i)];
      },
      recording.lend());
  EXPECT_EQ(recording.runs, 1);
  std::vector<unsigned> run = recording.workers_run;
  std::sort(run.begin(), run.end());
  EXPECT_EQ(run, (std::vector<unsigned>{0, 1, 2, 3}));
  EXPECT_EQ(recording.threads.size(), 4u);
  EXPECT_EQ(recording.threads.count(std::this_thread::get_id()), 0u);
  EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  for (unsigned w = 0; w < 4; ++w) {  // contiguous shares in worker order, as OpenMP's
    EXPECT_EQ(slices[w].first, ls::detail::slice_start(1000, 4, w));
    EXPECT_EQ(slices[w].second, ls::detail::slice_start(1000, 4, w + 1));
  }
}

TEST(ThreadTeam, OneWorkerNeverCallsTheTeam) {
  RecordingTeam recording;
  int calls = 0;
  ls::detail::parallel_for(1000, 1, [&](unsigned, std::int64_t, std::int64_t) { ++calls; },
                           recording.lend());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(recording.runs, 0);
}

TEST(ThreadTeam, AWorkersExceptionReachesTheCaller) {
  RecordingTeam recording;
  EXPECT_THROW(ls::detail::parallel_for(
                   100, 3,
                   [](unsigned w, std::int64_t, std::int64_t) {
                     if (w == 2) throw std::runtime_error("worker 2");
                   },
                   recording.lend()),
               std::runtime_error);
  EXPECT_EQ(recording.workers_run.size(), 3u);  // the others still ran
}

TEST(ThreadTeam, KernelsGiveTheSameResultsOnALentTeam) {
  // 2^18 elements: split over a lent team, read by one thread otherwise.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(std::size_t{1} << 18);
  for (float& v : x) v = normal(rng);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  x[x.size() - 3] = -std::numeric_limits<float>::infinity();
  const auto size = static_cast<std::int64_t>(x.size());
  const ls::BufferView flat = ls::contiguous_view(x.data(), size, ls::DType::Float32);
  const ls::BufferView view = ls::matrix_view(x.data(), size / 64, 64, ls::DType::Float32);
  RecordingTeam recording;
  const ls::ThreadTeam team = recording.lend();

  EXPECT_EQ(ls::count_nonfinite(flat, 2, team), 2);
  EXPECT_EQ(recording.runs, 1);
  EXPECT_EQ(ls::count_nonfinite(flat, 2), 2);

  x[7] = x[x.size() - 3] = 1.0f;
  const double squares = ls::sum_of_squares(flat, 2);
  EXPECT_NEAR(ls::sum_of_squares(flat, 2, team), squares, 1e-12 * squares);
  EXPECT_EQ(recording.runs, 2);

  for (bool channel_sums : {true, false}) {
    ls::SummaryOptions own, lent;
    own.channel_sums = lent.channel_sums = channel_sums;
    own.max_threads = lent.max_threads = 2;
    lent.team = team;
    const int runs = recording.runs;
    expect_same(ls::summarize(view, own), ls::summarize(view, lent), 1e-12);
    EXPECT_GT(recording.runs, runs);
  }
}
