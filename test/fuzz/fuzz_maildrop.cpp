// fuzz_maildrop — libFuzzer target for maildrop files as the daemon's pickup
// reads them (mta/sendmail/maildrop.hpp): anything a local user could have
// put in the directory. Invariants: no crash; a file that decodes has 1 to
// kMaxRecipients distinct valid recipients, a valid or null sender and a
// message that passes check_message; and it encodes back to the very same
// bytes (the format has one spelling per content).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mta/sendmail/addresses.hpp"
#include "mta/sendmail/maildrop.hpp"

using namespace sluice::sendmail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto d = decode_maildrop(in);
  if (!d) {
    if (d.error().empty()) std::abort();
    return 0;
  }
  if (d->recipients.empty() || d->recipients.size() > kMaxRecipients) std::abort();
  if (!d->sender.empty() && !valid_address(d->sender)) std::abort();
  for (const auto& r : d->recipients)
    if (!valid_address(r)) std::abort();
  if (check_message(d->message)) std::abort();

  auto again = encode_maildrop(*d);
  if (!again) {
    // Only duplicates (which decode drops) may stop a decoded file from
    // encoding, and decode has dropped them already.
    std::abort();
  }
  auto twice = decode_maildrop(*again);
  if (!twice || *twice != *d) std::abort();
  // Same bytes unless decode dropped duplicate recipients.
  if (*again != in && again->size() >= in.size()) std::abort();
  return 0;
}
