// record.hpp — the spool's on-disk record codec: CRC-32C, segment header,
// record framing.
//
// Pure functions over byte spans: no I/O, no allocation in parse(). Used by
// the spool writer, by recovery and by the fuzz target. The format is in
// docs/spool.md ("Records"):
//
//   u32 payload length (LE) | u32 CRC-32C of type+payload (LE) | u8 type | payload
//   payload = 16-byte queue id | body
//
// parse() never trusts its input: any byte string gives either a record
// whose length, checksum, type and id were checked, or an Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sluice::queue::record {

// First 8 bytes of every segment file.
inline constexpr std::string_view kSegmentMagic{"SLUICEv1", 8};
inline constexpr size_t kHeaderSize = 9;   // length, crc, type
inline constexpr size_t kIdSize = 16;      // queue id, ASCII
inline constexpr size_t kPrefixSize = kHeaderSize + kIdSize;
// Larger lengths are garbage by definition (Spool::open limits chunk_size).
inline constexpr uint32_t kMaxPayload = 1u << 30;

enum class Type : uint8_t {
  chunk = 1,   // id + content bytes
  commit = 2,  // id + encoded Envelope: the message is live
  done = 3,    // id only: the message is finished
  head = 4,    // id + content that goes before the message's CHUNKs (written
               // last, just before its COMMIT: e.g. a DKIM signature)
};

// CRC-32C (Castagnoli). `crc` is a previous result to continue from, so
// crc32c(b, crc32c(a)) == crc32c(a + b). Uses SSE4.2 when the CPU has it.
uint32_t crc32c(std::string_view bytes, uint32_t crc = 0);

// Fills in the 9-byte header of a record laid out in rec[0 .. 9 + payload_size):
// the caller has put the id and body at rec + 9; the header bytes are overwritten.
void seal(Type type, char* rec, size_t payload_size);

// A whole record: header, id (must be 16 bytes), body.
std::string make(Type type, std::string_view id, std::string_view body);

struct View {
  Type type;
  std::string_view id;    // 16 bytes, a valid queue id
  std::string_view body;  // content (chunk, head), encoded envelope (commit), empty (done)
  size_t size;            // the whole record, header included
};

enum class Error : uint8_t {
  truncated,   // fewer bytes than the header or the stated length (a torn append)
  bad_length,  // length above kMaxPayload, below the id, or wrong for the type
  bad_crc,
  bad_type,
  bad_id,      // not 16 upper-case hex digits
};
std::string_view to_string(Error e);

// Parses the record at the start of `bytes` (which may continue past it).
std::expected<View, Error> parse(std::string_view bytes);

namespace detail {
// The table-driven CRC-32C, whatever the CPU; for tests against the fast path.
uint32_t crc32c_portable(std::string_view bytes, uint32_t crc = 0);
}  // namespace detail

}  // namespace sluice::queue::record
