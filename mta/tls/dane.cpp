// dane.cpp — DANE matching (dane.hpp). Pure; libcrypto only.
#include "mta/tls/dane.hpp"

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "dane.cpp must see BoringSSL's headers, not the system OpenSSL's"
#endif
#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <optional>

namespace sluice::tls::dane {

namespace {

using Bytes = std::vector<uint8_t>;

// The SubjectPublicKeyInfo of a DER certificate, as the DER bytes it holds
// (RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
// [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject,
// subjectPublicKeyInfo, ...}, ...}). Read with CBS, so nothing but the
// structure up to the key is parsed; nullopt when that does not parse.
std::optional<Bytes> spki_of(std::span<const uint8_t> der) {
  CBS cert, tbs, skip, key;
  CBS in;
  CBS_init(&in, der.data(), der.size());
  if (!CBS_get_asn1(&in, &cert, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0) return std::nullopt;
  if (!CBS_get_asn1(&cert, &tbs, CBS_ASN1_SEQUENCE)) return std::nullopt;
  if (!CBS_get_optional_asn1(&tbs, &skip, nullptr, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0))
    return std::nullopt;
  // serialNumber, signature, issuer, validity, subject
  if (!CBS_get_asn1(&tbs, &skip, CBS_ASN1_INTEGER) || !CBS_get_asn1(&tbs, &skip, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&tbs, &skip, CBS_ASN1_SEQUENCE) || !CBS_get_asn1(&tbs, &skip, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&tbs, &skip, CBS_ASN1_SEQUENCE))
    return std::nullopt;
  if (!CBS_get_asn1_element(&tbs, &key, CBS_ASN1_SEQUENCE)) return std::nullopt;
  return Bytes(CBS_data(&key), CBS_data(&key) + CBS_len(&key));
}

bool equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && (a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

// Whether `r` (usable) matches the certificate `der`.
bool matches(const dns::TlsaRecord& r, std::span<const uint8_t> der) {
  std::optional<Bytes> key;
  std::span<const uint8_t> selected = der;
  if (r.selector == Selector::spki) {
    key = spki_of(der);
    if (!key) return false;
    selected = *key;
  }
  switch (r.matching_type) {
    case exact: return equal(selected, r.data);
    case sha256: {
      uint8_t md[SHA256_DIGEST_LENGTH];
      SHA256(selected.data(), selected.size(), md);
      return equal(md, r.data);
    }
    case sha512: {
      uint8_t md[SHA512_DIGEST_LENGTH];
      SHA512(selected.data(), selected.size(), md);
      return equal(md, r.data);
    }
  }
  return false;
}

std::string describe(const dns::TlsaRecord& r) {
  std::string s = r.usage == dane_ee ? "DANE-EE(3)" : "DANE-TA(2)";
  s += r.selector == full_cert ? " Cert" : " SPKI";
  s += r.matching_type == exact ? " Full" : r.matching_type == sha256 ? " SHA2-256" : " SHA2-512";
  return s;
}

}  // namespace

bool usable(const dns::TlsaRecord& r) {
  if (r.usage != dane_ta && r.usage != dane_ee) return false;
  if (r.selector != full_cert && r.selector != spki) return false;
  switch (r.matching_type) {
    case exact: return !r.data.empty();
    case sha256: return r.data.size() == SHA256_DIGEST_LENGTH;
    case sha512: return r.data.size() == SHA512_DIGEST_LENGTH;
    default: return false;
  }
}

Verdict match(std::span<const dns::TlsaRecord> records, std::span<const std::vector<uint8_t>> chain) {
  Verdict v;
  v.usable_records = static_cast<std::size_t>(std::count_if(records.begin(), records.end(), usable));
  if (v.usable_records == 0) {
    v.outcome = Verdict::Outcome::no_usable_records;
    v.reason = records.empty() ? "no TLSA records" : "no usable TLSA records";
    return v;
  }
  v.outcome = Verdict::Outcome::mismatch;
  if (chain.empty()) {
    v.reason = "no certificate presented";
    return v;
  }
  for (const auto& r : records) {
    if (r.usage == dane_ee && usable(r) && matches(r, chain[0])) {
      v.outcome = Verdict::Outcome::match;
      v.usage = dane_ee;
      v.certificates = {0};
      v.reason = describe(r) + " matched the leaf certificate";
      return v;
    }
  }
  for (std::size_t i = 0; i < chain.size(); ++i) {
    for (const auto& r : records) {
      if (r.usage != dane_ta || !usable(r) || !matches(r, chain[i])) continue;
      if (v.certificates.empty()) v.reason = describe(r) + " matched certificate " + std::to_string(i) + " of the chain";
      v.certificates.push_back(i);
      break;
    }
  }
  if (!v.certificates.empty()) {
    v.outcome = Verdict::Outcome::match;
    v.usage = dane_ta;
    return v;
  }
  v.reason = std::to_string(v.usable_records) + " usable TLSA record(s), none matched the certificate chain";
  return v;
}

}  // namespace sluice::tls::dane
