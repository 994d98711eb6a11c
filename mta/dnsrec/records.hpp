// records.hpp — the DNS records a sending domain publishes for Sluice, and
// whether what DNS publishes is right (`sluicectl dns-records [--check]`;
// docs/control.md has the output, docs/deliverability.md the why).
//
// Pure: values in (sending domains, the [[dkim]] keys' public records, the
// sending addresses, the hostname), records out; published answers in,
// verdicts out; text and JSON renderings. No DNS, files, clocks or logs —
// mta/dnsrec/lookup.* asks DNS, mta/dnsrec/commands.* reads the keys and
// the configuration. Table-tested in records_test.cpp.
//
// Per sending domain D, in this order:
//   D.                      TXT  "v=spf1 ip4:ADDR ip6:ADDR ~all" (or a:HOSTNAME)
//   S._domainkey.P.         TXT  "v=DKIM1; k=rsa|ed25519; p=..." per [[dkim]]
//                                table whose domain P is D or a parent of D
//   _dmarc.D.               TXT  "v=DMARC1; p=none; rua=mailto:postmaster@D"
//   _smtp._tls.D.           TXT  "v=TLSRPTv1; rua=mailto:postmaster@D"
// then once, for the host: HOSTNAME A/AAAA ADDR and the PTR of each address.
// SPF ends in ~all: DMARC is what asks receivers to reject, once its reports
// show every source of the domain's mail aligned.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "conf/net.hpp"

namespace sluice::dnsrec {

struct DkimKey {
  std::string domain;    // the [[dkim]] table's domain (d=)
  std::string selector;  // s=
  std::string k;         // "rsa" or "ed25519"
  std::string p;         // dkim::Key::public_record()
};

struct Inputs {
  std::vector<std::string> domains;        // sending domains, lower case, no trailing dot
  std::vector<DkimKey> keys;               // every [[dkim]] table's key, in file order
  std::vector<net::IpAddress> addresses;   // sending addresses; none: SPF names a:HOSTNAME
  std::string hostname;                    // the EHLO name; the PTR target
};

enum class Kind : uint8_t { spf, dkim, dmarc, tlsrpt, address, ptr };
const char* label(Kind k);  // "SPF", "DKIM", "DMARC", "TLS-RPT", "forward", "PTR"

enum class Status : uint8_t { ok, different, missing, lookup_failed };
const char* to_string(Status s);  // "ok", "different", "missing", "lookup failed"

struct Verdict {
  Status status = Status::lookup_failed;
  std::string detail;                  // why, for people; may be empty when ok
  std::vector<std::string> published;  // what DNS has at the name (the relevant records)
};

struct Record {
  Kind kind = Kind::spf;
  std::string name;   // absolute, with the trailing dot
  std::string type;   // "TXT", "A", "AAAA", "PTR"
  std::string value;  // TXT: the text, unsplit; A/AAAA: the address; PTR: "host."
  std::optional<net::IpAddress> address;  // address and ptr: the sending address
  std::optional<Verdict> verdict;         // set by --check
};

struct Block {
  std::string domain;                 // the sending domain; the hostname for the host block
  std::vector<std::string> comments;  // printed after the block's first line, each "; ..."
  std::vector<Record> records;
};

// The TXT record of one key: "S._domainkey.D." "v=DKIM1; k=...; p=...".
Record dkim_record(const DkimKey& k);

// The blocks to print: one per sending domain, then the host's block.
std::vector<Block> build(const Inputs& in);

// The machine's addresses worth publishing: not loopback, unspecified,
// link-local, RFC 1918, shared (100.64/10), ULA or multicast.
bool is_global(const net::IpAddress& ip);

// TXT text as character-strings of at most 255 octets (RFC 1035 §3.3).
std::vector<std::string> txt_strings(std::string_view text);
// One zone-file line: the name padded to 32 columns, no TTL; TXT over 255
// octets as several strings in parentheses on the line.
std::string zone_line(const Record& r);

// The zone-file text of every block (no --check).
std::string render_zone(std::span<const Block> blocks);
// One line per record with its verdict, and a closing summary (--check).
std::string render_check(std::span<const Block> blocks);
// {"domains":[{"domain":..., "records":[{"name","type","value","kind"
// [,"status","published","detail"]}] [,"comments":[...]]}]}, one line.
std::string render_json(std::span<const Block> blocks);
// True when every record has a verdict and it is ok.
bool all_ok(std::span<const Block> blocks);

// What a lookup found at a record's name: TXT records (strings joined),
// addresses (A/AAAA of the hostname, as text) or PTR names (no trailing dot).
struct Lookup {
  enum class Kind : uint8_t { found, missing, failed };
  Kind kind = Kind::failed;
  std::vector<std::string> values;  // found: not empty
  std::string error;                // failed: why (and for missing, what DNS said)
};

// Judges what DNS publishes for `want`. For a PTR record, `forward[i]` is
// the addresses of `found.values[i]` (forward-confirmed reverse DNS).
Verdict judge(const Record& want, std::string_view hostname, const Lookup& found,
              std::span<const Lookup> forward = {});

}  // namespace sluice::dnsrec
