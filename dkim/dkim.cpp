// dkim.cpp — see dkim.hpp.
#include "dkim/dkim.hpp"
#include "dkim/pkey.hpp"

#include "mta/proto/ascii.hpp"

#include <openssl/base.h>
#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/curve25519.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>

#ifndef OPENSSL_IS_BORINGSSL
#error "dkim.cpp is built against BoringSSL (android-libboringssl-dev) only"
#endif

namespace sluice::dkim {

namespace {

using ascii::iequals;
using ascii::is_wsp;

std::string base64(std::string_view raw) {
  size_t n = 0;
  EVP_EncodedLength(&n, raw.size());
  std::string out(n, '\0');
  const size_t written = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                                         reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  out.resize(written);
  return out;
}

// The field's name, as written (without WSP before the colon).
std::string_view field_name(std::string_view field) {
  const size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon == std::string_view::npos ? 0 : colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  return name;
}

}  // namespace

std::string_view to_string(Algorithm a) {
  return a == Algorithm::rsa_sha256 ? "rsa-sha256" : "ed25519-sha256";
}

// ---- keys -------------------------------------------------------------------

Key::Key(std::unique_ptr<Pkey> k, Algorithm a) : pkey_(std::move(k)), algorithm_(a) {}
Key::Key(Key&&) noexcept = default;
Key& Key::operator=(Key&&) noexcept = default;
Key::~Key() = default;

std::expected<Key, std::string> Key::from_pem(std::string_view pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return std::unexpected("out of memory");
  auto k = std::make_unique<Pkey>();
  k->p = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (k->p == nullptr) return std::unexpected(crypto_error("not a PEM private key"));
  switch (EVP_PKEY_id(k->p)) {
    case EVP_PKEY_RSA:
      if (EVP_PKEY_bits(k->p) < 1024)
        return std::unexpected(fmt::format("an RSA key of {} bits is too weak (RFC 8301: at "
                                           "least 1024, 2048 recommended)", EVP_PKEY_bits(k->p)));
      return Key(std::move(k), Algorithm::rsa_sha256);
    case EVP_PKEY_ED25519:
      return Key(std::move(k), Algorithm::ed25519_sha256);
    default:
      return std::unexpected("the key is neither RSA nor Ed25519");
  }
}

std::expected<Key, std::string> Key::ed25519_seed(std::span<const uint8_t> seed) {
  if (seed.size() != 32) return std::unexpected("an Ed25519 seed has 32 octets");
  auto k = std::make_unique<Pkey>();
  k->p = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size());
  if (k->p == nullptr) return std::unexpected(crypto_error("bad Ed25519 seed"));
  return Key(std::move(k), Algorithm::ed25519_sha256);
}

std::string Key::public_record() const {
  if (algorithm_ == Algorithm::ed25519_sha256) {
    std::array<uint8_t, 32> raw{};
    size_t n = raw.size();
    if (!EVP_PKEY_get_raw_public_key(pkey_->p, raw.data(), &n)) return {};
    return base64(std::string_view(reinterpret_cast<const char*>(raw.data()), n));
  }
  bssl::ScopedCBB cbb;
  uint8_t* der = nullptr;
  size_t len = 0;
  if (!CBB_init(cbb.get(), 0) || !EVP_marshal_public_key(cbb.get(), pkey_->p) ||
      !CBB_finish(cbb.get(), &der, &len))
    return {};
  std::string out = base64(std::string_view(reinterpret_cast<const char*>(der), len));
  OPENSSL_free(der);
  return out;
}

namespace {

// What EVP_DigestSign/EVP_DigestVerify take for `data`: RSA the data itself,
// hashed with SHA-256 by the EVP layer; Ed25519 (PureEdDSA, no digest of its
// own) the SHA-256 hash of the data (RFC 8463 §3).
struct SignedInput {
  std::array<uint8_t, SHA256_DIGEST_LENGTH> digest{};
  std::string_view bytes;
  const EVP_MD* md = nullptr;
  SignedInput(Algorithm a, std::string_view data) : bytes(data), md(EVP_sha256()) {
    if (a != Algorithm::ed25519_sha256) return;
    SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest.data());
    bytes = std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size());
    md = nullptr;
  }
  SignedInput(const SignedInput&) = delete;  // `bytes` may point into `digest`
};

}  // namespace

std::expected<std::string, std::string> Key::sign(std::string_view data) const {
  bssl::ScopedEVP_MD_CTX ctx;
  const SignedInput si(algorithm_, data);
  const std::string_view input = si.bytes;
  if (!EVP_DigestSignInit(ctx.get(), nullptr, si.md, nullptr, pkey_->p))
    return std::unexpected(crypto_error("sign init"));
  size_t len = 0;
  const auto* in = reinterpret_cast<const uint8_t*>(input.data());
  if (!EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()))
    return std::unexpected(crypto_error("sign"));
  std::string sig(len, '\0');
  if (!EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(sig.data()), &len, in, input.size()))
    return std::unexpected(crypto_error("sign"));
  sig.resize(len);
  return sig;
}

bool Key::verify(std::string_view data, std::string_view signature) const {
  bssl::ScopedEVP_MD_CTX ctx;
  const SignedInput si(algorithm_, data);
  const bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, si.md, nullptr, pkey_->p) &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const uint8_t*>(signature.data()), signature.size(),
                       reinterpret_cast<const uint8_t*>(si.bytes.data()), si.bytes.size());
  ERR_clear_error();
  return ok;
}

// ---- canonicalisation ----------------------------------------------------------

std::string relaxed_header(std::string_view field) {
  const size_t colon = field.find(':');
  std::string out;
  out.reserve(field.size());
  for (char c : field_name(field))
    if (c != '\r' && c != '\n') out += ascii::to_lower(c);  // (a real field name has neither)
  out += ':';
  if (colon == std::string_view::npos) return out + "\r\n";
  bool wsp = false, start = true;
  for (char c : field.substr(colon + 1)) {
    if (c == '\r' || c == '\n') continue;  // unfold
    if (is_wsp(c)) {
      wsp = true;
      continue;
    }
    if (wsp && !start) out += ' ';  // none right after the colon
    wsp = start = false;
    out += c;
  }
  return out + "\r\n";  // WSP at the end: dropped
}

struct BodyHash::Sha {
  SHA256_CTX ctx;
};

BodyHash::BodyHash() : sha_(std::make_unique<Sha>()) { SHA256_Init(&sha_->ctx); }
BodyHash::~BodyHash() = default;

void BodyHash::put(std::string_view s) { SHA256_Update(&sha_->ctx, s.data(), s.size()); }

void BodyHash::end_line() {
  wsp_ = false;  // WSP at a line end: dropped
  if (line_.empty()) {
    ++empty_lines_;  // held back: empty lines at the end of the body do not count
    return;
  }
  for (; empty_lines_ > 0; --empty_lines_) put("\r\n");
  line_ += "\r\n";
  put(line_);
  line_.clear();
}

void BodyHash::feed(std::string_view body) {
  for (char c : body) {
    if (cr_) {
      cr_ = false;
      if (c == '\n') {
        end_line();
        continue;
      }
      if (wsp_) line_ += ' ';  // a lone CR is text (stored content has none)
      wsp_ = false;
      line_ += '\r';
    }
    if (c == '\r') {
      cr_ = true;
    } else if (is_wsp(c)) {
      wsp_ = true;
    } else {
      if (wsp_) line_ += ' ';
      wsp_ = false;
      line_ += c;
    }
  }
}

std::string BodyHash::finish_base64() {
  if (cr_) {
    cr_ = false;
    if (wsp_) line_ += ' ';
    wsp_ = false;
    line_ += '\r';
  }
  if (!line_.empty()) end_line();  // a last line without CRLF gets one
  std::array<uint8_t, SHA256_DIGEST_LENGTH> d{};
  SHA256_Final(d.data(), &sha_->ctx);
  return base64(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// ---- the fields signed --------------------------------------------------------

std::span<const std::string_view> default_headers() {
  static constexpr std::array<std::string_view, 16> kNames = {
      "From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc", "MIME-Version",
      "Content-Type", "Content-Transfer-Encoding", "In-Reply-To", "References", "List-Id",
      "List-Unsubscribe", "List-Unsubscribe-Post"};
  return kNames;
}

std::vector<std::string> header_list(std::span<const std::string> fields,
                                     std::span<const std::string_view> names) {
  static constexpr std::array<std::string_view, 7> kOversigned = {
      "From", "To", "Cc", "Subject", "Date", "Reply-To", "Content-Type"};
  std::vector<std::string> out;
  for (std::string_view name : names) {
    for (const std::string& f : fields)
      if (iequals(field_name(f), name)) out.emplace_back(name);
    if (std::any_of(kOversigned.begin(), kOversigned.end(),
                    [&](std::string_view o) { return iequals(o, name); }))
      out.emplace_back(name);
  }
  return out;
}

std::vector<std::string> split_fields(std::string_view header) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find("\r\n", pos);
    end = end == std::string_view::npos ? header.size() : end + 2;
    std::string_view line = header.substr(pos, end - pos);
    if (line == "\r\n") break;  // the empty line ends the section
    if (is_wsp(line.front()) && !out.empty())
      out.back() += line;  // a continuation
    else
      out.emplace_back(line);
    pos = end;
  }
  return out;
}

std::string signing_input(std::span<const std::string> fields, std::span<const std::string> names,
                          std::string_view signature_field) {
  std::string data;
  std::vector<bool> used(fields.size(), false);
  for (const std::string& name : names) {
    for (size_t i = fields.size(); i-- > 0;) {  // bottom-up (§5.4.2)
      if (used[i] || !iequals(field_name(fields[i]), name)) continue;
      used[i] = true;
      data += relaxed_header(fields[i]);
      break;
    }
  }
  std::string sig = relaxed_header(signature_field);
  sig.resize(sig.size() - 2);  // without its CRLF (§3.7)
  return data + sig;
}

std::expected<std::string, std::string> sign(const Request& r, const Key& key,
                                             std::span<const std::string> fields) {
  // Folded before each tag group so no line passes 78 octets in practice;
  // relaxed canonicalisation makes the folding invisible to the signature.
  std::string h;
  for (const std::string& n : r.headers) h += (h.empty() ? "" : ":") + n;
  std::string field = fmt::format(
      "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n\tt={}; h={};\r\n\tbh={};\r\n\tb=",
      to_string(key.algorithm()), r.domain, r.selector, r.timestamp, h, r.body_hash);
  auto sig = key.sign(signing_input(fields, r.headers, field + "\r\n"));
  if (!sig) return std::unexpected(sig.error());
  const std::string b = base64(*sig);
  for (size_t i = 0; i < b.size(); i += 72) {
    if (i > 0) field += "\r\n\t";
    field += b.substr(i, 72);
  }
  return field + "\r\n";
}

}  // namespace sluice::dkim
