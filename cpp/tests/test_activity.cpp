// ActivityTracker against a brute-force reference: the list of (step, set of active units).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "layerscope/activity.hpp"

namespace {

using layerscope::ActivityTracker;
using layerscope::SerializationError;

// The reference: every observed step with the units active at it, in step order.
struct Reference {
  std::size_t units, window;
  std::map<std::int64_t, std::set<std::size_t>> steps;

  void update(std::int64_t step, const std::vector<std::int64_t>& active) {
    auto& s = steps[step];
    for (std::size_t u = 0; u < units; ++u)
      if (active[u] != 0) s.insert(u);
  }
  std::vector<const std::set<std::size_t>*> last_window() const {
    std::vector<const std::set<std::size_t>*> out;
    for (auto it = steps.rbegin(); it != steps.rend() && out.size() < window; ++it)
      out.push_back(&it->second);
    return out;
  }
  // exact_count: whether steps_observed() must be exact or may be a lower bound (>= window).
  void expect_matches(const ActivityTracker& t, bool exact_count = true) const {
    const auto n = static_cast<std::int64_t>(steps.size());
    if (exact_count) {
      ASSERT_EQ(t.steps_observed(), n);
    } else {
      ASSERT_LE(t.steps_observed(), n);
      ASSERT_GE(t.steps_observed(),
                static_cast<std::int64_t>(std::min<std::size_t>(window, steps.size())));
    }
    const auto win = last_window();
    const bool full = win.size() == window;
    std::int64_t dead = 0;
    for (std::size_t u = 0; u < units; ++u) {
      std::int64_t count = 0, last = -1;
      for (const auto* s : win) count += s->count(u);
      for (const auto& [step, s] : steps)
        if (s.count(u)) last = step;
      EXPECT_EQ(t.active_steps(u), count) << "unit " << u;
      EXPECT_EQ(t.active_steps()[u], count);
      EXPECT_EQ(t.last_active(u), last);
      EXPECT_EQ(t.dead(u), full && count == 0);
      EXPECT_EQ(t.dead()[u], full && count == 0 ? 1 : 0);
      dead += full && count == 0;
    }
    EXPECT_EQ(t.dead_count(), dead);
  }
};

std::vector<std::int64_t> random_activity(std::mt19937_64& rng, std::size_t units, double p) {
  std::bernoulli_distribution active(p);
  std::vector<std::int64_t> a(units);
  for (auto& v : a) v = active(rng) ? 1 + static_cast<std::int64_t>(rng() % 5) : 0;
  return a;
}

TEST(ActivityTracker, RejectsBadArguments) {
  EXPECT_THROW(ActivityTracker(0, 5), std::invalid_argument);
  EXPECT_THROW(ActivityTracker(3, 0), std::invalid_argument);
  ActivityTracker t(3, 2);
  EXPECT_THROW(t.update(0, std::vector<std::int64_t>{1, 0}), std::invalid_argument);
  EXPECT_THROW(t.update(-1, std::vector<std::int64_t>{1, 0, 0}), std::invalid_argument);
  t.update(5, std::vector<std::int64_t>{1, 0, 0});
  EXPECT_THROW(t.update(4, std::vector<std::int64_t>{1, 0, 0}), std::invalid_argument);
  EXPECT_EQ(t.steps_observed(), 1);
  EXPECT_THROW(t.last_active(3), std::out_of_range);
  EXPECT_THROW(t.merge(ActivityTracker(3, 3)), std::invalid_argument);
  EXPECT_THROW(t.merge(ActivityTracker(4, 2)), std::invalid_argument);
}

TEST(ActivityTracker, NeverActiveUnitDiesAfterExactlyOneWindow) {
  ActivityTracker t(2, 3);
  const std::vector<std::int64_t> only_first{1, 0};
  for (std::int64_t step = 0; step < 3; ++step) {
    EXPECT_FALSE(t.dead(1)) << "nothing is dead before a full window";
    EXPECT_EQ(t.dead_count(), 0);
    t.update(step * 10, only_first);
  }
  EXPECT_TRUE(t.dead(1));
  EXPECT_FALSE(t.dead(0));
  EXPECT_DOUBLE_EQ(t.dead_fraction(), 0.5);
  EXPECT_EQ(t.last_active(1), -1);
}

TEST(ActivityTracker, UnitActiveOnceDiesAgainOneWindowLater) {
  ActivityTracker t(1, 4);
  const std::vector<std::int64_t> off{0}, on{3};
  for (std::int64_t s = 0; s < 6; ++s) t.update(s, off);
  EXPECT_TRUE(t.dead(0));
  t.update(6, on);
  for (std::int64_t s = 7; s < 10; ++s) {
    t.update(s, off);
    EXPECT_FALSE(t.dead(0));
  }
  t.update(10, off);  // the 4th observed step after the active one
  EXPECT_TRUE(t.dead(0));
  EXPECT_EQ(t.last_active(0), 6);
}

TEST(ActivityTracker, SameStepTwiceOrs) {
  ActivityTracker t(3, 2);
  t.update(1, std::vector<std::int64_t>{1, 0, 0});
  t.update(1, std::vector<std::int64_t>{0, 2, 0});
  EXPECT_EQ(t.steps_observed(), 1);
  EXPECT_EQ(t.active_steps(), (std::vector<std::int64_t>{1, 1, 0}));
}

TEST(ActivityTracker, AcceptsStridedBoolAndNarrowIntegers) {
  ActivityTracker t(3, 2);
  const bool flags[6] = {true, false, false, false, true, false};
  t.update(0, flags, 3, 2);  // units 0 and 2
  const std::uint8_t bytes[3] = {0, 7, 0};
  t.update(1, bytes, 3);
  EXPECT_EQ(t.active_steps(), (std::vector<std::int64_t>{1, 1, 1}));
  const std::int32_t reversed[3] = {0, 0, 9};
  t.update(2, reversed + 2, 3, -1);  // unit 0 reads reversed[2]
  EXPECT_EQ(t.last_active(), (std::vector<std::int64_t>{2, 1, 0}));
}

TEST(ActivityTracker, MatchesReferenceOnRandomSequences) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t units = 1 + rng() % 130, window = 1 + rng() % 9;
    ActivityTracker t(static_cast<std::int64_t>(units), static_cast<std::int64_t>(window));
    Reference ref{units, window, {}};
    std::int64_t step = 0;
    for (int i = 0; i < 30; ++i) {
      step += static_cast<std::int64_t>(rng() % 3);  // 0 repeats the step
      const auto a = random_activity(rng, units, 0.05);
      t.update(step, a);
      ref.update(step, a);
      ref.expect_matches(t);
    }
  }
}

// Builds a tracker and its reference from (step, activity) pairs.
void feed(ActivityTracker& t, Reference& ref, std::int64_t step,
          const std::vector<std::int64_t>& a) {
  t.update(step, a);
  ref.update(step, a);
}

TEST(ActivityTracker, MergeIsExactForEqualDisjointAndInterleavedSteps) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t units = 1 + rng() % 70, window = 1 + rng() % 6;
    const int mode = trial % 3;  // 0: same steps, 1: consecutive ranges, 2: interleaved
    const auto n = static_cast<std::int64_t>(rng() % 12);
    ActivityTracker a(static_cast<std::int64_t>(units), static_cast<std::int64_t>(window));
    ActivityTracker b = a;
    Reference all{units, window, {}}, ra = all, rb = all;
    for (std::int64_t i = 0; i < n; ++i) {
      const auto x = random_activity(rng, units, 0.1), y = random_activity(rng, units, 0.1);
      if (mode == 0) {
        feed(a, ra, i, x), feed(b, rb, i, y);
        all.update(i, x), all.update(i, y);
      } else if (mode == 1) {
        feed(a, ra, i, x), feed(b, rb, n + i, y);
        all.update(i, x), all.update(n + i, y);
      } else {
        feed(a, ra, 2 * i, x), feed(b, rb, 2 * i + 1, y);
        all.update(2 * i, x), all.update(2 * i + 1, y);
      }
    }
    ActivityTracker ab = a, ba = b;
    ab.merge(b);
    ba.merge(a);
    // Interleaved histories longer than the window: steps_observed is only a lower bound.
    const bool exact_count = !(mode == 2 && n > static_cast<std::int64_t>(window));
    all.expect_matches(ab, exact_count);
    const auto bytes = ba.serialize();
    all.expect_matches(ActivityTracker::deserialize(bytes.data(), bytes.size()), exact_count);
    EXPECT_EQ(ab.serialize(), ba.serialize()) << "merge is commutative";
  }
}

TEST(ActivityTracker, MergeWithItselfAndEmpty) {
  ActivityTracker t(5, 3), empty(5, 3);
  std::mt19937_64 rng(3);
  for (std::int64_t s = 0; s < 7; ++s) t.update(s, random_activity(rng, 5, 0.3));
  const auto before = t.serialize();
  t.merge(t);
  EXPECT_EQ(t.serialize(), before);
  t.merge(empty);
  EXPECT_EQ(t.serialize(), before);
  empty.merge(t);
  EXPECT_EQ(empty.serialize(), before);
}

TEST(ActivityTracker, SerializeRoundTripAndRejectsCorruption) {
  ActivityTracker t(70, 3);
  std::mt19937_64 rng(5);
  for (std::int64_t s = 0; s < 5; ++s) t.update(s, random_activity(rng, 70, 0.2));
  const auto bytes = t.serialize();
  const auto back = ActivityTracker::deserialize(bytes.data(), bytes.size());
  EXPECT_EQ(back.serialize(), bytes);
  EXPECT_EQ(back.active_steps(), t.active_steps());
  EXPECT_EQ(back.last_active(), t.last_active());

  for (std::size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_THROW(ActivityTracker::deserialize(bytes.data(), cut), SerializationError);
  // Flipping any bit of the payload either throws or yields a valid state; it never crashes.
  for (std::size_t i = 6; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] ^= 0x80;
    try {
      (void)ActivityTracker::deserialize(bad.data(), bad.size()).dead();
    } catch (const SerializationError&) {
    }
  }
  auto padding = bytes;
  padding[6 + 8 * 4 + 8 + 3 * 8 + 8 + 15] |= 0x80;  // bit 127 of slot 0: unit 127 >= 70
  EXPECT_THROW(ActivityTracker::deserialize(padding.data(), padding.size()), SerializationError);
}

}  // namespace
