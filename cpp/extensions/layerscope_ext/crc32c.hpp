// Not part of layerscope::core (no statistic; never installed): the Python package's TensorBoard
// sink frames its event files with it, through bind_crc32c.cpp.
//
// CRC-32C (Castagnoli), the checksum of TensorBoard's event files (TFRecord framing), and its
// "masked" form those files store. Table-driven, eight bytes a step ("slicing by 8"): about a
// byte a nanosecond, where TensorBoard's pure-Python writer spends ~150 ns a byte.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace layerscope::ext {

namespace detail {

/// table[k][b]: the CRC of byte b followed by k zero bytes (reflected polynomial 0x82F63B78).
inline const std::array<std::array<std::uint32_t, 256>, 8>& crc32c_tables() {
  static const auto tables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t b = 0; b < 256; ++b) {
      std::uint32_t crc = b;
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
      t[0][b] = crc;
    }
    for (std::size_t k = 1; k < 8; ++k)
      for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    return t;
  }();
  return tables;
}

}  // namespace detail

/// CRC-32C of `size` bytes at `data`.
inline std::uint32_t crc32c(const void* data, std::size_t size) noexcept {
  const auto& t = detail::crc32c_tables();
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t crc = 0xFFFFFFFFu;
  for (; size >= 8; size -= 8, p += 8) {
    const std::uint32_t low = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                     std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    crc = t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^ t[4][low >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; size > 0; --size, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return crc ^ 0xFFFFFFFFu;
}

/// The masked CRC-32C that TFRecord framing stores (rotated, plus a constant), so that a CRC
/// of data that holds CRCs stays well distributed.
inline std::uint32_t masked_crc32c(const void* data, std::size_t size) noexcept {
  const std::uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

}  // namespace layerscope::ext
