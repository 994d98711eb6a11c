// fuzz_addresses — libFuzzer target for the RFC 5322 address-list parser and
// sluice-sendmail's -t processing of a whole header block
// (mta/sendmail/addresses.hpp, message.hpp). Invariants: no crash; every
// mailbox returned is a valid envelope address once qualified; after -t
// no Bcc or Resent-Bcc field is left; the assembled message has CRLF line
// ends only and no line over 998 octets; a From value built from any name
// stays one header field.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mta/sendmail/addresses.hpp"
#include "mta/sendmail/maildrop.hpp"
#include "mta/sendmail/message.hpp"

using namespace sluice::sendmail;

namespace {

void check_mailbox(const Mailbox& m) {
  const std::string a = m.domain.empty() ? m.local_part + "@x.org" : m.address();
  if (m.local_part.empty() || !valid_address(a)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // The raw text as one address list.
  AddressList list = parse_address_list(in);
  for (const Mailbox& m : list.mailboxes) check_mailbox(m);

  // The text as a message on sendmail's standard input, with -t.
  InputReader reader(1 << 20, true);
  if (reader.feed(in) != InputReader::Status::more) return 0;  // NUL or too big
  if (reader.finish() != InputReader::Status::done) return 0;
  const std::string content = reader.take();
  Message msg = split(content);
  Extracted ex = extract_recipients(msg);
  for (const Mailbox& m : ex.recipients) check_mailbox(m);
  if (msg.has("Bcc") || msg.has("Resent-Bcc")) std::abort();

  Stamp s;
  s.hostname = "host.example";
  add_missing_headers(msg, s, "a@b.org", in.substr(0, 300));
  const std::string out = assemble(msg);
  if (auto err = check_message(out)) std::abort();
  Message back = split(out);
  if (!back.has("Date") || !back.has("From") || !back.has("Message-ID")) std::abort();

  // Any name gives one From field ending in the address.
  Message from;
  from.header.push_back(Field{"From", "From: " + format_mailbox(in, "a@b.org") + "\r\n"});
  const std::string assembled = assemble(from);
  Message parsed = split(assembled);
  if (parsed.header.size() != 1 || !parsed.body.empty()) std::abort();
  if (!parsed.header[0].value().ends_with("<a@b.org>") && !parsed.header[0].value().ends_with(" a@b.org"))
    std::abort();
  return 0;
}
