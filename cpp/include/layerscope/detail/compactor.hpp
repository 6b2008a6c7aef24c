// Private helpers of quantile_sketch.hpp: a small seeded PRNG (no global state, so two sketches
// with the same seed and the same input are bitwise identical), the KLL capacity schedule, and
// the one compaction step every level of the sketch performs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "layerscope/serialize.hpp"

namespace layerscope::detail {

/// xoshiro256** seeded through splitmix64: fast, 256 bits of state, good enough for the coin
/// flips of compaction and the slot choices of a reservoir. The whole state is four words, so it
/// serializes and a deserialized object continues the very same sequence.
class Xoshiro256 {
 public:
  explicit Xoshiro256(std::uint64_t seed = 0) noexcept { reseed(seed); }

  void reseed(std::uint64_t seed) noexcept {
    std::uint64_t x = seed;
    for (auto& word : s_) {  // splitmix64 spreads any seed (0 included) over all state bits
      x += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
    bits_left_ = 0;
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// One fair coin flip; 64 flips are drawn from each 64-bit output.
  bool bit() noexcept {
    if (bits_left_ == 0) {
      bit_pool_ = next();
      bits_left_ = 64;
    }
    const bool b = (bit_pool_ & 1u) != 0;
    bit_pool_ >>= 1;
    --bits_left_;
    return b;
  }

  /// Uniform integer in [0, bound) (bound > 0), by Lemire's multiply-and-reject method.
  std::uint64_t below(std::uint64_t bound) noexcept {
    using u128 = unsigned __int128;
    u128 m = static_cast<u128>(next()) * bound;
    auto low = static_cast<std::uint64_t>(m);
    if (low < bound) {
      const std::uint64_t threshold = (0 - bound) % bound;
      while (low < threshold) {
        m = static_cast<u128>(next()) * bound;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Appends the state, pending coin flips included, to a serialized payload.
  void write(ByteWriter& w) const {
    for (std::uint64_t word : s_) w.write(word);
    w.write(bit_pool_);
    w.write<std::uint64_t>(bits_left_);
  }
  /// Reads what write() wrote; throws SerializationError (state untouched) for an impossible
  /// state: all-zero words, or more pending coin flips than a word holds.
  void read(ByteReader& r) {
    std::uint64_t in[6];
    for (auto& word : in) word = r.read<std::uint64_t>();
    check_payload((in[0] | in[1] | in[2] | in[3]) != 0 && in[5] <= 64, "impossible PRNG state");
    for (int i = 0; i < 4; ++i) s_[i] = in[i];
    bit_pool_ = in[4];
    bits_left_ = static_cast<unsigned>(in[5]);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
  std::uint64_t bit_pool_ = 0;
  unsigned bits_left_ = 0;
};

/// Smallest capacity any level gets, however deep below the top it lies.
inline constexpr std::uint32_t kMinLevelCapacity = 8;

/// Capacity of a level `depth` levels below the top one: ceil(k * (2/3)^depth), at least
/// kMinLevelCapacity. Integer arithmetic, so every platform builds the same schedule.
inline std::uint32_t level_capacity(std::uint32_t k, std::uint32_t depth) noexcept {
  // For k <= 65535, k * (2/3)^depth < 8 once depth > 22; past 30 the integers below overflow.
  if (depth > 30) return kMinLevelCapacity;
  std::uint64_t num = k, den = 1;
  for (std::uint32_t i = 0; i < depth; ++i) {
    num *= 2;
    den *= 3;
  }
  const auto cap = static_cast<std::uint32_t>((num + den - 1) / den);
  return std::max(cap, kMinLevelCapacity);
}

/// Reusable buffers for compact_into, so a compaction allocates nothing in the steady state.
struct CompactScratch {
  std::vector<double> half;
  std::vector<double> merged;
};

/// One compaction: `level` (sorted first when `sorted` is false) gives every second item,
/// starting at index `offset` (0 or 1), to `above`, which stays sorted; the chosen items double
/// their weight by moving up. An odd item out (the largest) stays behind, so an even number of
/// items is compacted and the weight is preserved exactly.
inline void compact_into(std::vector<double>& level, bool sorted, bool offset,
                         std::vector<double>& above, CompactScratch& scratch) {
  if (!sorted) std::sort(level.begin(), level.end());
  const std::size_t even = level.size() & ~std::size_t{1};
  const std::size_t half = even / 2;
  scratch.half.resize(half);
  const double* src = level.data() + (offset ? 1 : 0);
  for (std::size_t i = 0; i < half; ++i) scratch.half[i] = src[2 * i];
  if (above.empty()) {
    above.assign(scratch.half.begin(), scratch.half.end());
  } else {
    scratch.merged.resize(above.size() + half);
    std::merge(above.begin(), above.end(), scratch.half.begin(), scratch.half.end(),
               scratch.merged.begin());
    above.swap(scratch.merged);
  }
  // The odd item out (the largest, last after sorting) stays at this level.
  if (even < level.size()) level[0] = level.back();
  level.resize(level.size() - even);
}

}  // namespace layerscope::detail
