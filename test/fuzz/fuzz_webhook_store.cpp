// fuzz_webhook_store.cpp — a webhook queue's files (webhook/record.hpp) over
// any bytes, read as the store reads a segment at start: record after
// record until one is incomplete or bad; the same bytes also as an ack file
// and a segment file name.
//
// Invariants checked (a violation traps):
//  - a record decoded ok encodes back to exactly the bytes it took (the
//    format is canonical), with a payload of 1..kMaxPayload octets;
//  - every proper prefix of a record decoded ok is `incomplete`, never ok
//    or bad (a torn write is told apart from damage);
//  - a bad record carries a reason;
//  - an ack decoded ok encodes back to the input; a segment name parsed ok
//    is written back the same.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "webhook/record.hpp"

using namespace sluice::webhook;

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::string_view in = all;
  while (!in.empty()) {
    const Decoded d = decode_record(in);
    if (d.status == Decoded::Status::bad) {
      check(!d.reason.empty());
      break;
    }
    if (d.status == Decoded::Status::incomplete) break;
    check(d.size > 0 && d.size <= in.size());
    check(!d.record.payload.empty() && d.record.payload.size() <= kMaxPayload);
    check(encode_record(d.record.stored_s, d.record.payload) == in.substr(0, d.size));
    for (size_t k : {size_t{0}, d.size / 2, d.size - 1})
      check(decode_record(in.substr(0, k)).status == Decoded::Status::incomplete);
    in.remove_prefix(d.size);
  }
  if (auto p = decode_ack(all)) check(encode_ack(*p) == all);
  if (auto seq = parse_segment_name(all)) check(segment_name(*seq) == all);
  return 0;
}
