// CRC-32C against published check values and a bit-at-a-time reference.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "layerscope_ext/crc32c.hpp"

namespace ls = layerscope::ext;

namespace {

std::uint32_t bitwise_crc32c(const std::vector<unsigned char>& bytes) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

}  // namespace

TEST(Crc32c, PublishedCheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(ls::crc32c(digits.data(), digits.size()), 0xE3069283u);  // the CRC catalogue's check
  EXPECT_EQ(ls::crc32c(nullptr, 0), 0u);
  const std::vector<unsigned char> zeros(32, 0), ones(32, 0xFF);
  EXPECT_EQ(ls::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720, B.4
  EXPECT_EQ(ls::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
}

TEST(Crc32c, EveryLengthAndAlignmentAgreesWithTheBitwiseReference) {
  std::mt19937 g(3);
  std::vector<unsigned char> bytes(300);
  for (auto& b : bytes) b = static_cast<unsigned char>(g());
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t n = 0; start + n <= bytes.size(); n += 7) {
      const std::vector<unsigned char> piece(bytes.begin() + start, bytes.begin() + start + n);
      ASSERT_EQ(ls::crc32c(piece.data(), n), bitwise_crc32c(piece)) << start << " " << n;
    }
  }
}

TEST(Crc32c, MaskingRotatesAndOffsets) {
  const std::string digits = "123456789";
  const std::uint32_t crc = 0xE3069283u;
  EXPECT_EQ(ls::masked_crc32c(digits.data(), digits.size()),
            static_cast<std::uint32_t>(((crc >> 15) | (crc << 17)) + 0xA282EAD8u));
}
