// message.hpp — what the signer needs of one message, taken while its content
// streams into the spool, and the checks made before it is signed. Pure: no
// I/O, clocks or logs; one message per object, any thread.
//
//   - Scan: fed the content in stored form (CRLF lines, pieces of any size),
//     keeps the header section's fields (raw, at most kMaxHeaderSection
//     octets: a larger section is not signed) and hashes the body (relaxed,
//     BodyHash) as it goes, so the content is read once and never held;
//   - author(): the RFC 5322.From address, when the message has exactly one
//     From field holding one mailbox — the address DMARC aligns d= with;
//   - parse_tags() / verifies(): whether a DKIM-Signature the message
//     already carries is one of ours (same d= and s=) that verifies with
//     our key, so it is not signed twice.
#pragma once

#include <cstddef>
#include <expected>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dkim/dkim.hpp"

namespace sluice::dkim {

// A header section larger than this is not signed (nothing legitimate
// comes close; a signature over a megabyte of fields helps nobody).
inline constexpr size_t kMaxHeaderSection = 1u << 20;

class Scan {
 public:
  void feed(std::string_view content);
  // The header section was larger than kMaxHeaderSection: the fields are
  // incomplete and the message must not be signed.
  bool too_large() const { return too_large_; }
  // The header fields, raw and in order (split on first use, after the
  // last feed()).
  const std::vector<std::string>& fields();
  // The relaxed body hash (base64); once, after the last feed().
  std::string body_hash() { return body_.finish_base64(); }

 private:
  std::string header_;     // the header section so far (without the empty line)
  size_t line_start_ = 0;  // where the current header line starts in header_
  bool in_body_ = false;
  bool too_large_ = false;
  bool split_ = false;
  std::vector<std::string> fields_;
  BodyHash body_;
};

// The address in the message's one From field (local@domain, the domain
// lower-cased), or why there is none to sign for: no From field, several,
// a group or several mailboxes, no domain.
std::expected<std::string, std::string> author(std::span<const std::string> fields);

// A tag=value list (RFC 6376 §3.2) with the folding whitespace removed from
// names and values; nullopt when it is not one (a tag without '=', an empty
// or repeated name).
std::optional<std::map<std::string, std::string>> parse_tags(std::string_view value);

// Whether fields[index] is a DKIM-Signature field that is a relaxed/relaxed
// signature of the whole body (no l=) by d=`domain` s=`selector` with the
// algorithm of `key`, whose bh= is `body_hash` and whose b= verifies with
// `key` over the fields it names. Anything else — another signer, another
// canonicalisation, a broken or tampered signature — is false.
bool verifies(std::span<const std::string> fields, size_t index, std::string_view body_hash,
              const Key& key, std::string_view domain, std::string_view selector);

}  // namespace sluice::dkim
