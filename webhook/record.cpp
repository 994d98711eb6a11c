// record.cpp — see record.hpp.
#include "webhook/record.hpp"

#include <array>

#include <fmt/format.h>

namespace sluice::webhook {

namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

// A decimal field of 1..max_digits digits, no leading zero (except "0"
// itself) at the front of `s`, ended by `end`. nullopt if malformed;
// `more` set when `s` ran out before the end (could still become valid).
struct Field {
  std::optional<uint64_t> value;
  size_t used = 0;  // digits + the end octet
  bool more = false;
};
Field decimal(std::string_view s, size_t max_digits, char end) {
  Field f;
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && is_digit(s[i])) {
    if (i == max_digits) return f;  // too long
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
    ++i;
  }
  if (i == s.size()) {
    f.more = !(i > 1 && s[0] == '0');
    return f;
  }
  if (i == 0 || s[i] != end || (i > 1 && s[0] == '0')) return f;
  f.value = v;
  f.used = i + 1;
  return f;
}

}  // namespace

uint32_t crc32(std::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string encode_record(int64_t stored_s, std::string_view payload) {
  return fmt::format("W1 {} {} {:08x}\n{}\n", stored_s, payload.size(), crc32(payload), payload);
}

Decoded decode_record(std::string_view in) {
  using S = Decoded::Status;
  Decoded d;
  auto bad = [&d](std::string_view why) {
    d.status = S::bad;
    d.reason = why;
    return d;
  };
  auto incomplete = [&d] {
    d.status = S::incomplete;
    return d;
  };
  static constexpr std::string_view kMagic = "W1 ";
  if (in.size() < kMagic.size()) return kMagic.starts_with(in) ? incomplete() : bad("not a record");
  if (!in.starts_with(kMagic)) return bad("not a record");
  size_t pos = kMagic.size();
  auto stored = decimal(in.substr(pos), 12, ' ');
  if (!stored.value) return stored.more ? incomplete() : bad("bad time");
  pos += stored.used;
  auto length = decimal(in.substr(pos), 6, ' ');
  if (!length.value) return length.more ? incomplete() : bad("bad length");
  if (*length.value == 0 || *length.value > kMaxPayload) return bad("bad length");
  pos += length.used;
  uint32_t crc = 0;
  for (size_t i = 0; i < 8; ++i, ++pos) {
    if (pos == in.size()) return incomplete();
    if (!is_lower_hex(in[pos])) return bad("bad checksum field");
    crc = crc * 16 + static_cast<uint32_t>(is_digit(in[pos]) ? in[pos] - '0' : in[pos] - 'a' + 10);
  }
  if (pos == in.size()) return incomplete();
  if (in[pos] != '\n') return bad("bad header end");
  ++pos;
  const size_t n = *length.value;
  if (in.size() - pos < n + 1) return incomplete();
  const std::string_view payload = in.substr(pos, n);
  if (in[pos + n] != '\n') return bad("bad record end");
  if (crc32(payload) != crc) return bad("checksum mismatch");
  d.status = S::ok;
  d.record = {static_cast<int64_t>(*stored.value), payload};
  d.size = pos + n + 1;
  return d;
}

std::string encode_ack(Position p) { return fmt::format("A1 {} {}\n", p.seq, p.offset); }

std::optional<Position> decode_ack(std::string_view in) {
  if (!in.starts_with("A1 ")) return std::nullopt;
  in.remove_prefix(3);
  auto seq = decimal(in, 19, ' ');
  if (!seq.value) return std::nullopt;
  in.remove_prefix(seq.used);
  auto off = decimal(in, 19, '\n');
  if (!off.value || off.used != in.size()) return std::nullopt;
  return Position{*seq.value, *off.value};
}

std::string segment_name(uint64_t seq) { return fmt::format("{:016x}.wh", seq); }

std::optional<uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() != 19 || !name.ends_with(".wh")) return std::nullopt;
  uint64_t v = 0;
  for (char c : name.substr(0, 16)) {
    if (!is_lower_hex(c)) return std::nullopt;
    v = v * 16 + static_cast<uint64_t>(is_digit(c) ? c - '0' : c - 'a' + 10);
  }
  return v;
}

}  // namespace sluice::webhook
