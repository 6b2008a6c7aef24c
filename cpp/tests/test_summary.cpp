// summarize() against straightforward loops over every element, for every dtype and layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "layerscope/summary.hpp"
#include "same_summary.hpp"

namespace ls = layerscope;
using layerscope_tests::expect_same;
using layerscope_tests::near;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Storage of `values` in `dtype` (float16/bfloat16 rounded to nearest).
struct Buffer {
  ls::DType dtype;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<std::uint16_t> u16;
  const void* data() const {
    switch (dtype) {
      case ls::DType::Float32: return f32.data();
      case ls::DType::Float64: return f64.data();
      default: return u16.data();
    }
  }
};

Buffer store(const std::vector<double>& values, ls::DType dtype) {
  Buffer b{dtype, {}, {}, {}};
  for (double v : values) {
    const float f = static_cast<float>(v);
    switch (dtype) {
      case ls::DType::Float32: b.f32.push_back(f); break;
      case ls::DType::Float64: b.f64.push_back(v); break;
      case ls::DType::Float16: b.u16.push_back(ls::detail::float_to_half(f)); break;
      case ls::DType::BFloat16: b.u16.push_back(ls::detail::float_to_bfloat16(f)); break;
    }
  }
  return b;
}

double load(const ls::BufferView& v, std::int64_t offset) {
  return ls::visit_dtype(v.dtype, [&](auto tag) {
    using E = ls::Element<decltype(tag)::value>;
    const auto* p = static_cast<const typename E::storage*>(v.data) + offset;
    return static_cast<double>(E::load(p));
  });
}

// The oracle: every element visited by its multi-index, plain double sums, two-pass m2.
ls::Summary reference(const ls::BufferView& v, const ls::SummaryOptions& o = {}) {
  ls::Summary s;
  const auto channels = static_cast<std::size_t>(v.channels());
  s.channel_count.assign(channels, 0);
  s.channel_active.assign(channels, 0);
  s.channel_sum.assign(channels, 0.0);
  s.channel_sum_sq.assign(channels, 0.0);
  s.size = v.size();
  std::vector<std::pair<double, std::size_t>> finite;
  std::vector<std::int64_t> index(static_cast<std::size_t>(v.ndim), 0);
  for (std::int64_t e = 0; e < s.size; ++e) {
    std::int64_t offset = 0;
    for (int d = 0; d < v.ndim; ++d) offset += index[d] * v.strides[d];
    const std::size_t c = v.channel_axis < 0 ? 0 : static_cast<std::size_t>(index[v.channel_axis]);
    const double x = load(v, offset);
    const bool active = o.threshold ? x > *o.threshold : std::fabs(x) > o.eps;
    s.channel_active[c] += active;
    if (std::isnan(x)) ++s.nan;
    else if (x == kInf) ++s.pos_inf;
    else if (x == -kInf) ++s.neg_inf;
    else finite.emplace_back(x, c);
    for (int d = v.ndim - 1; d >= 0; --d) {
      if (++index[d] < v.shape[d]) break;
      index[d] = 0;
    }
  }
  s.count = static_cast<std::int64_t>(finite.size());
  for (auto [x, c] : finite) {
    s.sum += x;
    s.sum_sq += x * x;
    s.l1 += std::fabs(x);
    s.zeros += x == 0.0;
    s.min = std::isnan(s.min) ? x : std::min(s.min, x);
    s.max = std::isnan(s.max) ? x : std::max(s.max, x);
    ++s.channel_count[c];
    s.channel_sum[c] += x;
    s.channel_sum_sq[c] += x * x;
  }
  if (s.count > 0) s.mean = s.sum / static_cast<double>(s.count);
  for (auto [x, c] : finite) s.m2 += (x - s.mean) * (x - s.mean);
  s.l2 = std::sqrt(s.sum_sq);
  return s;
}

// Float32, float16 and bfloat16 input is accumulated in float over short stretches (see
// summary.hpp): it agrees with the double oracle to 1e-6 of the data's scale; float64 to 1e-11.
double tolerance(ls::DType dtype) { return dtype == ls::DType::Float64 ? 1e-11 : 1e-6; }

std::vector<double> normal(std::size_t n, double mean = 0.0, double sd = 1.0, unsigned seed = 1) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(mean, sd);
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

const ls::DType kDTypes[] = {ls::DType::Float32, ls::DType::Float64, ls::DType::Float16,
                             ls::DType::BFloat16};

// The oracle's summary as summarize() gives it without per-channel sums.
ls::Summary without_channel_sums(ls::Summary s) {
  s.channel_count.clear();
  s.channel_sum.clear();
  s.channel_sum_sq.clear();
  return s;
}

// Both kernels against the oracle: the AVX2 one where the CPU has it, and the portable one;
// each with and without per-channel sums.
void check(const ls::BufferView& v, const ls::SummaryOptions& o = {}) {
  const ls::Summary want = reference(v, o);
  ls::SummaryOptions counts_only = o;
  counts_only.channel_sums = false;
  for (bool wide : {true, false}) {
    if (wide && !ls::detail::cpu_has_avx2_fma()) continue;
    SCOPED_TRACE(wide ? "avx2" : "portable");
    expect_same(ls::detail::summarize_with(v, o, wide), want, tolerance(v.dtype));
    SCOPED_TRACE("channel_sums = false");
    expect_same(ls::detail::summarize_with(v, counts_only, wide), without_channel_sums(want),
                tolerance(v.dtype));
  }
}

}  // namespace

TEST(Summarize, ContiguousEveryDtypeAndLength) {
  for (ls::DType dtype : kDTypes) {
    for (std::int64_t n : {1, 7, 8, 15, 16, 17, 1000, 4095, 4096, 4097, 20000}) {
      const Buffer b = store(normal(static_cast<std::size_t>(n), 0.5, 2.0), dtype);
      const ls::BufferView v = ls::make_view(b.data(), dtype, {n}, {1});
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " n=" + std::to_string(n));
      check(v);
    }
  }
}

TEST(Summarize, StridedTransposedAndFlippedViews) {
  const Buffer b = store(normal(6 * 50 * 40), ls::DType::Float32);
  const float* base = b.f32.data();
  // (6, 50, 40) row-major, then: transposed, every other row, a flipped axis.
  const ls::BufferView views[] = {
      ls::make_view(base, ls::DType::Float32, {40, 50, 6}, {1, 40, 2000}),
      ls::make_view(base, ls::DType::Float32, {6, 25, 40}, {2000, 80, 1}),
      ls::make_view(base + 39, ls::DType::Float32, {6, 50, 40}, {2000, 40, -1}),
      ls::make_view(base + 5 * 2000, ls::DType::Float32, {6, 50, 13}, {-2000, 40, 3}),
      ls::make_view(base, ls::DType::Float32, {6, 7, 40}, {2000, 0, 1}),  // broadcast axis
  };
  for (const auto& v : views) check(v);
}

TEST(Summarize, ChannelAxisAnywhere) {
  for (ls::DType dtype : kDTypes) {
    const Buffer b = store(normal(4 * 9 * 300, 0.0, 1.0, 7), dtype);
    for (int axis = 0; axis < 3; ++axis) {
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " axis=" + std::to_string(axis));
      const ls::BufferView v = ls::make_view(b.data(), dtype, {4, 9, 300}, {2700, 300, 1}, axis);
      check(v);
      const ls::BufferView t = ls::make_view(b.data(), dtype, {300, 9, 4}, {1, 300, 2700}, axis);
      check(t);
    }
  }
}

TEST(Summarize, ChannelStretchesOfContiguousBuffersOfAnyLength) {
  // Contiguous (batch, channels, stretch) buffers, whose activity the whole-buffer pass counts
  // block by block: stretches shorter than a vector, with scalar tails, longer than a block;
  // a NaN and infinities inside, zeros, and every activity test.
  for (std::int64_t stretch : {1, 3, 8, 49, 196, 784, 5000}) {
    const std::int64_t batch = 5, channels = 6, n = batch * channels * stretch;
    std::vector<double> values = normal(static_cast<std::size_t>(n), 0.1, 1.0, 23);
    for (std::size_t i = 0; i < values.size(); i += 9) values[i] = 0.0;
    values[static_cast<std::size_t>(n / 2)] = kNaN;
    values[static_cast<std::size_t>(n / 3)] = kInf;
    values[static_cast<std::size_t>(n - 1)] = -kInf;
    const ls::SummaryOptions options[] = {{}, {0.5, {}}, {0.0, 0.0}, {0.0, -1.0}};
    for (ls::DType dtype : {ls::DType::Float32, ls::DType::Float64}) {
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " stretch=" + std::to_string(stretch));
      const Buffer b = store(values, dtype);
      const ls::BufferView v = ls::make_view(b.data(), dtype, {batch, channels, stretch},
                                             {channels * stretch, stretch, 1}, 1);
      for (const auto& o : options) check(v, o);
    }
  }
}

TEST(Summarize, UnitsInnermostOfContiguousBuffersOfAnyWidth) {
  // Rows of units that the whole-buffer pass's blocks of 4096 cut anywhere: narrower than a
  // vector, with column tails, a row per block, wider than a block; non-finite values inside.
  for (std::int64_t width : {1, 3, 8, 33, 70, 768, 4096, 5000}) {
    const std::int64_t rows = 12'000 / width + 3, n = rows * width;
    std::vector<double> values = normal(static_cast<std::size_t>(n), 0.1, 1.0, 29);
    for (std::size_t i = 0; i < values.size(); i += 11) values[i] = 0.0;
    values[static_cast<std::size_t>(n / 2)] = kNaN;
    values[static_cast<std::size_t>(n / 3)] = -kInf;
    values[static_cast<std::size_t>(n - 1)] = kInf;
    const ls::SummaryOptions options[] = {{}, {0.5, {}}, {0.0, 0.0}, {0.0, -1.0}};
    for (ls::DType dtype : {ls::DType::Float32, ls::DType::Float64}) {
      SCOPED_TRACE(std::string(ls::dtype_name(dtype)) + " width=" + std::to_string(width));
      const Buffer b = store(values, dtype);
      const ls::BufferView v = ls::make_view(b.data(), dtype, {rows, width}, {width, 1}, 1);
      for (const auto& o : options) check(v, o);
    }
  }
}

TEST(Summarize, NonFiniteValuesAreCountedNotPropagated) {
  std::vector<double> values = normal(10000);
  values[0] = kNaN;  // the block's first value, used as its shift
  values[5] = kInf;
  values[4096] = -kInf;
  values[9999] = kNaN;
  for (ls::DType dtype : kDTypes) {
    const Buffer b = store(values, dtype);
    const ls::BufferView v = ls::make_view(b.data(), dtype, {100, 100}, {100, 1}, 1);
    const ls::Summary s = ls::summarize(v);
    EXPECT_EQ(s.nan, 2);
    EXPECT_EQ(s.pos_inf, 1);
    EXPECT_EQ(s.neg_inf, 1);
    EXPECT_EQ(s.count, 9996);
    EXPECT_TRUE(std::isfinite(s.mean) && std::isfinite(s.m2) && std::isfinite(s.max));
    expect_same(s, reference(v), tolerance(dtype));
    check(v);
  }
}

TEST(Summarize, EmptyAndSingleElement) {
  const float one = -3.5f;
  const ls::Summary e = ls::summarize(ls::make_view(&one, ls::DType::Float32, {0, 5}, {5, 1}, 1));
  EXPECT_EQ(e.size, 0);
  EXPECT_EQ(e.count, 0);
  EXPECT_TRUE(std::isnan(e.mean) && std::isnan(e.min) && std::isnan(e.max));
  EXPECT_EQ(e.m2, 0.0);
  EXPECT_EQ(e.channel_count, std::vector<std::int64_t>(5, 0));
  const ls::Summary s = ls::summarize(ls::make_view(&one, ls::DType::Float32, {}, {}));
  EXPECT_EQ(s.size, 1);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.mean, -3.5);
  EXPECT_EQ(s.m2, 0.0);
  EXPECT_EQ(s.min, -3.5);
  EXPECT_EQ(s.l2, 3.5);
  EXPECT_EQ(s.channel_active, std::vector<std::int64_t>{1});
}

TEST(Summarize, ConstantsHaveZeroVarianceAndHugeValuesDoNotOverflow) {
  const std::vector<float> constant(9000, 0.1f);
  std::vector<float> huge(5000, 3e38f);
  huge[7] = -3e38f;
  for (bool wide : {true, false}) {
    if (wide && !ls::detail::cpu_has_avx2_fma()) continue;
    const ls::Summary c = ls::detail::summarize_with(
        ls::contiguous_view(constant.data(), 9000, ls::DType::Float32), {}, wide);
    EXPECT_EQ(c.m2, 0.0);
    EXPECT_EQ(c.mean, static_cast<double>(0.1f));
    const ls::Summary h = ls::detail::summarize_with(
        ls::contiguous_view(huge.data(), 5000, ls::DType::Float32), {}, wide);
    EXPECT_EQ(h.pos_inf, 0);
    EXPECT_TRUE(std::isfinite(h.sum_sq) && std::isfinite(h.m2));
    const double big = 3e38f;
    EXPECT_NEAR(h.sum_sq, 5000 * big * big, 1e-12 * 5000 * big * big);
  }
}

TEST(Summarize, FloatLanesStayAccurateOnAdversarialData) {
  // Relative errors of the float-lane kernels against double, on data built to hurt them;
  // summary.hpp states the bounds. The measured worst case is 4e-7 (periodic outliers).
  const std::int64_t n = 300'000;
  std::mt19937_64 g(9);
  std::normal_distribution<double> z;
  std::uniform_real_distribution<double> u;
  const std::vector<std::pair<const char*, std::function<double(std::int64_t)>>> cases = {
      {"offset", [&](std::int64_t) { return 1e4 + z(g); }},
      {"tiny spread", [&](std::int64_t) { return 1e3 + 1e-3 * z(g); }},
      {"dynamic range", [&](std::int64_t) { return (u(g) < 0.5 ? -1 : 1) * std::pow(10.0, 60 * u(g) - 30); }},
      {"periodic outliers", [&](std::int64_t i) { return i % 512 == 0 ? 1e8 : z(g); }},
      {"block outliers", [&](std::int64_t i) { return i % 4096 == 0 ? 1e6 : z(g); }},
      {"tiny", [&](std::int64_t) { return 1e-25 * z(g); }},
      {"huge", [&](std::int64_t) { return 1e25 * z(g); }},
      {"zeros then tiny", [&](std::int64_t i) { return i % 4096 < 600 ? 0.0 : 1e-22 * z(g); }},
      {"ramp", [&](std::int64_t i) { return 1e3 * static_cast<double>(i) / n; }},
  };
  for (const auto& [name, make] : cases) {
    std::vector<double> values(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = make(i);
    for (ls::DType dtype : {ls::DType::Float32, ls::DType::BFloat16}) {
      const Buffer b = store(values, dtype);
      const ls::BufferView v = ls::make_view(b.data(), dtype, {n}, {1});
      const ls::Summary want = reference(v);
      for (bool wide : {true, false}) {
        if (wide && !ls::detail::cpu_has_avx2_fma()) continue;
        SCOPED_TRACE(std::string(name) + " " + ls::dtype_name(dtype) + (wide ? " avx2" : " portable"));
        const ls::Summary s = ls::detail::summarize_with(v, {}, wide);
        EXPECT_LE(std::fabs(s.sum - want.sum), 5e-7 * want.l1);
        EXPECT_LE(std::fabs(s.l1 - want.l1), 5e-7 * want.l1);
        EXPECT_LE(std::fabs(s.sum_sq - want.sum_sq), 1e-6 * want.sum_sq);
        EXPECT_LE(std::fabs(s.l2 - want.l2), 5e-7 * want.l2);
        EXPECT_LE(std::fabs(s.m2 - want.m2), 1e-6 * want.m2);
        EXPECT_EQ(s.min, want.min);
        EXPECT_EQ(s.max, want.max);
      }
    }
  }
}

TEST(Summarize, ZerosAndActivityInEveryKernelMode) {
  // Long enough for the fast paths; zeros and values on both sides of the limits.
  std::vector<double> values = normal(20'000, 0.0, 1.0, 13);
  for (std::size_t i = 0; i < values.size(); i += 7) values[i] = 0.0;
  values[11] = -0.0;
  values[12] = 0.5;
  values[13] = -0.5;
  const ls::SummaryOptions options[] = {{}, {0.5, {}}, {0.0, 0.0}, {0.0, -1.0}, {0.0, 0.5}};
  for (ls::DType dtype : {ls::DType::Float32, ls::DType::BFloat16, ls::DType::Float16}) {
    const Buffer b = store(values, dtype);
    const ls::BufferView v = ls::make_view(b.data(), dtype, {20'000}, {1});
    for (const auto& o : options) check(v, o);
  }
}

TEST(Summarize, UnitActivityInnermostInEveryKernelMode) {
  // Rows of 70 units (two 32-column blocks, an 8-column one, a scalar tail), zeros, both signs.
  std::vector<double> values = normal(37 * 70, 0.0, 1.0, 17);
  for (std::size_t i = 0; i < values.size(); i += 5) values[i] = 0.0;
  values[71] = kNaN;
  values[140] = -kInf;
  const ls::SummaryOptions options[] = {{}, {0.5, {}}, {0.0, 0.0}, {0.0, -1.0}};
  for (ls::DType dtype : kDTypes) {
    const Buffer b = store(values, dtype);
    const ls::BufferView v = ls::make_view(b.data(), dtype, {37, 70}, {70, 1}, 1);
    for (const auto& o : options) check(v, o);
  }
}

TEST(Summarize, ActivityByEpsAndByThreshold) {
  const std::vector<double> x = {-2.0, -0.5, 0.0, 0.25, 1.0, kInf, -kInf, kNaN};
  const ls::BufferView v = ls::make_view(x.data(), ls::DType::Float64, {8}, {1});
  EXPECT_EQ(ls::summarize(v).channel_active[0], 6);  // |x| > 0: NaN and 0 are not
  EXPECT_EQ(ls::summarize(v, {0.5, {}}).channel_active[0], 4);
  EXPECT_EQ(ls::summarize(v, {0.0, 0.0}).channel_active[0], 3);  // x > 0
  EXPECT_EQ(ls::summarize(v, {0.0, -1.0}).channel_active[0], 5);
  // A threshold between two floats: float32 input compared as if in double.
  const std::vector<float> f(4100, 0.1f);
  const ls::BufferView fv = ls::contiguous_view(f.data(), 4100, ls::DType::Float32);
  EXPECT_EQ(ls::summarize(fv, {0.0, 0.1}).channel_active[0], 4100);  // 0.1f > 0.1
  EXPECT_EQ(ls::summarize(fv, {0.0, static_cast<double>(0.1f)}).channel_active[0], 0);
  EXPECT_THROW(ls::summarize(v, {-1.0, {}}), std::invalid_argument);
  EXPECT_THROW(ls::summarize(v, {kNaN, {}}), std::invalid_argument);
  EXPECT_THROW(ls::summarize(v, {0.0, kNaN}), std::invalid_argument);
}

TEST(Summarize, LargeBuffersSplitAmongWorkersGiveTheSameResult) {
  const std::vector<double> values = normal(3'000'000, 1.0, 3.0, 11);
  for (ls::DType dtype : {ls::DType::Float32, ls::DType::BFloat16}) {
    const Buffer b = store(values, dtype);
    const ls::BufferView whole = ls::make_view(b.data(), dtype, {3'000'000}, {1});
    // Channel axis innermost with runs longer than a piece: pieces start mid-run.
    const ls::BufferView wide = ls::make_view(b.data(), dtype, {20, 150'000}, {150'000, 1}, 1);
    const ls::BufferView rows = ls::make_view(b.data(), dtype, {3000, 1000}, {1000, 1}, 0);
    for (const auto& v : {whole, wide, rows}) check(v);
    // Serial pieces merged equal the parallel whole.
    ls::Summary merged;
    const std::int64_t cut = 1'234'567;
    ls::merge(merged, ls::summarize(ls::make_view(b.data(), dtype, {cut}, {1})));
    const auto* bytes = static_cast<const unsigned char*>(b.data()) + cut * ls::itemsize(dtype);
    ls::merge(merged, ls::summarize(ls::make_view(bytes, dtype, {3'000'000 - cut}, {1})));
    merged.size = 3'000'000;
    expect_same(merged, reference(whole), tolerance(dtype));
  }
}

TEST(Merge, EqualsSummaryOfConcatenation) {
  std::vector<double> a = normal(3000, 100.0, 0.01, 3), b = normal(500, -4.0, 7.0, 4);
  a[10] = kNaN;
  std::vector<double> both = a;
  both.insert(both.end(), b.begin(), b.end());
  const auto view = [](const std::vector<double>& v) {
    return ls::make_view(v.data(), ls::DType::Float64, {static_cast<std::int64_t>(v.size())}, {1});
  };
  ls::Summary m = ls::summarize(view(a));
  ls::merge(m, ls::summarize(view(b)));
  expect_same(m, reference(view(both)));
  ls::Summary empty = ls::summarize(view({}));
  ls::merge(empty, m);
  expect_same(empty, m);
  ls::Summary three = ls::summarize(ls::make_view(a.data(), ls::DType::Float64, {1000, 3}, {3, 1}, 1));
  EXPECT_THROW(ls::merge(three, m), std::invalid_argument);
}

TEST(Merge, WithoutChannelSumsKeepsOnlyTheActivityCounts) {
  const std::vector<double> a = normal(600, 0.0, 1.0, 8), b = normal(900, 0.5, 1.0, 9);
  const auto view = [](const std::vector<double>& v) {
    return ls::make_view(v.data(), ls::DType::Float64, {static_cast<std::int64_t>(v.size()) / 3, 3},
                         {3, 1}, 1);
  };
  ls::SummaryOptions counts_only;
  counts_only.channel_sums = false;
  ls::Summary full = ls::summarize(view(a));
  ls::merge(full, ls::summarize(view(b)));
  ls::Summary lean = ls::summarize(view(a), counts_only);
  ls::merge(lean, ls::summarize(view(b), counts_only));
  expect_same(lean, without_channel_sums(full));
  ls::Summary mixed = ls::summarize(view(a));  // one side without sums: the merge has none
  ls::merge(mixed, ls::summarize(view(b), counts_only));
  expect_same(mixed, without_channel_sums(full));
  ls::Summary empty;
  ls::merge(empty, lean);
  expect_same(empty, lean);
}

TEST(BlockKernels, EveryFastPathAgreesWithThePortableOne) {
  std::vector<double> values = normal(4096, 2.0, 0.5, 5);
  values[100] = 0.0;
  const Buffer f = store(values, ls::DType::Float32), h = store(values, ls::DType::BFloat16);
  std::vector<float> widened(4096);
  for (std::size_t i = 0; i < widened.size(); ++i) widened[i] = ls::detail::bfloat16_to_float(h.u16[i]);
  for (int n : {1, 9, 33, 600, 4096}) {
    for (float limit : {0.0f, 1.5f}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " limit=" + std::to_string(limit));
      ls::detail::BlockStats want, got, want16;
      ASSERT_TRUE((ls::detail::fast_block_portable<float, true>(f.f32.data(), n, limit, want)));
      ASSERT_TRUE((ls::detail::fast_block_portable<float, true>(widened.data(), n, limit, want16)));
      EXPECT_EQ(want.zeros, n > 100 ? 1 : 0);
      if (!ls::detail::cpu_has_avx2_fma()) continue;
      const auto agree = [](const ls::detail::BlockStats& a, const ls::detail::BlockStats& b) {
        EXPECT_EQ(a.finite, b.finite);
        EXPECT_EQ(a.zeros, b.zeros);
        EXPECT_EQ(a.active, b.active);
        EXPECT_EQ(a.min, b.min);
        EXPECT_EQ(a.max, b.max);
        EXPECT_NEAR(a.sum, b.sum, 1e-6 * a.l1);
        EXPECT_NEAR(a.m2, b.m2, 1e-6 * a.m2 + 1e-300);
        EXPECT_NEAR(a.sum_sq, b.sum_sq, 1e-6 * a.sum_sq);
      };
      ASSERT_TRUE((ls::detail::fast_block_wide<float, true>(f.f32.data(), n, limit, got)));
      agree(got, want);
      ASSERT_TRUE((ls::detail::fast_block_wide<std::uint16_t, true>(h.u16.data(), n, limit, got)));
      agree(got, want16);
    }
  }
}

TEST(Summarize, BroadcastViewsOfAnySizeAreReadOnce) {
  const float one = 1.0f;
  for (std::int64_t size : {std::int64_t{1} << 32, std::int64_t{1} << 48, std::int64_t{1} << 62}) {
    const ls::Summary s = ls::summarize(ls::make_view(&one, ls::DType::Float32, {size}, {0}));
    EXPECT_EQ(s.size, size);
    EXPECT_EQ(s.count, size);
    EXPECT_EQ(s.mean, 1.0);
    EXPECT_EQ(s.m2, 0.0);
    EXPECT_EQ(s.sum_sq, static_cast<double>(size));
  }
  // A broadcast axis between real ones, every channel axis: the materialized buffer's summary.
  const Buffer b = store(normal(3 * 5), ls::DType::Float32);
  std::vector<float> materialized;
  for (int i = 0; i < 3; ++i)
    for (int r = 0; r < 11; ++r)
      for (int j = 0; j < 5; ++j) materialized.push_back(b.f32[i * 5 + j]);
  for (int axis : {ls::kNoChannelAxis, 0, 1, 2}) {
    const ls::BufferView v = ls::make_view(b.f32.data(), ls::DType::Float32, {3, 11, 5}, {5, 0, 1}, axis);
    const ls::BufferView m =
        ls::make_view(materialized.data(), ls::DType::Float32, {3, 11, 5}, {55, 5, 1}, axis);
    expect_same(ls::summarize(v), reference(m), 1e-6);
  }
}
