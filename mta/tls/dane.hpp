// dane.hpp — DANE matching for SMTP (RFC 7672 §3, RFC 6698, RFC 7671):
// which TLSA records are usable, and whether a peer's certificate chain
// matches them.
//
// Pure: TLSA records (dns::TlsaRecord, from Resolver::resolve_tlsa) and the
// chain as the peer sent it (DER certificates, leaf first) in, a Verdict
// out. BoringSSL's libcrypto only (certificate parsing, SHA-2); no I/O, no
// clock, safe from any thread. Everything here comes from the network, so
// nothing asserts on it: a certificate that does not parse simply matches
// nothing that needs parsing.
//
// Rules (RFC 7672 §3.1):
//   usable    usage DANE-TA(2) or DANE-EE(3); selector 0 (the whole
//             certificate) or 1 (its SubjectPublicKeyInfo); matching type 0
//             (exact), 1 (SHA-256, 32 octets) or 2 (SHA-512, 64 octets).
//             PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (§3.1.3), as
//             are other numbers and digests of the wrong length.
//   DANE-EE   matched against the leaf only; names and dates are ignored
//             (§3.1.1): a match authenticates the peer.
//   DANE-TA   matched against every certificate of the chain; a match makes
//             that certificate the trust anchor, and the caller must still
//             check the chain from it to the leaf and the leaf's name
//             (§3.1.2, §3.2), so the matching certificates are returned.
// "No usable records" (DANE gives no authentication but TLS is still
// mandatory, §2.2) is told apart from "mismatch" (the peer fails DANE).
// Used by TlsStream::client_dane (tls.hpp) in its verify callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dns/result.hpp"

namespace sluice::tls::dane {

// RFC 6698 §7.2 - §7.4 numbers.
enum Usage : uint8_t { pkix_ta = 0, pkix_ee = 1, dane_ta = 2, dane_ee = 3 };
enum Selector : uint8_t { full_cert = 0, spki = 1 };
enum Matching : uint8_t { exact = 0, sha256 = 1, sha512 = 2 };

// Whether a record can be used for SMTP (the "usable" rule above).
bool usable(const dns::TlsaRecord& r);

struct Verdict {
  enum class Outcome : uint8_t {
    match,               // a usable record matched (see usage / certificates)
    mismatch,            // usable records exist, none matched the chain
    no_usable_records,   // no record is usable (or there are none)
  };
  Outcome outcome = Outcome::no_usable_records;
  // match: dane_ee when a DANE-EE record matched the leaf (preferred: it
  // needs no further check); else dane_ta.
  Usage usage = dane_ee;
  // match with dane_ta: the indices in the chain (0 = leaf) of every
  // certificate a DANE-TA record matched, in chain order. dane_ee: {0}.
  std::vector<std::size_t> certificates;
  std::size_t usable_records = 0;
  std::string reason;  // for logs, e.g. "DANE-EE(3) SPKI SHA2-256 matched the leaf certificate"
};

// The verdict for a peer whose chain is `chain` (DER, leaf first).
Verdict match(std::span<const dns::TlsaRecord> records, std::span<const std::vector<uint8_t>> chain);

}  // namespace sluice::tls::dane
