// fuzz_spool — libFuzzer target for what the spool reads back from disk at
// recovery: record framing (queue/record.hpp) and envelopes
// (queue/envelope.hpp). Invariants: parse() and decode_envelope() never crash
// on any bytes; a decoded envelope re-encodes to bytes that decode to the same
// envelope.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "queue/envelope.hpp"
#include "queue/record.hpp"

using namespace sluice::queue;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // Walk the bytes as a segment's record stream would be walked.
  std::string_view rest = bytes;
  while (!rest.empty()) {
    auto rec = record::parse(rest);
    if (!rec) break;
    if (rec->size == 0 || rec->size > rest.size()) std::abort();
    rest.remove_prefix(rec->size);
  }

  // Any body sealed into a record parses back to the same body.
  auto sealed = record::make(record::Type::commit, "0123456789ABCDEF", bytes);
  auto view = record::parse(sealed);
  if (!view || view->body != bytes || view->size != sealed.size()) std::abort();

  auto env = decode_envelope(bytes);
  if (env) {
    std::string again = encode(*env);
    auto env2 = decode_envelope(again);
    if (!env2 || !(*env2 == *env)) std::abort();
  }
  return 0;
}
