// record.hpp — the on-disk format of a webhook queue (docs/spool.md,
// "Webhooks"), pure: bytes in, values out; strictly parsed, fuzzed
// (fuzz_webhook_store).
//
// A queue is a directory of segment files, named by their sequence number
// as 16 lower-case hex digits + ".wh", appended in order, and one `ack`
// file. A segment is a run of records:
//
//   W1 <stored> <length> <crc>\n<payload>\n
//
//   stored  the UNIX time (seconds) the event was stored: decimal, no
//           leading zero, at most 12 digits
//   length  the payload's octets: decimal, no leading zero, 1..kMaxPayload
//   crc     CRC-32 (IEEE 802.3, as zlib's crc32) of the payload: 8 lower-case hex digits
//   payload the event's JSON object (webhook::payload), then one LF
//
// The ack file is one line, "A1 <seq> <offset>\n" (decimal, no leading
// zeros): every record before that position (in segment seq at byte
// offset, and every segment with a lower number) has been delivered.
//
// decode_record() says `incomplete` when the bytes are a proper prefix of a
// record that could still be valid (the torn tail of a write cut short)
// and `bad` for anything that can never become valid; the reader skips the
// rest of a segment in either case (store.cpp).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::webhook {

inline constexpr size_t kMaxPayload = 64 * 1024;

// A place in a queue: segment `seq`, byte `offset`.
struct Position {
  uint64_t seq = 0;
  uint64_t offset = 0;
  auto operator<=>(const Position&) const = default;
};

struct Record {
  int64_t stored_s = 0;
  std::string_view payload;  // points into the decoded bytes
};

struct Decoded {
  enum class Status { ok, incomplete, bad } status = Status::bad;
  Record record;     // ok
  size_t size = 0;   // ok: octets the record took
  std::string_view reason;  // bad: why
};

uint32_t crc32(std::string_view bytes);
// `payload` must be 1..kMaxPayload octets; stored_s 0..999999999999.
std::string encode_record(int64_t stored_s, std::string_view payload);
Decoded decode_record(std::string_view bytes);

std::string encode_ack(Position p);
std::optional<Position> decode_ack(std::string_view bytes);

// "000000000000002a.wh" <-> 42.
std::string segment_name(uint64_t seq);
std::optional<uint64_t> parse_segment_name(std::string_view name);

}  // namespace sluice::webhook
