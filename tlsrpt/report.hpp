// report.hpp — one TLS-RPT report (RFC 8460 §4) and the mail that carries it
// (§5.3), pure: no I/O, clocks or logs (times come in).
//
//  - report_json(): the §4.4 JSON of one policy domain's counts: organization-
//    name, date-range {start-datetime, end-datetime}, contact-info,
//    report-id, policies[] each with policy {policy-type, policy-string,
//    policy-domain, mx-host}, summary {total-successful-session-count,
//    total-failure-session-count} and failure-details[] {result-type,
//    sending-mta-ip, receiving-mx-hostname, receiving-ip,
//    failed-session-count, failure-reason-code} (empty members left out).
//  - gzip(): RFC 1952 gzip (zlib), gunzip() to read it back (tests, and
//    the e2e test does the same in Python).
//  - report_message(): the message in stored form (CRLF lines): From, To,
//    Subject "Report Domain: D Submitter: S Report-ID: <ID>", Date,
//    Message-ID, TLS-Report-Domain, TLS-Report-Submitter, MIME-Version,
//    Content-Type multipart/report; report-type="tlsrpt", a text/plain part
//    and an application/tlsrpt+gzip part in base64 named per §5.3
//    "submitter!policy-domain!begin!end!id.json.gz".
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "tlsrpt/counts.hpp"

namespace sluice::tlsrpt {

struct ReportMeta {
  std::string organization;  // organization-name
  std::string contact;       // contact-info (an address)
  std::string report_id;     // unique; also in the Subject, in <>
  int64_t start_s = 0;       // date-range, unix seconds (UTC)
  int64_t end_s = 0;
};

// "2026-12-05T00:00:00Z".
std::string rfc3339(int64_t unix_s);

std::string report_json(const ReportMeta& meta, std::string_view policy_domain, const DomainCounts& counts);

std::expected<std::string, std::string> gzip(std::string_view data);
std::expected<std::string, std::string> gunzip(std::string_view data);

std::string base64_lines(std::string_view data);  // 76-column lines, each ending CRLF

struct MessageParts {
  std::string from;          // the contact address
  std::vector<std::string> to;  // the rua mailto addresses
  std::string submitter;     // TLS-Report-Submitter: the contact's domain
  std::string policy_domain; // TLS-Report-Domain
  std::string report_id;
  std::string date;          // RFC 5322 date (mail::rfc5322_date)
  std::string message_id;    // "<...>"
  std::string boundary;      // unique in the message (e.g. from the queue id)
  int64_t start_s = 0, end_s = 0;
  std::string organization;
  std::string gz;            // gzip(report_json(...))
};

std::string report_message(const MessageParts& p);

}  // namespace sluice::tlsrpt
