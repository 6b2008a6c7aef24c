// Histograms over fixed edges: evenly spaced (linear), symmetric-log (for values that span
// decades, as gradients do) or any increasing edges. Counts are exact integers, so two
// histograms with the same edges merge exactly; states serialize to versioned bytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "layerscope/buffer.hpp"
#include "layerscope/serialize.hpp"

namespace layerscope {

/// Counts of values per bin over fixed, strictly increasing, finite edges e[0] < ... < e[n].
///
/// Bin convention: bin i holds e[i] <= x < e[i+1] (half-open, the last bin too, unlike
/// numpy.histogram whose last bin is closed). x < e[0] and -Inf count as underflow, x >= e[n]
/// and +Inf as overflow, NaN only in nan() — it never lands in a bin. total() counts them all.
/// Not thread-safe: one writer at a time.
class Histogram {
 public:
  static constexpr std::uint8_t kVersion = 1;
  /// Most bins a histogram may have.
  static constexpr std::int64_t kMaxBins = 1'000'000;

  /// How the edges were made; decides the bin lookup (arithmetic, log10, binary search).
  enum class Kind : std::uint8_t { Explicit = 0, Linear = 1, Symlog = 2 };

  /// `bins` equal bins over [low, high). Throws std::invalid_argument unless low and high are
  /// finite with low < high, high - low is finite, 1 <= bins <= kMaxBins, and the bins are
  /// wide enough that all edges differ in double precision.
  static Histogram linear(double low, double high, std::int64_t bins) {
    if (!std::isfinite(low) || !std::isfinite(high) || !(low < high) ||
        !std::isfinite(high - low))
      throw std::invalid_argument("Histogram.linear: low and high must be finite with low < high "
                                  "(and high - low finite), got low=" + num(low) +
                                  ", high=" + num(high));
    check_bins("Histogram.linear", bins);
    std::vector<double> edges(static_cast<std::size_t>(bins) + 1);
    const double width = (high - low) / static_cast<double>(bins);
    for (std::int64_t i = 0; i < bins; ++i) edges[i] = low + width * static_cast<double>(i);
    edges[bins] = high;
    Histogram h(std::move(edges), "Histogram.linear");
    h.kind_ = Kind::Linear;
    h.p0_ = low;
    h.p1_ = high;
    h.p2_ = bins;
    h.scale_ = static_cast<double>(bins) / (high - low);
    return h;
  }

  /// Symmetric-log edges: a linear region [-linear_width, linear_width] split at 0 into two
  /// bins, then on each side edges at linear_width * 10^(k / bins_per_decade), k = 1, 2, ...
  /// up to max_abs, which is the outermost edge (the outermost bin may be narrower). So the
  /// histogram covers [-max_abs, max_abs) with 2 * K + 2 bins, K = ceil(bins_per_decade *
  /// log10(max_abs / linear_width)). Throws std::invalid_argument unless 0 < linear_width <
  /// max_abs, both finite, 1 <= bins_per_decade and the bin count is at most kMaxBins.
  static Histogram symlog(double linear_width, double max_abs, std::int64_t bins_per_decade) {
    if (!std::isfinite(linear_width) || !(linear_width > 0.0))
      throw std::invalid_argument("Histogram.symlog: linear_width must be finite and > 0, got " +
                                  num(linear_width));
    if (!std::isfinite(max_abs) || !(max_abs > linear_width))
      throw std::invalid_argument("Histogram.symlog: max_abs must be finite and > linear_width (" +
                                  num(linear_width) + "), got " + num(max_abs));
    if (bins_per_decade < 1 || bins_per_decade > kMaxBins)
      throw std::invalid_argument("Histogram.symlog: bins_per_decade must be in [1, " +
                                  std::to_string(kMaxBins) + "], got " +
                                  std::to_string(bins_per_decade));
    const double per_decade = static_cast<double>(bins_per_decade);
    const double log_width = std::log10(linear_width);
    const double k_real = symlog_steps(linear_width, max_abs, bins_per_decade);
    if (2.0 * k_real + 2.0 > static_cast<double>(kMaxBins))
      throw std::invalid_argument("Histogram.symlog: " + num(2.0 * k_real + 2.0) +
                                  " bins exceed the limit of " + std::to_string(kMaxBins) +
                                  "; lower bins_per_decade or widen linear_width");
    const auto k_max = static_cast<std::int64_t>(k_real);
    std::vector<double> side(static_cast<std::size_t>(k_max) + 1);  // e_0 .. e_K, positive
    side[0] = linear_width;
    for (std::int64_t k = 1; k < k_max; ++k)
      side[k] = std::pow(10.0, log_width + static_cast<double>(k) / per_decade);
    side[k_max] = max_abs;
    std::vector<double> edges;
    edges.reserve(2 * side.size() + 1);
    for (auto it = side.rbegin(); it != side.rend(); ++it) edges.push_back(-*it);
    edges.push_back(0.0);
    edges.insert(edges.end(), side.begin(), side.end());
    Histogram h(std::move(edges), "Histogram.symlog");
    h.kind_ = Kind::Symlog;
    h.p0_ = linear_width;
    h.p1_ = max_abs;
    h.p2_ = bins_per_decade;
    h.scale_ = log_width;
    return h;
  }

  /// Bins between explicit edges. Throws std::invalid_argument unless there are 2 to
  /// kMaxBins + 1 edges, all finite and strictly increasing.
  explicit Histogram(std::vector<double> edges) : Histogram(std::move(edges), "Histogram") {}

  /// Counts one value.
  void update(double x) noexcept { add(x); }

  /// Counts every element of `view` (any layout and DType; a channel axis is ignored). A
  /// broadcast view (stride-0 dimensions) is read once and its counts multiplied.
  void update(const BufferView& view) {
    const DistinctView distinct = distinct_elements(view);
    if (distinct.repeat == 1) {
      for_each_chunk(view, [&](const double* values, std::int64_t n) {
        for (std::int64_t i = 0; i < n; ++i) add(values[i]);
      });
      return;
    }
    Histogram part = *this;
    part.counts_.assign(counts_.size(), 0);
    part.underflow_ = part.overflow_ = part.nan_ = 0;
    part.update(distinct.view);
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += part.counts_[i] * distinct.repeat;
    underflow_ += part.underflow_ * distinct.repeat;
    overflow_ += part.overflow_ * distinct.repeat;
    nan_ += part.nan_ * distinct.repeat;
  }

  /// Adds `other`'s counts. Throws std::invalid_argument unless the edges are identical
  /// (bit for bit); then nothing changes.
  void merge(const Histogram& other) {
    if (other.edges_ != edges_)
      throw std::invalid_argument("Histogram.merge: the histograms have different edges (" +
                                  std::to_string(other.bins()) + " vs " +
                                  std::to_string(bins()) + " bins); only identical edges merge");
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    underflow_ += other.underflow_;
    overflow_ += other.overflow_;
    nan_ += other.nan_;
  }

  Kind kind() const noexcept { return kind_; }
  std::int64_t bins() const noexcept { return static_cast<std::int64_t>(counts_.size()); }
  /// bins() + 1 increasing edges.
  const std::vector<double>& edges() const noexcept { return edges_; }
  /// Count per bin [e[i], e[i+1]).
  const std::vector<std::int64_t>& counts() const noexcept { return counts_; }
  /// Values below e[0], -Inf included.
  std::int64_t underflow() const noexcept { return underflow_; }
  /// Values at or above e[n], +Inf included.
  std::int64_t overflow() const noexcept { return overflow_; }
  /// NaN values (never in a bin).
  std::int64_t nan() const noexcept { return nan_; }
  /// Every value seen: binned, underflow, overflow and NaN.
  std::int64_t total() const noexcept {
    std::int64_t t = underflow_ + overflow_ + nan_;
    for (auto c : counts_) t += c;
    return t;
  }

  /// Version-1 bytes: header, kind (u8), the factory's parameters (f64, f64, i64; zeros for
  /// explicit edges), edges, counts, underflow, overflow, nan.
  std::vector<std::uint8_t> serialize() const {
    ByteWriter w(StateType::Histogram, kVersion);
    w.write<std::uint8_t>(static_cast<std::uint8_t>(kind_));
    w.write<double>(p0_);
    w.write<double>(p1_);
    w.write<std::int64_t>(p2_);
    w.write_vector(edges_);
    w.write_vector(counts_);
    w.write<std::int64_t>(underflow_);
    w.write<std::int64_t>(overflow_);
    w.write<std::int64_t>(nan_);
    return w.take();
  }

  /// Inverse of serialize(). Edges are read back as written (not recomputed), so a state
  /// from another platform keeps merging with its peers. Throws SerializationError for bytes
  /// that are truncated, of another type or version, with invalid edges, negative counts, or
  /// parameters that do not describe the edges.
  static Histogram deserialize(const std::uint8_t* data, std::size_t size) {
    ByteReader r(data, size, StateType::Histogram, kVersion);
    const auto kind = r.read<std::uint8_t>();
    const auto p0 = r.read<double>();
    const auto p1 = r.read<double>();
    const auto p2 = r.read<std::int64_t>();
    auto edges = r.read_vector<double>();
    auto counts = r.read_vector<std::int64_t>();
    const auto underflow = r.read<std::int64_t>();
    const auto overflow = r.read<std::int64_t>();
    const auto nan = r.read<std::int64_t>();
    r.finish();
    check_payload(kind <= 2, "unknown histogram kind");
    check_payload(edges.size() >= 2 && edges.size() - 1 <= static_cast<std::size_t>(kMaxBins),
                  "edge count out of range");
    check_payload(counts.size() + 1 == edges.size(), "counts and edges disagree in length");
    for (std::size_t i = 0; i < edges.size(); ++i)
      check_payload(std::isfinite(edges[i]) && (i == 0 || edges[i - 1] < edges[i]),
                    "edges must be finite and strictly increasing");
    // Every count non-negative and their total representable, so total() cannot overflow.
    std::int64_t room = std::numeric_limits<std::int64_t>::max();
    for (std::int64_t c : counts) {
      check_payload(c >= 0 && c <= room, "counts must be non-negative and sum below 2^63");
      room -= c;
    }
    for (std::int64_t c : {underflow, overflow, nan}) {
      check_payload(c >= 0 && c <= room, "counts must be non-negative and sum below 2^63");
      room -= c;
    }
    Histogram h(std::move(edges), "Histogram.deserialize");
    if (kind == static_cast<std::uint8_t>(Kind::Linear)) {
      const auto bins = static_cast<std::int64_t>(h.counts_.size());
      check_payload(p0 == h.edges_.front() && p1 == h.edges_.back() && p2 == bins,
                    "linear parameters do not match the edges");
      h.kind_ = Kind::Linear;
      h.scale_ = static_cast<double>(bins) / (p1 - p0);
    } else if (kind == static_cast<std::uint8_t>(Kind::Symlog)) {
      const std::size_t zero = h.edges_.size() / 2;
      check_payload(h.edges_.size() % 2 == 1 && h.edges_.size() >= 5 && h.edges_[zero] == 0.0 &&
                        h.edges_[zero + 1] == p0 && h.edges_.back() == p1 && p2 >= 1 &&
                        p2 <= kMaxBins &&
                        symlog_steps(p0, p1, p2) == static_cast<double>(zero - 1),
                    "symlog parameters do not match the edges");
      h.kind_ = Kind::Symlog;
      h.scale_ = std::log10(p0);
    } else {
      check_payload(p0 == 0.0 && p1 == 0.0 && p2 == 0, "explicit edges carry no parameters");
    }
    h.p0_ = p0;
    h.p1_ = p1;
    h.p2_ = p2;
    h.counts_ = std::move(counts);
    h.underflow_ = underflow;
    h.overflow_ = overflow;
    h.nan_ = nan;
    return h;
  }

 private:
  Histogram(std::vector<double> edges, const char* caller) : edges_(std::move(edges)) {
    if (edges_.size() < 2 || edges_.size() - 1 > static_cast<std::size_t>(kMaxBins))
      throw std::invalid_argument(std::string(caller) + ": edges must hold 2 to " +
                                  std::to_string(kMaxBins + 1) + " values, got " +
                                  std::to_string(edges_.size()));
    const bool factory = is_factory(caller);
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      if (!std::isfinite(edges_[i]))
        throw std::invalid_argument(std::string(caller) + ": edges must be finite, edge " +
                                    std::to_string(i) + " is " + num(edges_[i]));
      if (i > 0 && !(edges_[i - 1] < edges_[i]))
        throw std::invalid_argument(
            std::string(caller) + ": edges must be strictly increasing, but edge " +
            std::to_string(i) + " (" + num(edges_[i]) + ") does not exceed the one before (" +
            num(edges_[i - 1]) + ")" +
            (factory ? "; the bins are too narrow for the range" : ""));
    }
    counts_.assign(edges_.size() - 1, 0);
  }

  static bool is_factory(const char* caller) {
    const std::string name = caller;
    return name == "Histogram.linear" || name == "Histogram.symlog";
  }

  // K, the number of log bins on each side. The slack keeps a ratio that is an exact power of
  // 10^(1/b) (up to rounding) from growing a sliver bin at the end.
  static double symlog_steps(double linear_width, double max_abs, std::int64_t per_decade) {
    const double decades = std::log10(max_abs) - std::log10(linear_width);
    return std::max(1.0, std::ceil(static_cast<double>(per_decade) * decades - 1e-9));
  }

  static void check_bins(const char* caller, std::int64_t bins) {
    if (bins < 1 || bins > kMaxBins)
      throw std::invalid_argument(std::string(caller) + ": bins must be in [1, " +
                                  std::to_string(kMaxBins) + "], got " + std::to_string(bins));
  }

  static std::string num(double x) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.17g", x);
    return buffer;
  }

  void add(double x) noexcept {
    if (std::isnan(x)) {
      ++nan_;
    } else if (x < edges_.front()) {
      ++underflow_;
    } else if (x >= edges_.back()) {
      ++overflow_;
    } else {
      ++counts_[static_cast<std::size_t>(bin_of(x))];
    }
  }

  // Index of the bin holding x, for edges[0] <= x < edges[n]. The arithmetic guess of the
  // linear and symlog kinds can be off by one where rounding meets an edge; the final
  // comparisons against the stored edges make the answer agree with them exactly.
  std::int64_t bin_of(double x) const noexcept {
    const std::int64_t last = static_cast<std::int64_t>(counts_.size()) - 1;
    std::int64_t i;
    if (kind_ == Kind::Linear) {
      i = static_cast<std::int64_t>(std::min((x - edges_.front()) * scale_, double(last)));
    } else if (kind_ == Kind::Symlog) {
      // Selects, not branches: signs and magnitudes of gradients are as good as random.
      const std::int64_t zero = last / 2 + 1;  // index of the edge 0
      const double a = std::fabs(x);
      // Clamped to >= 0 first, so truncation is floor (std::floor is a libm call on x86-64).
      const double k = (approx_log10(std::max(a, p0_)) - scale_) * double(p2_);
      const auto step = static_cast<std::int64_t>(std::clamp(k, 0.0, double(last)));
      const std::int64_t offset = a < p0_ ? 0 : 1 + step;  // bins between edge 0 and x
      i = std::clamp<std::int64_t>(x < 0.0 ? zero - 1 - offset : zero + offset, 0, last);
    } else {
      return search(x);
    }
    i -= x < edges_[i];
    i += x >= edges_[i + 1];
    if (x < edges_[i] || x >= edges_[i + 1]) return search(x);  // edges no factory made
    return i;
  }

  // log10 of a positive normal double to within 6e-5: its exponent, plus a quartic in the
  // mantissa (least squares). Only the guess of a symlog bin uses it; the comparisons against
  // the stored edges then correct it, so bins stay exact. std::log10 costs several times more.
  static double approx_log10(double a) noexcept {
    std::uint64_t bits;
    std::memcpy(&bits, &a, sizeof bits);
    const auto exponent = static_cast<std::int64_t>((bits >> 52) & 0x7FF) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;  // mantissa in [1, 2)
    double m;
    std::memcpy(&m, &bits, sizeof m);
    const double u = m - 1.0;
    const double log2_m =
        u * (1.43854819 + u * (-0.67809125 + u * (0.3236499 + u * -0.08429681)));
    constexpr double kLog10Of2 = 0.30102999566398120;
    return (static_cast<double>(exponent) + log2_m) * kLog10Of2;
  }

  // The last edge <= x, by a binary search whose steps are selects rather than branches: the
  // data decide each step, so branches would be mispredicted half the time.
  std::int64_t search(double x) const noexcept {
    const double* base = edges_.data();
    std::size_t length = edges_.size();
    while (length > 1) {
      const std::size_t half = length / 2;
      base = base[half] <= x ? base + half : base;
      length -= half;
    }
    return base - edges_.data();
  }

  std::vector<double> edges_;
  std::vector<std::int64_t> counts_;
  std::int64_t underflow_ = 0;
  std::int64_t overflow_ = 0;
  std::int64_t nan_ = 0;
  Kind kind_ = Kind::Explicit;
  double p0_ = 0.0, p1_ = 0.0;  // linear: low, high; symlog: linear_width, max_abs
  std::int64_t p2_ = 0;         // linear: bins; symlog: bins_per_decade
  double scale_ = 0.0;          // linear: bins / (high - low); symlog: log10(linear_width)
};

}  // namespace layerscope
