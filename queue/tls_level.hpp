// tls_level.hpp — how one outgoing session was protected, in the words every
// delivery log line, `queue show` and the REQUIRETLS rule use (SPEC "Outbound
// transport security"; docs/transport-security.md).
//
//   none           no TLS: plaintext (not offered, or tls = "none")
//   opportunistic  TLS, the certificate not verified (or not required to be)
//   pkix           TLS, the certificate verified against ca_file and the
//                  host's name (tls = "verify", or a relayhost under verify)
//   mta_sts        TLS verified as the recipient domain's MTA-STS policy in
//                  enforce mode demands (PKIX with the MX name it lists)
//   dane           TLS authenticated by the host's DNSSEC-signed TLSA records
//
// Pure values; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::queue {

enum class TlsLevel : uint8_t { none = 0, opportunistic = 1, pkix = 2, mta_sts = 3, dane = 4 };

// "none", "opportunistic", "pkix", "mta-sts", "dane" (as logged: tls=...).
constexpr std::string_view to_string(TlsLevel l) {
  switch (l) {
    case TlsLevel::none: return "none";
    case TlsLevel::opportunistic: return "opportunistic";
    case TlsLevel::pkix: return "pkix";
    case TlsLevel::mta_sts: return "mta-sts";
    case TlsLevel::dane: return "dane";
  }
  return "none";
}

constexpr std::optional<TlsLevel> tls_level_from(std::string_view s) {
  for (auto l : {TlsLevel::none, TlsLevel::opportunistic, TlsLevel::pkix, TlsLevel::mta_sts, TlsLevel::dane})
    if (to_string(l) == s) return l;
  return std::nullopt;
}

// The certificate was authenticated (PKIX or DANE): what REQUIRETLS needs of
// the TLS itself (RFC 8689 §4.2.1; whether the host's NAME was authenticated
// is a separate question the caller answers).
constexpr bool authenticated(TlsLevel l) {
  return l == TlsLevel::pkix || l == TlsLevel::mta_sts || l == TlsLevel::dane;
}

}  // namespace sluice::queue
