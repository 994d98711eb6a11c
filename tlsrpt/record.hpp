// record.hpp — the TLS-RPT `_smtp._tls` TXT record (RFC 8460 §3), pure: no
// I/O, clocks or logs. The caller looks the TXT up and brings each record's
// strings joined.
//
// Rules: records that do not begin with "v=TLSRPTv1" followed by ";" or WSP
// (or the end) are discarded; if not exactly one remains, the domain has no
// usable record (§3). That one is `v=TLSRPTv1` then `;`-separated fields
// with WSP allowed around `;`; exactly one `rua=` of one or more URIs
// separated by `,` (WSP allowed around it); other fields are extensions
// (`name=value`, name 1-32 of alnum _ - . starting alnum, value printable
// without `=`... as in the ABNF: %x21-3A / %x3C / %x3E-7E) and are ignored.
// Sluice mails reports only, so only `mailto:` URIs are kept (case-
// insensitive scheme), each one address: the part before any `?` with
// %XX escapes decoded, which must be local@domain of printable ASCII
// without WSP, `<`, `>`, `,` or `"`; other schemes (https:) are skipped. A
// record with no mailto address is reported as `no_mailto`.
#pragma once

#include <expected>
#include <span>
#include <string>
#include <vector>

namespace sluice::tlsrpt {

enum class TxtError {
  none_published,  // no record begins with v=TLSRPTv1
  several,         // more than one TLSRPTv1 record
  syntax,          // the one record is malformed (see reason)
  no_mailto,       // valid, but no mailto: rua to send to
};

struct TxtProblem {
  TxtError error;
  std::string reason;  // for the log line
};

struct Record {
  std::vector<std::string> mailto;  // the rua mailto: addresses, in order, no duplicates
  bool operator==(const Record&) const = default;
};

std::expected<Record, TxtProblem> parse_txt(std::span<const std::string> records);

}  // namespace sluice::tlsrpt
