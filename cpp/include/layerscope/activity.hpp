// ActivityTracker: which units (output features, channels, gradient entries) were active in the
// last `window` observed steps, and which are dead. The window is kept as one bitset per step,
// so merging two trackers (two ranks, two pieces of one run) is exact rather than estimated.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "layerscope/serialize.hpp"

namespace layerscope {

/// Per-unit activity over a sliding window of observed steps.
///
/// A step is "observed" when update() is called with it; steps need not be consecutive (a lens
/// may observe every 10th step), and the window counts observed steps, not step numbers.
/// Calling update() again with the newest step ORs into it (a module called twice per step).
///
/// A unit is dead when the tracker has observed at least `window` steps and the unit was
/// inactive in every one of the last `window` observed steps. Before a full window has been
/// observed nothing is dead: there is not yet enough evidence.
///
/// merge(other) makes this tracker what one tracker would be had it observed the union of both
/// step sets, with the activity of a step both observed ORed: exact for the window, the
/// per-unit counts, last_active() and dead(), whatever the two step sets are (equal, disjoint,
/// interleaved). Only steps_observed() can be a lower bound after a merge; see there.
///
/// Memory: window × ceil(units / 64) words, allocated as steps arrive.
class ActivityTracker {
 public:
  /// Throws std::invalid_argument unless units > 0 and window >= 1.
  ActivityTracker(std::int64_t units, std::int64_t window) {
    if (units <= 0)
      throw std::invalid_argument("ActivityTracker: units must be positive, got " +
                                  std::to_string(units));
    if (window < 1)
      throw std::invalid_argument("ActivityTracker: window must be at least 1, got " +
                                  std::to_string(window));
    units_ = static_cast<std::size_t>(units);
    window_ = static_cast<std::size_t>(window);
    words_ = (units_ + 63) / 64;
    last_active_.assign(units_, -1);
  }

  std::size_t units() const noexcept { return units_; }
  std::size_t window() const noexcept { return window_; }

  /// Records that at `step` unit u was active iff active[u * stride] != 0, for u < length.
  /// T is any integer type or bool (a per-unit count of active elements, or a flag).
  /// Throws std::invalid_argument if length != units(), step < 0, or step is older than the
  /// newest step observed so far; the tracker is unchanged when it throws.
  template <class T>
  void update(std::int64_t step, const T* active, std::size_t length,
              std::ptrdiff_t stride = 1) {
    static_assert(std::is_integral_v<T>, "ActivityTracker::update takes integer or bool flags");
    if (length != units_)
      throw std::invalid_argument("ActivityTracker::update: got " + std::to_string(length) +
                                  " values for " + std::to_string(units_) + " units");
    if (step < 0)
      throw std::invalid_argument("ActivityTracker::update: steps must be non-negative, got " +
                                  std::to_string(step));
    if (step < last_step())
      throw std::invalid_argument("ActivityTracker::update: steps must not go backwards, got " +
                                  std::to_string(step) + " after " +
                                  std::to_string(last_step()));
    if (step != last_step()) push_step(step);
    std::uint64_t* bits = slot_bits(newest_slot());
    // Branch-free: activity patterns are data, and a mispredicted branch per unit costs more
    // than the select.
    for (std::size_t base = 0; base < units_; base += 64) {
      const std::size_t end = std::min(units_, base + 64);
      std::uint64_t word = 0;
      for (std::size_t u = base; u < end; ++u) {
        const bool on = active[static_cast<std::ptrdiff_t>(u) * stride] != T{0};
        word |= std::uint64_t{on} << (u - base);
        last_active_[u] = on ? step : last_active_[u];
      }
      bits[base / 64] |= word;
    }
  }

  /// update() from a vector of per-unit counts (nonzero means active).
  void update(std::int64_t step, const std::vector<std::int64_t>& active) {
    update(step, active.data(), active.size());
  }

  /// Makes this tracker the one that observed the union of both step sets (activity of a step
  /// seen by both is ORed). Throws std::invalid_argument if units or window differ. Merging a
  /// tracker with itself leaves it unchanged.
  void merge(const ActivityTracker& other) {
    if (other.units_ != units_ || other.window_ != window_)
      throw std::invalid_argument(
          "ActivityTracker::merge: trackers differ (units " + std::to_string(units_) + " vs " +
          std::to_string(other.units_) + ", window " + std::to_string(window_) + " vs " +
          std::to_string(other.window_) + ")");
    if (other.steps_.empty()) return;
    if (steps_.empty()) {
      *this = other;
      return;
    }
    // The newest `window` steps of the union lie within the union of the two windows (a step
    // newer than all but < window steps of the union is newer than all but < window steps of
    // its own tracker), so walking both windows from the newest end is exact.
    std::vector<std::int64_t> steps;
    std::vector<std::uint64_t> bits;
    std::size_t a = steps_.size(), b = other.steps_.size();
    while ((a > 0 || b > 0) && steps.size() < window_) {
      const std::int64_t sa = a > 0 ? step_at(a - 1) : -1;
      const std::int64_t sb = b > 0 ? other.step_at(b - 1) : -1;
      const std::int64_t s = std::max(sa, sb);
      steps.push_back(s);
      bits.resize(bits.size() + words_, 0);
      std::uint64_t* out = bits.data() + bits.size() - words_;
      if (sa == s) or_into(out, chrono_bits(--a));
      if (sb == s) or_into(out, other.chrono_bits(--b));
    }
    std::reverse(steps.begin(), steps.end());
    // Reverse the slots (not the words inside a slot) to make the ring chronological.
    for (std::size_t i = 0, j = steps.size() - 1; i < j; ++i, --j)
      std::swap_ranges(bits.begin() + i * words_, bits.begin() + (i + 1) * words_,
                       bits.begin() + j * words_);

    steps_observed_ = merged_steps_observed(other, steps.size());
    first_step_ = std::min(first_step_, other.first_step_);
    for (std::size_t u = 0; u < units_; ++u)
      last_active_[u] = std::max(last_active_[u], other.last_active_[u]);
    steps_ = std::move(steps);
    bits_ = std::move(bits);
    head_ = 0;
  }

  /// Distinct steps observed (0 when empty). Exact for a tracker fed by update(). After a merge
  /// it is exact when one step set contains the other (ranks observing the same steps), when
  /// the step ranges do not overlap (consecutive pieces of a run) or when neither tracker had
  /// dropped steps from its window; otherwise (interleaved histories longer than the window)
  /// it is a lower bound, as the dropped steps are no longer known. It is >= window() exactly
  /// when a full window has been observed, so dead() is exact in every case.
  std::int64_t steps_observed() const noexcept { return steps_observed_; }

  /// The newest observed step, or -1 before the first update.
  std::int64_t last_step() const noexcept {
    return steps_.empty() ? -1 : steps_[newest_slot()];
  }

  /// The last step at which `unit` was active, or -1 if never (not limited to the window).
  /// Throws std::out_of_range if unit >= units().
  std::int64_t last_active(std::size_t unit) const { return last_active_.at(unit); }
  /// last_active(u) for every unit.
  const std::vector<std::int64_t>& last_active() const noexcept { return last_active_; }

  /// Number of the last min(window, steps_observed) observed steps in which `unit` was active.
  /// Throws std::out_of_range if unit >= units().
  std::int64_t active_steps(std::size_t unit) const {
    check_unit(unit);
    std::int64_t n = 0;
    for (std::size_t s = 0; s < steps_.size(); ++s) n += bit(slot_bits(s), unit);
    return n;
  }
  /// active_steps(u) for every unit.
  std::vector<std::int64_t> active_steps() const {
    std::vector<std::int64_t> counts(units_, 0);
    for (std::size_t s = 0; s < steps_.size(); ++s) {
      const std::uint64_t* bits = slot_bits(s);
      for (std::size_t u = 0; u < units_; ++u) counts[u] += bit(bits, u);
    }
    return counts;
  }

  /// True once a full window has been observed.
  bool window_full() const noexcept { return steps_.size() == window_; }

  /// Whether `unit` is dead (see the class comment). Throws std::out_of_range if out of range.
  bool dead(std::size_t unit) const {
    check_unit(unit);
    return window_full() && active_steps(unit) == 0;
  }
  /// dead(u) for every unit, as 0/1 bytes (all 0 before a full window).
  std::vector<std::uint8_t> dead() const {
    std::vector<std::uint8_t> flags(units_, 0);
    if (!window_full()) return flags;
    const std::vector<std::uint64_t> any = any_active();
    for (std::size_t u = 0; u < units_; ++u) flags[u] = bit(any.data(), u) ? 0 : 1;
    return flags;
  }
  /// Number of dead units (0 before a full window).
  std::int64_t dead_count() const {
    if (!window_full()) return 0;
    std::int64_t alive = 0;
    for (std::uint64_t w : any_active()) alive += popcount(w);
    return static_cast<std::int64_t>(units_) - alive;
  }
  /// dead_count() / units(), in [0, 1]; never NaN since units() > 0.
  double dead_fraction() const {
    return static_cast<double>(dead_count()) / static_cast<double>(units_);
  }

  /// Versioned bytes (StateType::ActivityTracker, version 1); the window is written oldest step
  /// first, so equal states give equal bytes however the ring is rotated.
  std::vector<std::uint8_t> serialize() const {
    ByteWriter w(StateType::ActivityTracker, kVersion);
    w.write<std::uint64_t>(units_);
    w.write<std::uint64_t>(window_);
    w.write<std::int64_t>(steps_observed_);
    w.write<std::int64_t>(first_step_);
    std::vector<std::int64_t> steps(steps_.size());
    std::vector<std::uint64_t> bits(bits_.size());
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      steps[i] = step_at(i);
      std::copy_n(chrono_bits(i), words_, bits.begin() + i * words_);
    }
    w.write_vector(steps);
    w.write_vector(bits);
    w.write_vector(last_active_);
    return w.take();
  }

  /// Reads serialize()'s bytes back. Throws SerializationError (a std::invalid_argument) for
  /// truncated, corrupted or foreign bytes, including a state no sequence of updates and merges
  /// could produce.
  static ActivityTracker deserialize(const std::uint8_t* data, std::size_t size) {
    ByteReader r(data, size, StateType::ActivityTracker, kVersion);
    const auto units = r.read<std::uint64_t>();
    const auto window = r.read<std::uint64_t>();
    const auto observed = r.read<std::int64_t>();
    const auto first = r.read<std::int64_t>();
    auto steps = r.read_vector<std::int64_t>();
    auto bits = r.read_vector<std::uint64_t>();
    auto last_active = r.read_vector<std::int64_t>();
    r.finish();

    check_payload(units > 0 && last_active.size() == units, "unit count");
    check_payload(window >= 1 && window <= static_cast<std::uint64_t>(INT64_MAX) &&
                      steps.size() <= window, "window size");
    const std::size_t words = (units + 63) / 64;
    check_payload(bits.size() % words == 0 && bits.size() / words == steps.size(),
                  "bitset size");
    check_payload(std::is_sorted(steps.begin(), steps.end()) &&
                      std::adjacent_find(steps.begin(), steps.end()) == steps.end(),
                  "steps not increasing");
    check_payload(observed >= static_cast<std::int64_t>(steps.size()) &&
                      (observed == static_cast<std::int64_t>(steps.size()) ||
                       steps.size() == window),
                  "step count");
    check_payload(steps.empty() ? first == -1 : (first >= 0 && first <= steps.front()),
                  "first step");
    if (units % 64 != 0)
      for (std::size_t s = 0; s < steps.size(); ++s)
        check_payload((bits[s * words + words - 1] >> (units % 64)) == 0, "padding bits");

    ActivityTracker t(static_cast<std::int64_t>(units), static_cast<std::int64_t>(window));
    t.steps_ = std::move(steps);
    t.bits_ = std::move(bits);
    t.steps_observed_ = observed;
    t.first_step_ = first;
    // last_active must agree with the window: the newest step with the bit set, or (if the
    // unit is inactive in the window) older than the window, and -1 if nothing was dropped.
    for (std::size_t u = 0; u < t.units_; ++u) {
      std::int64_t newest = -1;
      for (std::size_t s = t.steps_.size(); s-- > 0;)
        if (bit(t.slot_bits(s), u)) { newest = t.steps_[s]; break; }
      const std::int64_t la = last_active[u];
      const bool dropped = observed > static_cast<std::int64_t>(t.steps_.size());
      check_payload(newest >= 0 ? la == newest
                                : la == -1 || (dropped && la >= first && la < t.steps_.front()),
                    "last active step");
    }
    t.last_active_ = std::move(last_active);
    return t;
  }

 private:
  static constexpr std::uint8_t kVersion = 1;

  static bool bit(const std::uint64_t* bits, std::size_t u) noexcept {
    return (bits[u / 64] >> (u % 64)) & 1U;
  }
  static std::int64_t popcount(std::uint64_t w) noexcept {
    std::int64_t n = 0;
    for (; w != 0; w &= w - 1) ++n;
    return n;
  }
  void or_into(std::uint64_t* out, const std::uint64_t* in) const noexcept {
    for (std::size_t k = 0; k < words_; ++k) out[k] |= in[k];
  }
  void check_unit(std::size_t unit) const {
    if (unit >= units_)
      throw std::out_of_range("ActivityTracker: unit " + std::to_string(unit) +
                              " out of range for " + std::to_string(units_) + " units");
  }

  // The ring: slots_ in storage order; once full, head_ is the oldest slot.
  std::size_t newest_slot() const noexcept {
    return (head_ + steps_.size() - 1) % steps_.size();
  }
  std::size_t chrono_slot(std::size_t i) const noexcept { return (head_ + i) % steps_.size(); }
  std::int64_t step_at(std::size_t i) const noexcept { return steps_[chrono_slot(i)]; }
  const std::uint64_t* chrono_bits(std::size_t i) const noexcept {
    return slot_bits(chrono_slot(i));
  }
  const std::uint64_t* slot_bits(std::size_t slot) const noexcept {
    return bits_.data() + slot * words_;
  }
  std::uint64_t* slot_bits(std::size_t slot) noexcept { return bits_.data() + slot * words_; }

  void push_step(std::int64_t step) {
    if (steps_.size() < window_) {
      steps_.push_back(step);
      bits_.resize(bits_.size() + words_, 0);
    } else {
      steps_[head_] = step;
      std::fill_n(slot_bits(head_), words_, 0);
      head_ = (head_ + 1) % window_;
    }
    if (steps_observed_ == 0) first_step_ = step;
    ++steps_observed_;
  }

  std::vector<std::uint64_t> any_active() const {
    std::vector<std::uint64_t> any(words_, 0);
    for (std::size_t s = 0; s < steps_.size(); ++s) or_into(any.data(), slot_bits(s));
    return any;
  }

  // Distinct steps of the union: exact for disjoint step ranges; otherwise the largest of the
  // known lower bounds (each input's count, and the union of the two windows), which is exact
  // when one set contains the other or nothing was dropped from either window.
  std::int64_t merged_steps_observed(const ActivityTracker& other,
                                     std::size_t merged_slots) const {
    if (last_step() < other.first_step_ || other.last_step() < first_step_)
      return steps_observed_ + other.steps_observed_;
    std::int64_t windows_union = static_cast<std::int64_t>(merged_slots);
    if (merged_slots == window_) {  // the union of the windows may be larger than one window
      windows_union = 0;
      for (std::size_t a = 0, b = 0; a < steps_.size() || b < other.steps_.size();) {
        const bool take_a = b == other.steps_.size() ||
                            (a < steps_.size() && step_at(a) <= other.step_at(b));
        const bool take_b = a == steps_.size() ||
                            (b < other.steps_.size() && other.step_at(b) <= step_at(a));
        a += take_a;
        b += take_b;
        ++windows_union;
      }
    }
    return std::max({steps_observed_, other.steps_observed_, windows_union});
  }

  std::size_t units_ = 0;
  std::size_t window_ = 0;
  std::size_t words_ = 0;
  std::vector<std::int64_t> steps_;   // one step number per slot
  std::vector<std::uint64_t> bits_;   // words_ words per slot, bit u = unit u was active
  std::size_t head_ = 0;
  std::int64_t steps_observed_ = 0;
  std::int64_t first_step_ = -1;
  std::vector<std::int64_t> last_active_;
};

}  // namespace layerscope
