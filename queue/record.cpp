// record.cpp — CRC-32C and the record framing of the spool (see record.hpp).
#include "queue/record.hpp"

#include <array>
#include <cstring>

#include "queue/queue_id.hpp"

namespace sluice::queue::record {
namespace {

// Reflected Castagnoli polynomial.
constexpr uint32_t kPoly = 0x82F63B78u;

// Slice-by-8 tables: kTables[0] is the classic byte table, kTables[k][b] the
// CRC of byte b followed by k zero bytes.
constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  return t;
}
constexpr auto kTables = make_tables();

// Works on the inverted register (no pre/post inversion here).
uint32_t update_portable(uint32_t c, const unsigned char* p, size_t n) {
  while (n >= 8) {
    uint64_t w = uint64_t(p[0]) | uint64_t(p[1]) << 8 | uint64_t(p[2]) << 16 |
                 uint64_t(p[3]) << 24 | uint64_t(p[4]) << 32 | uint64_t(p[5]) << 40 |
                 uint64_t(p[6]) << 48 | uint64_t(p[7]) << 56;
    w ^= c;
    c = kTables[7][w & 0xFF] ^ kTables[6][(w >> 8) & 0xFF] ^ kTables[5][(w >> 16) & 0xFF] ^
        kTables[4][(w >> 24) & 0xFF] ^ kTables[3][(w >> 32) & 0xFF] ^
        kTables[2][(w >> 40) & 0xFF] ^ kTables[1][(w >> 48) & 0xFF] ^ kTables[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFF];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t c, const unsigned char* p,
                                                         size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
    p += 8;
    n -= 8;
  }
  c = uint32_t(c64);
  while (n--) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}

bool have_sse42() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

void put_le32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = char((v >> (8 * i)) & 0xFF);
}

uint32_t get_le32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace

namespace detail {
uint32_t crc32c_portable(std::string_view bytes, uint32_t crc) {
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  return ~update_portable(~crc, p, bytes.size());
}
}  // namespace detail

uint32_t crc32c(std::string_view bytes, uint32_t crc) {
#if defined(__x86_64__)
  if (have_sse42()) {
    auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    return ~update_sse42(~crc, p, bytes.size());
  }
#endif
  return detail::crc32c_portable(bytes, crc);
}

void seal(Type type, char* rec, size_t payload_size) {
  rec[8] = char(type);
  uint32_t crc = crc32c(std::string_view(rec + 8, 1));
  crc = crc32c(std::string_view(rec + kHeaderSize, payload_size), crc);
  put_le32(rec, uint32_t(payload_size));
  put_le32(rec + 4, crc);
}

std::string make(Type type, std::string_view id, std::string_view body) {
  std::string rec;
  rec.reserve(kPrefixSize + body.size());
  rec.append(kHeaderSize, '\0');
  rec.append(id);
  rec.append(body);
  seal(type, rec.data(), rec.size() - kHeaderSize);
  return rec;
}

std::string_view to_string(Error e) {
  switch (e) {
    case Error::truncated: return "truncated record";
    case Error::bad_length: return "bad record length";
    case Error::bad_crc: return "checksum mismatch";
    case Error::bad_type: return "unknown record type";
    case Error::bad_id: return "bad queue id in record";
  }
  return "bad record";
}

std::expected<View, Error> parse(std::string_view bytes) {
  if (bytes.size() < kHeaderSize) return std::unexpected(Error::truncated);
  uint32_t len = get_le32(bytes.data());
  uint32_t want = get_le32(bytes.data() + 4);
  if (len > kMaxPayload) return std::unexpected(Error::bad_length);
  if (len > bytes.size() - kHeaderSize) return std::unexpected(Error::truncated);
  std::string_view payload = bytes.substr(kHeaderSize, len);
  uint32_t crc = crc32c(bytes.substr(8, 1));
  if (crc32c(payload, crc) != want) return std::unexpected(Error::bad_crc);
  auto type = static_cast<Type>(static_cast<unsigned char>(bytes[8]));
  if (type != Type::chunk && type != Type::commit && type != Type::done && type != Type::head)
    return std::unexpected(Error::bad_type);
  if (len < kIdSize || (type == Type::done && len != kIdSize))
    return std::unexpected(Error::bad_length);
  std::string_view id = payload.substr(0, kIdSize);
  if (!valid_queue_id(id)) return std::unexpected(Error::bad_id);
  return View{type, id, payload.substr(kIdSize), kHeaderSize + size_t(len)};
}

}  // namespace sluice::queue::record
