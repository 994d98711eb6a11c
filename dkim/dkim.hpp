// dkim.hpp — DKIM signatures (RFC 6376) with rsa-sha256 and ed25519-sha256
// (RFC 8463), relaxed/relaxed canonicalisation only. Pure: a message and a
// key in, a DKIM-Signature field out; no I/O, clocks or logs (the time and
// the key's bytes come in). Built on BoringSSL's libcrypto.
//
// The pieces, each tested on its own (dkim_test.cpp, the RFC 8463 Appendix A
// vector among them):
//   - relaxed_header(): one header field in relaxed form (RFC 6376 §3.4.2);
//   - BodyHash: the relaxed body (§3.4.4) hashed while it streams in, so the
//     body is read once whatever the number of signatures (one hash serves
//     an RSA and an Ed25519 signature of the same message);
//   - header_list(): the h= list Sluice signs: each default field once per
//     occurrence, and the ones a forger would add (From, To, Cc, Subject,
//     Date, Reply-To, Content-Type) once more, so none can be added later;
//   - sign(): the fields chosen bottom-up (§5.4.2), the signature field with
//     an empty b= appended without its CRLF, hashed, signed, and the whole
//     field returned folded, with its CRLF.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::dkim {

enum class Algorithm { rsa_sha256, ed25519_sha256 };
std::string_view to_string(Algorithm a);  // "rsa-sha256", "ed25519-sha256"

// A private key: PEM (PKCS#8 or traditional RSA; RSA of 1024 bits or more,
// or Ed25519). Move-only; shared read-only between threads once loaded.
class Key {
 public:
  static std::expected<Key, std::string> from_pem(std::string_view pem);
  // An Ed25519 key from its 32-octet seed (RFC 8032), as RFC 8463 prints it.
  static std::expected<Key, std::string> ed25519_seed(std::span<const uint8_t> seed);
  // A new random key (dkim/keygen.cpp): RSA of `bits` (1024..8192, a multiple
  // of 128) with e = 65537, or Ed25519 (`bits` ignored).
  static std::expected<Key, std::string> generate(Algorithm a, int bits);
  // The private key as PKCS#8 PEM ("BEGIN PRIVATE KEY"), which from_pem reads.
  std::expected<std::string, std::string> private_pem() const;
  Key(Key&&) noexcept;
  Key& operator=(Key&&) noexcept;
  ~Key();
  Algorithm algorithm() const { return algorithm_; }
  // The public key as the p= of its DNS record (base64): SubjectPublicKeyInfo
  // for RSA, the raw 32 octets for Ed25519 (RFC 8463 §4).
  std::string public_record() const;
  // Signs what RFC 6376 §3.7 hashes: RSA over `data` with SHA-256; Ed25519
  // (PureEdDSA) over SHA-256(data) (RFC 8463 §3). Raw signature octets.
  std::expected<std::string, std::string> sign(std::string_view data) const;
  // Whether `signature` is this key's signature of `data` (as sign() makes it).
  bool verify(std::string_view data, std::string_view signature) const;

 private:
  struct Pkey;
  Key(std::unique_ptr<Pkey> k, Algorithm a);
  std::unique_ptr<Pkey> pkey_;
  Algorithm algorithm_;
};

// One header field as stored ("Name: value\r\n\tmore\r\n") in relaxed form:
// name lower-cased, unfolded, runs of WSP as one SP, WSP around the colon
// and at the end removed, then CRLF.
std::string relaxed_header(std::string_view field);

// The relaxed body's SHA-256, fed the body as stored (CRLF line ends) in
// pieces of any size. WSP at line ends is dropped, other runs of WSP become
// one SP, empty lines at the end are dropped, and a last line without CRLF
// gets one; an empty body hashes as the empty string.
class BodyHash {
 public:
  BodyHash();
  ~BodyHash();
  BodyHash(const BodyHash&) = delete;
  BodyHash& operator=(const BodyHash&) = delete;
  void feed(std::string_view body);
  std::string finish_base64();  // once

 private:
  void end_line();
  void put(std::string_view s);
  struct Sha;
  std::unique_ptr<Sha> sha_;
  std::string line_;          // the current line, canonical so far
  bool wsp_ = false;          // WSP seen since the last character kept
  bool cr_ = false;           // a CR that may start the line end
  uint64_t empty_lines_ = 0;  // empty lines held back (they may be the end)
};

// Sluice's default signed fields (SPEC "Signing: DKIM").
std::span<const std::string_view> default_headers();
// The h= list for a message whose header section has `fields` (raw, as
// stored): each name of `names` once per field of that name present, and
// From, To, Cc, Subject, Date, Reply-To and Content-Type once more. Names
// are written as in `names`.
std::vector<std::string> header_list(std::span<const std::string> fields,
                                     std::span<const std::string_view> names);

struct Request {
  std::string domain;    // d=
  std::string selector;  // s=
  int64_t timestamp = 0; // t= (seconds since the epoch)
  std::vector<std::string> headers;  // h=, in order (header_list())
  std::string body_hash;             // bh=, BodyHash::finish_base64()
};

// The DKIM-Signature field, folded, ending in CRLF, to be put in front of
// the message. `fields` are the message's header fields, raw, in order.
std::expected<std::string, std::string> sign(const Request& r, const Key& key,
                                             std::span<const std::string> fields);

// What §3.7 hashes: the chosen fields in relaxed form, bottom-up per name
// (§5.4.2; a name with no field left adds nothing), then the signature
// field itself (b= empty) relaxed and without its final CRLF.
std::string signing_input(std::span<const std::string> fields,
                          std::span<const std::string> names, std::string_view signature_field);

// Splits a header section (stored form) into its raw fields.
std::vector<std::string> split_fields(std::string_view header_section);

}  // namespace sluice::dkim
