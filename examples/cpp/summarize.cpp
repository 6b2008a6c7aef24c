// A plain C++ program using the installed engine: summarize a buffer in one pass, fold it
// into running moments, and estimate quantiles with the mergeable sketch.
//
// Usage: summarize [FILE]   FILE holds raw float32 values (native byte order); without it the
// program summarizes 10 000 values of a fixed pseudo-random sequence.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

#include "layerscope/moments.hpp"
#include "layerscope/quantile_sketch.hpp"
#include "layerscope/summary.hpp"

namespace ls = layerscope;

static std::vector<float> load(int argc, char** argv) {
  std::vector<float> values;
  if (argc > 1) {
    std::ifstream in(argv[1], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    values.resize(bytes.size() / sizeof(float));
    std::copy(bytes.begin(), bytes.begin() + values.size() * sizeof(float),
              reinterpret_cast<char*>(values.data()));
    return values;
  }
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int i = 0; i < 10000; ++i) values.push_back(normal(rng));
  return values;
}

int main(int argc, char** argv) {
  const std::vector<float> values = load(argc, argv);
  const auto n = static_cast<std::int64_t>(values.size());
  const ls::BufferView view = ls::contiguous_view(values.data(), n, ls::DType::Float32);

  const ls::Summary s = ls::summarize(view);  // one fused pass, no state
  std::printf("size = %lld\n", static_cast<long long>(s.size));
  std::printf("mean = %.17g\n", s.mean);
  std::printf("min = %.17g\n", s.min);
  std::printf("max = %.17g\n", s.max);
  std::printf("l1 = %.17g\n", s.l1);
  std::printf("l2 = %.17g\n", s.l2);
  std::printf("zeros = %lld\n", static_cast<long long>(s.zeros));

  ls::Moments moments;  // running state: fold the buffer in two halves, then merge
  ls::Moments second;
  moments.update(ls::contiguous_view(values.data(), n / 2, ls::DType::Float32));
  second.update(ls::contiguous_view(values.data() + n / 2, n - n / 2, ls::DType::Float32));
  moments.merge(second);
  std::printf("moments.count = %lld\n", static_cast<long long>(moments.count()));
  std::printf("moments.variance = %.17g\n", moments.variance());

  ls::QuantileSketch sketch;  // approximate quantiles in bounded memory
  sketch.update(view);
  const std::vector<double> q = sketch.quantiles({0.1, 0.5, 0.9});
  std::printf("sketch.q10 = %.17g\nsketch.q50 = %.17g\nsketch.q90 = %.17g\n", q[0], q[1], q[2]);
  return 0;
}
