// headers.hpp — what Sluice writes into a message's header section, in one
// place: the RFC 5322 date, the Received trace field, and the Date and
// Message-ID a submitted message lacks. Pure: no clock (times come in), no
// I/O, no logs; safe from any thread.
//
// Used by the intake (mta/intake.hpp: the trace field and the missing fields
// of every message that enters the queue), by bounces (queue/dsn.cpp: Date)
// and by sluice-sendmail (mta/sendmail/message.cpp: Date and Message-ID in
// the sender's time zone, added before the message reaches the daemon).
// Also one thing Sluice reads there: TlsRequiredScan (RFC 8689 §3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::mail {

// RFC 5322 §3.3 date-time, at `utc_offset_s` from UTC:
// "Tue, 14 Nov 2023 22:13:20 +0000", "Mon, 26 Jan 2026 08:26:01 -0530".
// Any time, before 1970 too (the days are counted, not asked of the C
// library).
std::string rfc5322_date(int64_t unix_us, int32_t utc_offset_s = 0);

// A Message-ID "<YYYYMMDDhhmmss.UNIQUE@HOST>" (UTC). `unique` must make it
// unique on this host: the queue id in the daemon; microseconds, pid and
// random bits in sluice-sendmail.
std::string message_id(int64_t unix_us, std::string_view unique, std::string_view host);

// Where a message came from, for its Received field (RFC 5321 §4.4).
struct Trace {
  std::string by;      // this host's name (the `hostname` setting)
  std::string id;      // the queue id
  int64_t unix_us = 0; // arrival
  // SMTP: the name the client gave in EHLO/HELO and its address, the
  // protocol (RFC 3848 / RFC 6531: SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS...)
  // and, in TLS, "TLSv1.3 with cipher ..." (empty without TLS).
  std::string helo;
  std::string client_address;
  std::string with;
  std::string tls_info;
  // Local submission (the maildrop): the submitting uid, from the file's
  // owner. Set: the field reads "by HOST (Sluice, from userid N)".
  std::optional<uint32_t> local_uid;
  // The HTTP API (mta/http_api.hpp): the API key's name (never the key).
  // Set: the field reads "from [ADDR] (API key NAME)", `with` HTTP/HTTPS.
  std::string api_key;
  // The one recipient, named only when there is exactly one, so recipients
  // of one copy do not learn of each other (Bcc). Empty: not named.
  std::string for_recipient;
};

// The whole field with its CRLF, folded before each clause:
//   Received: from HELO ([ADDR])
//   	(using TLS_INFO)
//   	by HOST (Sluice) with WITH id ID
//   	for <RCPT>; DATE
std::string received(const Trace& t);

// Which of the fields Sluice may add a message's own header section has.
struct Present {
  bool date = false;
  bool message_id = false;
  bool from = false;
};

// The fields a submission server adds to a message without them (RFC 6409
// §8.2 Date, §8.3 Message-ID; RFC 5322 §3.6 requires Date and From), with
// their CRLFs, in that order; empty when nothing is missing. A missing From
// is the envelope `sender` (MAILER-DAEMON@HOST for the null sender).
// `message_id_out` gets the Message-ID added, if any.
std::string missing_fields(const Present& have, const Trace& t, std::string_view sender,
                           std::string* message_id_out);

// RFC 8689 §3: does the message's header section have a "TLS-Required: No"
// field (the sender asks that MTA-STS and DANE be relaxed for it)? Fed the
// content in stored form (CRLF lines) in pieces of any size; only the header
// section is looked at, and nothing but the current field's first octets
// is kept. The field name is matched case-insensitively (WSP before the colon
// tolerated), the value after unfolding and trimming WSP must be "No" in any
// case; one such field is enough. The same pieces split any other way give
// the same answer.
class TlsRequiredScan {
 public:
  void feed(std::string_view content);
  // Also for a message that is all header section (no empty line).
  bool tls_required_no() const { return found_ || matches(); }
  bool in_headers() const { return in_headers_; }

 private:
  bool matches() const;  // the current field is "TLS-Required: No"
  void field_end();

  static constexpr size_t kCap = 64;  // "TLS-Required: No" with room for WSP
  std::string field_;      // the current field, unfolded, capped at kCap octets
  bool too_long_ = false;  // the current field is longer than kCap: not ours
  bool bol_ = true;        // at the start of a line
  bool cr_ = false;        // the last octet was a CR
  bool in_headers_ = true;
  bool found_ = false;
};

}  // namespace sluice::mail
