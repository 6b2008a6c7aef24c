// ExactQuantiles: the "all data accumulated" mode of quantile_sketch.hpp. It keeps the values
// themselves, so quantiles are exact (numpy's default 'linear' method) up to a capacity; past it
// the values kept are a uniform random sample of the stream (a reservoir), exact() turns false
// and quantiles become estimates whose error shrinks as 1/sqrt(capacity).
// Included by quantile_sketch.hpp; include that one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/detail/compactor.hpp"
#include "layerscope/detail/select.hpp"
#include "layerscope/serialize.hpp"

namespace layerscope {

/// Exact quantiles of up to `capacity` values; a uniform reservoir sample of `capacity` values
/// beyond that (Vitter's algorithm R with a per-instance seeded PRNG, so the same seed and input
/// give the same sample). NaN is counted (nan_count()) and otherwise ignored, as by
/// numpy.nanquantile; ±Inf are ordinary values. min() and max() are exact in every case.
/// Not thread-safe: use one object per thread and merge.
class ExactQuantiles {
 public:
  static constexpr std::uint64_t kDefaultCapacity = 1'000'000;
  static constexpr std::uint64_t kDefaultSeed = 0x6c617965725f6571ULL;
  static constexpr std::uint8_t kVersion = 1;

  /// Throws std::invalid_argument unless capacity > 0.
  explicit ExactQuantiles(std::uint64_t capacity = kDefaultCapacity,
                          std::uint64_t seed = kDefaultSeed)
      : capacity_(checked_capacity(capacity)), seed_(seed), rng_(seed) {}

  /// Adds one value; NaN is only counted.
  void update(double x) { append(&x, 1); }

  /// Adds every element of `view` (any dtype, any strides).
  void update(const BufferView& view) {
    reserve_for(view.size());
    for_each_chunk(view, [this](const double* p, std::int64_t n) { append(p, n); });
  }

  /// Adds n contiguous doubles.
  void update(const double* values, std::int64_t n) {
    reserve_for(n);
    append(values, n);
  }

  /// Folds `other` in. While both are exact and the union fits, the values are concatenated and
  /// the result is exact. Otherwise the result is a uniform sample of the union: the number
  /// taken from each side is drawn from the hypergeometric law (as if sampling the union
  /// without replacement), then that many values are drawn from each side's sample. Its size
  /// is this object's capacity, or less where an overflowed side holds a smaller sample
  /// (different capacities); later updates keep the sample uniform either way.
  void merge(const ExactQuantiles& other) {
    if (&other == this) {
      const ExactQuantiles copy(other);
      merge(copy);
      return;
    }
    nan_count_ += other.nan_count_;
    if (other.seen_ == 0) return;
    note_extrema(other.min_, other.max_);
    const std::uint64_t total = seen_ + other.seen_;
    if (exact() && other.exact() && total <= capacity_) {
      values_.insert(values_.end(), other.values_.begin(), other.values_.end());
      seen_ = total;
      return;
    }
    std::uint64_t m = std::min(capacity_, total);
    if (!exact()) m = std::min<std::uint64_t>(m, values_.size());
    if (!other.exact()) m = std::min<std::uint64_t>(m, other.values_.size());
    std::uint64_t from_this = 0;
    for (std::uint64_t i = 0; i < m; ++i)  // sequential hypergeometric draw
      from_this += rng_.below(total - i) < seen_ - from_this;
    std::vector<double> theirs(other.values_);
    draw(values_, from_this);
    draw(theirs, m - from_this);
    values_.insert(values_.end(), theirs.begin(), theirs.end());
    seen_ = total;
  }

  /// The q-quantile of the values kept, by numpy's default 'linear' interpolation (bitwise as
  /// numpy.quantile computes it in float64), found with std::nth_element. NaN when empty.
  /// Throws std::invalid_argument unless 0 <= q <= 1.
  double quantile(double q) const { return quantiles(std::vector<double>{q})[0]; }

  /// quantile(q) for every q, selecting every needed order statistic on one copy of the values
  /// (detail::select_ranks: a few branch-free passes for the five standard levels).
  std::vector<double> quantiles(const std::vector<double>& qs) const {
    for (double q : qs) detail::check_probability(q, "ExactQuantiles.quantile");
    std::vector<double> out(qs.size(), std::numeric_limits<double>::quiet_NaN());
    if (values_.empty()) return out;
    const auto n = static_cast<std::int64_t>(values_.size());
    std::vector<std::int64_t> lows(qs.size()), wanted;
    for (std::size_t i = 0; i < qs.size(); ++i) {
      const double v = static_cast<double>(n - 1) * qs[i];
      lows[i] = v >= static_cast<double>(n - 1) ? n - 1 : static_cast<std::int64_t>(std::floor(v));
      wanted.push_back(lows[i]);
      wanted.push_back(std::min(lows[i] + 1, n - 1));
    }
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    std::vector<double> a(values_);
    detail::select_ranks(a.data(), n, wanted.data(), wanted.data() + wanted.size());
    for (std::size_t i = 0; i < qs.size(); ++i) {
      const double v = static_cast<double>(n - 1) * qs[i];
      const bool at_end = v >= static_cast<double>(n - 1);
      // numpy takes the last value twice at the end, with gamma = v - (-1).
      const double lo = a[static_cast<std::size_t>(lows[i])];
      const double hi = at_end ? lo : a[static_cast<std::size_t>(lows[i] + 1)];
      const double gamma = at_end ? v + 1.0 : v - static_cast<double>(lows[i]);
      const double diff = hi - lo;
      out[i] = gamma >= 0.5 ? hi - diff * (1.0 - gamma) : lo + diff * gamma;
    }
    return out;
  }

  double median() const { return quantile(0.5); }  ///< quantile(0.5); NaN when empty
  /// quantile(0.75) - quantile(0.25); NaN when empty (and where ±Inf make it undefined).
  double iqr() const {
    const auto q = quantiles({0.25, 0.75});
    return q[1] - q[0];
  }

  /// Fraction of the values kept that are <= x; NaN when empty or when x is NaN.
  double rank(double x) const {
    if (values_.empty() || std::isnan(x)) return std::numeric_limits<double>::quiet_NaN();
    const auto below = std::count_if(values_.begin(), values_.end(), [x](double v) { return v <= x; });
    return static_cast<double>(below) / static_cast<double>(values_.size());
  }

  bool exact() const noexcept { return values_.size() == seen_; }  ///< every value is kept
  std::uint64_t count() const noexcept { return seen_; }         ///< values seen, NaN excluded
  std::uint64_t nan_count() const noexcept { return nan_count_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  std::uint64_t seed() const noexcept { return seed_; }
  std::size_t stored() const noexcept { return values_.size(); }  ///< values kept
  bool empty() const noexcept { return seen_ == 0; }
  double min() const noexcept { return min_; }  ///< exact; NaN when empty
  double max() const noexcept { return max_; }  ///< exact; NaN when empty
  const std::vector<double>& values() const noexcept { return values_; }  ///< in no order

  /// Versioned bytes (StateType::ExactQuantiles, version 1), PRNG state included.
  std::vector<std::uint8_t> serialize() const {
    ByteWriter w(StateType::ExactQuantiles, kVersion);
    w.write<std::uint64_t>(capacity_);
    w.write<std::uint64_t>(seed_);
    w.write<std::uint64_t>(seen_);
    w.write<std::uint64_t>(nan_count_);
    w.write<double>(min_);
    w.write<double>(max_);
    rng_.write(w);
    w.write_vector(values_);
    return w.take();
  }

  /// Inverse of serialize(). Throws SerializationError (a std::invalid_argument) for truncated
  /// or corrupted bytes, or bytes of another type or version.
  static ExactQuantiles deserialize(const std::uint8_t* data, std::size_t size) {
    ByteReader r(data, size, StateType::ExactQuantiles, kVersion);
    const auto capacity = r.read<std::uint64_t>();
    check_payload(capacity > 0, "capacity must be positive");
    ExactQuantiles e(capacity, r.read<std::uint64_t>());
    e.seen_ = r.read<std::uint64_t>();
    e.nan_count_ = r.read<std::uint64_t>();
    e.min_ = r.read<double>();
    e.max_ = r.read<double>();
    e.rng_.read(r);
    e.values_ = r.read_vector<double>();
    r.finish();
    const std::uint64_t stored = e.values_.size();
    check_payload(stored <= capacity && stored <= e.seen_, "more values than seen or than capacity");
    check_payload(e.seen_ > capacity ? stored > 0 : stored == e.seen_, "sample size inconsistent");
    check_payload(e.seen_ == 0 ? std::isnan(e.min_) && std::isnan(e.max_) : e.min_ <= e.max_,
                  "min / max inconsistent with the count");
    for (double v : e.values_)
      check_payload(!std::isnan(v) && v >= e.min_ && v <= e.max_, "value outside [min, max]");
    return e;
  }
  static ExactQuantiles deserialize(const std::vector<std::uint8_t>& bytes) {
    return deserialize(bytes.data(), bytes.size());
  }

 private:
  static std::uint64_t checked_capacity(std::uint64_t capacity) {
    if (capacity == 0) throw std::invalid_argument("ExactQuantiles: capacity must be > 0, got 0");
    return capacity;
  }

  // Room for n more values at once while exact (the buffer grows in chunks otherwise).
  void reserve_for(std::int64_t n) {
    if (exact() && n > 0)
      values_.reserve(static_cast<std::size_t>(
          std::min<std::uint64_t>(capacity_, values_.size() + static_cast<std::uint64_t>(n))));
  }

  void note_extrema(double lo, double hi) {
    if (lo < min_ || std::isnan(min_)) min_ = lo;
    if (hi > max_ || std::isnan(max_)) max_ = hi;
  }

  // Keeps a uniformly drawn subset of `count` values of `v` (a partial Fisher-Yates shuffle).
  void draw(std::vector<double>& v, std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i)
      std::swap(v[i], v[i + rng_.below(v.size() - i)]);
    v.resize(count);
  }

  void append(const double* p, std::int64_t n) {
    std::int64_t i = 0;
    // While exact: bulk copy of the non-NaN values, up to the capacity.
    while (i < n && exact() && values_.size() < capacity_) {
      const auto take = static_cast<std::size_t>(
          std::min<std::uint64_t>(capacity_ - values_.size(), static_cast<std::uint64_t>(n - i)));
      const double* src = p + i;
      double lo = std::numeric_limits<double>::infinity(), hi = -lo;
      std::size_t kept = 0;
      for (std::size_t j = 0; j < take; ++j) {  // no stores: vectorizes
        const double v = src[j];
        kept += v == v;  // NaN != NaN
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
      }
      if (kept == take) {
        values_.insert(values_.end(), src, src + take);
      } else {
        for (std::size_t j = 0; j < take; ++j)
          if (src[j] == src[j]) values_.push_back(src[j]);
      }
      nan_count_ += take - kept;
      seen_ += kept;
      if (kept > 0) note_extrema(lo, hi);
      i += static_cast<std::int64_t>(take);
    }
    // Full (or a sample already): algorithm R, the t-th value replaces a random slot with
    // probability size / t.
    for (; i < n; ++i) {
      const double v = p[i];
      if (std::isnan(v)) {
        ++nan_count_;
        continue;
      }
      note_extrema(v, v);
      ++seen_;
      const std::uint64_t j = rng_.below(seen_);
      if (j < values_.size()) values_[static_cast<std::size_t>(j)] = v;
    }
  }

  std::uint64_t capacity_;
  std::uint64_t seed_;
  detail::Xoshiro256 rng_;
  std::uint64_t seen_ = 0;
  std::uint64_t nan_count_ = 0;
  double min_ = std::numeric_limits<double>::quiet_NaN();
  double max_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> values_;
};

}  // namespace layerscope
