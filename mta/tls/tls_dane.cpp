// tls_dane.cpp — TlsStream::client_dane (tls.hpp): DANE authentication of
// the server (RFC 7672) in BoringSSL's custom verify callback, matching with
// mta/tls/dane.hpp. The rest of TlsStream is in tls.cpp.
#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "mta/tls must be built against BoringSSL (/usr/include/android), never the system OpenSSL"
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "mta/tls/dane.hpp"
#include "mta/tls/tls.hpp"

namespace sluice::tls {

// DANE's verify callback (client_dane). BoringSSL calls it once with the
// server's chain; it never sees the CA store.
struct DaneVerifier {
  static ssl_verify_result_t verify(SSL* ssl, uint8_t* out_alert) {
    auto* self = static_cast<TlsStream*>(SSL_get_app_data(ssl));
    if (self == nullptr) return ssl_verify_invalid;
    const STACK_OF(CRYPTO_BUFFER)* certs = SSL_get0_peer_certificates(ssl);
    std::vector<std::vector<uint8_t>> chain;
    for (size_t i = 0; certs && i < sk_CRYPTO_BUFFER_num(certs); ++i) {
      const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(certs, i);
      chain.emplace_back(CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_data(b) + CRYPTO_BUFFER_len(b));
    }
    const dane::Verdict v = dane::match(self->tlsa_, chain);
    if (v.outcome == dane::Verdict::Outcome::match && v.usage == dane::dane_ee) {
      self->dane_match_ = v.reason;
      return ssl_verify_ok;
    }
    if (v.outcome == dane::Verdict::Outcome::match) {
      // DANE-TA: the chain must verify from a matched certificate, and the
      // leaf must name the host (RFC 7672 §3.2.2). Dates are checked too.
      std::string why;
      for (size_t anchor : v.certificates) {
        why = chain_from_anchor(ssl, chain, anchor);
        if (why.empty()) {
          self->dane_match_ = v.reason;
          return ssl_verify_ok;
        }
      }
      self->dane_refused_ = "DANE: " + v.reason + ", but " + why;
    } else {
      self->dane_refused_ = "DANE: " + v.reason;
    }
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    return ssl_verify_invalid;
  }

  // Empty when the chain (leaf first) verifies with chain[anchor] as the
  // only trust anchor and the leaf names the stream's host; else why not.
  static std::string chain_from_anchor(SSL* ssl, const std::vector<std::vector<uint8_t>>& chain,
                                       size_t anchor) {
    auto parse = [](const std::vector<uint8_t>& der) {
      const uint8_t* p = der.data();
      return bssl::UniquePtr<X509>(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    };
    bssl::UniquePtr<X509> leaf = parse(chain.at(0));
    bssl::UniquePtr<X509> ta = parse(chain.at(anchor));
    if (!leaf || !ta) return "the certificate does not parse";
    bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
    bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
    if (!store || !untrusted || !X509_STORE_add_cert(store.get(), ta.get()))
      return "out of memory";
    for (size_t i = 1; i < chain.size(); ++i)
      if (auto c = parse(chain[i])) {
        if (!sk_X509_push(untrusted.get(), c.get())) return "out of memory";
        c.release();
      }
    bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
    if (!ctx || !X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), untrusted.get()))
      return "out of memory";
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
    // The host name the stream was made for (SNI and name check), then
    // the anchor need not be self-signed.
    X509_VERIFY_PARAM_set1(param, SSL_get0_param(ssl));
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_verify_cert(ctx.get()) != 1) {
      std::string r = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
      ERR_clear_error();
      return r;
    }
    return {};
  }
};

std::expected<std::unique_ptr<TlsStream>, std::string> TlsStream::client_dane(
    std::shared_ptr<const TlsContext> ctx, std::string_view hostname,
    std::vector<dns::TlsaRecord> tlsa) {
  if (hostname.empty()) return std::unexpected("a DANE client needs a host name");
  auto s = client(std::move(ctx), hostname);
  if (!s) return s;
  (*s)->tlsa_ = std::move(tlsa);
  SSL_set_app_data((*s)->ssl_, s->get());
  SSL_set_custom_verify((*s)->ssl_, SSL_VERIFY_PEER, &DaneVerifier::verify);
  return s;
}

}  // namespace sluice::tls
