// The extension that lends a loaded OpenMP runtime to the kernels: every worker runs once
// whatever number of threads the runtime grants, and nothing is loaded that was not.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "layerscope/detail/parallel_for.hpp"
#include "layerscope_ext/openmp_team.hpp"

namespace ls = layerscope;

namespace {

// A stand-in for an OpenMP runtime's GNU entry points: a parallel region of `granted` threads
// (whatever was asked), each with its thread number.
unsigned granted = 1;
unsigned asked = 0;
thread_local int thread_number = 0;
thread_local int team_size = 1;

void fake_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned) {
  asked = num_threads;
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < granted; ++t) {
    threads.emplace_back([fn, data, t] {
      thread_number = static_cast<int>(t);
      team_size = static_cast<int>(granted);
      fn(data);
    });
  }
  thread_number = 0;
  team_size = static_cast<int>(granted);
  fn(data);
  for (auto& t : threads) t.join();
  team_size = 1;
}

int fake_thread_num() { return thread_number; }
int fake_num_threads() { return team_size; }

}  // namespace

TEST(OpenMPTeam, EveryWorkerRunsOnceHoweverManyThreadsAreGranted) {
  ls::ext::OpenMPRuntime runtime;
  runtime.parallel = &fake_parallel;
  runtime.thread_num = &fake_thread_num;
  runtime.num_threads = &fake_num_threads;
  const ls::ThreadTeam team = ls::ext::openmp_team(runtime);
  for (unsigned threads : {1u, 3u, 4u}) {  // one: inside another parallel region
    granted = threads;
    std::mutex lock;
    std::vector<unsigned> ran;
    std::vector<int> hits(999, 0);
    ls::detail::parallel_for(
        999, 4,
        [&](unsigned w, std::int64_t begin, std::int64_t end) {
          const std::lock_guard<std::mutex> guard(lock);
          ran.push_back(w);
          for (std::int64_t i = begin; i < end; ++i) ++hits[static_cast<std::size_t>(i)];
        },
        team);
    EXPECT_EQ(asked, 4u);
    std::sort(ran.begin(), ran.end());
    EXPECT_EQ(ran, (std::vector<unsigned>{0, 1, 2, 3})) << threads << " threads granted";
    EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  }
}

TEST(OpenMPTeam, NoRuntimeIsLoadedForIt) {
  // This test links no OpenMP runtime, so none is loaded, and looking must not load one.
  EXPECT_FALSE(ls::ext::loaded_openmp_runtime().has_value());
  EXPECT_FALSE(ls::ext::loaded_openmp_runtime("libgomp.so.1").has_value());
  EXPECT_FALSE(ls::ext::loaded_openmp_runtime().has_value());
}
