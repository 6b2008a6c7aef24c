// Versioned byte encoding shared by every state type: a header {magic "LSCP", type, version}
// followed by little-endian fields. Readers check everything and throw on truncation or
// corruption, so bytes from a checkpoint or another process can never crash the engine.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "layerscope serializes in little-endian byte order; big-endian hosts are not supported"
#endif

namespace layerscope {

/// Identifies which state type a byte string holds.
enum class StateType : std::uint8_t {
  Moments = 1,
  ChannelMoments = 2,
  Histogram = 3,
  QuantileSketch = 4,
  ExactQuantiles = 5,
  ActivityTracker = 6,
};

/// Thrown for bytes that are truncated, corrupted, of another type or of an unknown version.
/// Derives from std::invalid_argument, which the Python binding turns into ValueError.
class SerializationError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
inline constexpr char kMagic[4] = {'L', 'S', 'C', 'P'};
static_assert(sizeof(double) == 8 && sizeof(float) == 4, "IEEE 754 binary32/64 required");
}  // namespace detail

/// Appends fields to a byte string. Integers and floats are written in the host's byte order,
/// which must be little-endian (checked at compile time where the compiler says).
class ByteWriter {
 public:
  ByteWriter(StateType type, std::uint8_t version) {
    // Reserving first also keeps GCC 12's -Wstringop-overflow from a false positive here.
    bytes_.reserve(64);
    bytes_.insert(bytes_.end(), detail::kMagic, detail::kMagic + 4);
    bytes_.push_back(static_cast<std::uint8_t>(type));
    bytes_.push_back(version);
  }

  template <class T> void write(T value) {
    static_assert(std::is_arithmetic_v<T>, "ByteWriter::write takes arithmetic values");
    unsigned char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }

  /// Writes the length, then the elements.
  template <class T> void write_vector(const std::vector<T>& values) {
    write<std::uint64_t>(values.size());
    for (const T& v : values) write(v);
  }

  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }
  std::vector<std::uint8_t> take() noexcept { return std::move(bytes_); }

 private:
  std::vector<std::uint8_t> bytes_;
};

/// Reads fields back, checking the header first. Every read throws SerializationError past
/// the end; finish() throws if bytes are left over.
class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size, StateType type,
             std::uint8_t max_version)
      : data_(data), size_(size) {
    const char* name = type_name(type);
    if (size_ < 6 || std::memcmp(data_, detail::kMagic, 4) != 0)
      throw SerializationError(std::string("layerscope: not a serialized ") + name +
                               " (bad or missing header)");
    if (data_[4] != static_cast<std::uint8_t>(type))
      throw SerializationError(std::string("layerscope: bytes hold a ") +
                               type_name(static_cast<StateType>(data_[4])) + ", not a " + name);
    version_ = data_[5];
    if (version_ == 0 || version_ > max_version)
      throw SerializationError(std::string("layerscope: ") + name + " version " +
                               std::to_string(version_) + " is not supported (newest known: " +
                               std::to_string(max_version) + ")");
    pos_ = 6;
  }

  std::uint8_t version() const noexcept { return version_; }

  template <class T> T read() {
    static_assert(std::is_arithmetic_v<T>, "ByteReader::read takes arithmetic types");
    need(sizeof(T));
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  /// Reads a length-prefixed vector; the length is checked against the bytes left before any
  /// allocation, so a corrupted length cannot ask for gigabytes.
  template <class T> std::vector<T> read_vector() {
    const auto n = read<std::uint64_t>();
    if (n > (size_ - pos_) / sizeof(T)) throw SerializationError("layerscope: truncated bytes");
    std::vector<T> values(static_cast<std::size_t>(n));
    for (auto& v : values) v = read<T>();
    return values;
  }

  /// Throws if unread bytes remain (a sign of a corrupted or mismatched payload).
  void finish() const {
    if (pos_ != size_)
      throw SerializationError("layerscope: " + std::to_string(size_ - pos_) +
                               " unexpected trailing bytes");
  }

  static const char* type_name(StateType type) noexcept {
    switch (type) {
      case StateType::Moments: return "Moments";
      case StateType::ChannelMoments: return "ChannelMoments";
      case StateType::Histogram: return "Histogram";
      case StateType::QuantileSketch: return "QuantileSketch";
      case StateType::ExactQuantiles: return "ExactQuantiles";
      case StateType::ActivityTracker: return "ActivityTracker";
    }
    return "unknown state";
  }

 private:
  void need(std::size_t n) const {
    if (n > size_ - pos_) throw SerializationError("layerscope: truncated bytes");
  }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::uint8_t version_ = 0;
};

/// Throws SerializationError with `what` unless `condition` holds; for invariants of a payload
/// (a count that must be non-negative, sizes that must agree).
inline void check_payload(bool condition, const char* what) {
  if (!condition) throw SerializationError(std::string("layerscope: corrupted bytes: ") + what);
}

}  // namespace layerscope
