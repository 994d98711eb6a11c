// tls.cpp — TlsContext, TlsStream and make_self_signed on BoringSSL.
//
// Each TlsStream connects its SSL object to one custom BIO ("BufferBio")
// whose read side takes from the stream's in_ buffer and whose write side
// appends to its out_ buffer. A custom BIO rather than BIO_s_mem(): a memory
// BIO moves all its remaining bytes to the front on every read, and
// BoringSSL reads each record in two small reads (header, then body), which
// turns a 64 KiB socket read into a megabyte of memmove. Here a read only
// advances an offset.
//
// Errors: every BoringSSL call that can fail is checked; the thread's error
// queue is cleared before each SSL operation and drained after a failure, so
// a reason never leaks from one stream to another on the same thread.
#include "mta/tls/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "mta/tls must be built against BoringSSL (/usr/include/android), never the system OpenSSL"
#endif
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf/safe_file.hpp"

namespace sluice::tls {

namespace {

constexpr const char* kDefaultCaFile = "/etc/ssl/certs/ca-certificates.crt";

// TLS 1.2: forward secrecy and AEAD only. (TLS 1.3's suites are not
// configurable in BoringSSL: AES-128-GCM, AES-256-GCM and CHACHA20-POLY1305,
// all of them fine.) The client's preference decides among them.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kCurves = "X25519:P-256:P-384";

// Never prompt for a passphrase: encrypted keys are refused.
int no_password(char*, int, int, void*) { return 0; }

// "WRONG_VERSION_NUMBER" -> "wrong version number".
std::string humanize(const char* reason) {
  std::string s = reason;
  for (char& c : s) c = c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The oldest error on this thread's queue as a short string; clears the queue.
std::string drain_error_queue(const char* fallback) {
  uint32_t first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return fallback;
  if (ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) >= SSL_AD_REASON_OFFSET) {
    return fmt::format("alert from peer: {}",
                       SSL_alert_desc_string_long(ERR_GET_REASON(first) - SSL_AD_REASON_OFFSET));
  }
  if (ERR_GET_LIB(first) == ERR_LIB_SYS) return std::strerror(ERR_GET_REASON(first));
  if (const char* r = ERR_reason_error_string(first)) return humanize(r);
  return fmt::format("error {}:{}", ERR_GET_LIB(first), ERR_GET_REASON(first));
}

// A private key (private_key = true) must be a regular file with one link:
// links are followed (certbot's live/), a second name is refused
// (conf/safe_file.hpp).
std::expected<std::string, std::string> read_file(const std::string& path, bool private_key = false) {
  int fd = -1;
  if (private_key) {
    auto opened = safe::open_admin_file(path);
    if (!opened) return std::unexpected(opened.error());
    fd = opened->release();
  } else {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) return std::unexpected(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::string data;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      OPENSSL_cleanse(data.data(), data.size());
      return std::unexpected(fmt::format("cannot read {}: {}", path, std::strerror(e)));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  return data;
}

std::string bio_contents(BIO* bio) {
  const uint8_t* p = nullptr;
  size_t n = 0;
  if (!BIO_mem_contents(bio, &p, &n)) return {};
  return std::string(reinterpret_cast<const char*>(p), n);
}

std::string name_text(const X509_NAME* name) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "?";
  return bio_contents(bio.get());
}

std::string time_text(const ASN1_TIME* t) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || !ASN1_TIME_print(bio.get(), t)) return "?";
  return bio_contents(bio.get());
}

// Settings every context shares.
bool apply_policy(SSL_CTX* ctx) {
  return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
         SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) &&
         SSL_CTX_set_strict_cipher_list(ctx, kTls12Ciphers) &&
         SSL_CTX_set1_curves_list(ctx, kCurves);
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

// ---------------------------------------------------------------------------
// The BIO between BoringSSL and a TlsStream's buffers.

struct BufferBio {
  static TlsStream* self(BIO* b) { return static_cast<TlsStream*>(BIO_get_data(b)); }

  static int read(BIO* b, char* buf, int len) {
    BIO_clear_retry_flags(b);
    TlsStream* s = self(b);
    if (s == nullptr || len <= 0) return 0;
    size_t avail = s->in_.size() - s->in_pos_;
    if (avail == 0) {
      if (s->eof_) return 0;  // EOF: BoringSSL reports the close
      BIO_set_retry_read(b);  // "would block": process() returns, waits for more
      return -1;
    }
    size_t n = std::min(avail, static_cast<size_t>(len));
    std::memcpy(buf, s->in_.data() + s->in_pos_, n);
    s->in_pos_ += n;
    if (s->in_pos_ == s->in_.size()) {
      s->in_.clear();
      s->in_pos_ = 0;
    }
    return static_cast<int>(n);
  }

  static int write(BIO* b, const char* buf, int len) {
    BIO_clear_retry_flags(b);
    TlsStream* s = self(b);
    if (s == nullptr || len < 0) return -1;
    s->out_.append(buf, static_cast<size_t>(len));  // never full: the glue applies backpressure
    return len;
  }

  static long ctrl(BIO*, int cmd, long, void*) {
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }

  // One immutable method table for the process, made on first use.
  static const BIO_METHOD* method() {
    static const BIO_METHOD* m = [] {
      BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index(), "sluice buffer");
      if (meth == nullptr) return static_cast<BIO_METHOD*>(nullptr);
      BIO_meth_set_read(meth, &BufferBio::read);
      BIO_meth_set_write(meth, &BufferBio::write);
      BIO_meth_set_ctrl(meth, &BufferBio::ctrl);
      return meth;
    }();
    return m;
  }
};

// ---------------------------------------------------------------------------
// TlsContext

TlsContext::TlsContext(Role role, ssl_ctx_st* ctx) : role_(role), ctx_(ctx) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::expected<std::shared_ptr<TlsContext>, std::string> TlsContext::server(
    const std::string& cert_chain_pem_path, const std::string& key_pem_path) {
  ERR_clear_error();
  auto cert_pem = read_file(cert_chain_pem_path);
  if (!cert_pem) return std::unexpected(cert_pem.error());
  auto key_pem = read_file(key_pem_path, true);
  if (!key_pem) return std::unexpected(key_pem.error());
  struct Wipe {
    std::string& s;
    ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wipe{*key_pem};

  SSL_CTX* raw = SSL_CTX_new(TLS_method());
  if (raw == nullptr) return std::unexpected("cannot allocate a TLS context");
  std::shared_ptr<TlsContext> tc(new TlsContext(Role::server, raw));
  if (!apply_policy(raw)) return std::unexpected(drain_error_queue("cannot apply the TLS policy"));
  // Resumption: tickets (keys random per context, rotated by BoringSSL every
  // 48 hours) and, for TLS 1.2 clients without ticket support, the in-memory
  // session cache.
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_SERVER);

  // The chain: the server's own certificate first, then its intermediates.
  bssl::UniquePtr<BIO> cbio(BIO_new_mem_buf(cert_pem->data(), cert_pem->size()));
  if (!cbio) return std::unexpected("out of memory");
  bssl::UniquePtr<X509> leaf(PEM_read_bio_X509(cbio.get(), nullptr, no_password, nullptr));
  if (!leaf) {
    return std::unexpected(fmt::format("no certificate in {}: {}", cert_chain_pem_path,
                                       drain_error_queue("no PEM certificate found")));
  }
  if (!SSL_CTX_use_certificate(raw, leaf.get())) {
    return std::unexpected(fmt::format("cannot use the certificate in {}: {}", cert_chain_pem_path,
                                       drain_error_queue("unsupported")));
  }
  int intermediates = 0;
  for (;;) {
    bssl::UniquePtr<X509> extra(PEM_read_bio_X509(cbio.get(), nullptr, no_password, nullptr));
    if (!extra) {
      uint32_t e = ERR_peek_last_error();
      if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the normal end of the file
        break;
      }
      return std::unexpected(fmt::format("bad certificate #{} in {}: {}", intermediates + 2,
                                         cert_chain_pem_path, drain_error_queue("unreadable")));
    }
    if (!SSL_CTX_add1_chain_cert(raw, extra.get())) {
      return std::unexpected(fmt::format("cannot add certificate #{} of {}: {}", intermediates + 2,
                                         cert_chain_pem_path, drain_error_queue("unsupported")));
    }
    ++intermediates;
  }

  bssl::UniquePtr<BIO> kbio(BIO_new_mem_buf(key_pem->data(), key_pem->size()));
  if (!kbio) return std::unexpected("out of memory");
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, no_password, nullptr));
  if (!key) {
    return std::unexpected(fmt::format("no usable private key in {} (it must be PEM and not encrypted): {}",
                                       key_pem_path, drain_error_queue("no PEM key found")));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return std::unexpected(fmt::format(
        "the private key in {} does not belong to the first certificate in {} "
        "(the server's own certificate must come first, then the intermediates)",
        key_pem_path, cert_chain_pem_path));
  }
  if (!SSL_CTX_use_PrivateKey(raw, key.get()) || !SSL_CTX_check_private_key(raw)) {
    return std::unexpected(fmt::format("cannot use the private key in {}: {}", key_pem_path,
                                       drain_error_queue("unsupported key type")));
  }

  const ASN1_TIME* not_after = X509_get0_notAfter(leaf.get());
  tc->description_ = fmt::format("subject={} not_after={}{} intermediates={}",
                                 name_text(X509_get_subject_name(leaf.get())), time_text(not_after),
                                 X509_cmp_current_time(not_after) < 0 ? " (EXPIRED)" : "",
                                 intermediates);
  ERR_clear_error();
  return tc;
}

std::expected<std::shared_ptr<TlsContext>, std::string> TlsContext::client(
    bool verify_peer, const std::string& ca_file_or_empty) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_method());
  if (raw == nullptr) return std::unexpected("cannot allocate a TLS context");
  std::shared_ptr<TlsContext> tc(new TlsContext(Role::client, raw));
  tc->verify_peer_ = verify_peer;
  if (!apply_policy(raw)) return std::unexpected(drain_error_queue("cannot apply the TLS policy"));

  // SSL_VERIFY_NONE still verifies and records the result (peer_verified()).
  SSL_CTX_set_verify(raw, verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  const std::string ca = ca_file_or_empty.empty() ? kDefaultCaFile : ca_file_or_empty;
  std::string loaded = ca;
  if (::access(ca.c_str(), R_OK) != 0) {
    std::string why = fmt::format("cannot read CA file {}: {}", ca, std::strerror(errno));
    if (verify_peer || !ca_file_or_empty.empty()) return std::unexpected(why);
    loaded = "none";
  } else if (!SSL_CTX_load_verify_locations(raw, ca.c_str(), nullptr)) {
    std::string why = fmt::format("cannot load CA file {}: {}", ca, drain_error_queue("no certificates"));
    if (verify_peer || !ca_file_or_empty.empty()) return std::unexpected(why);
    loaded = "none";
  }
  tc->description_ = fmt::format("ca_file={} verify={}", loaded, verify_peer ? "required" : "report");
  ERR_clear_error();
  return tc;
}

// ---------------------------------------------------------------------------
// TlsStream

TlsStream::TlsStream(std::shared_ptr<const TlsContext> ctx, Role role)
    : ctx_(std::move(ctx)), role_(role) {}

TlsStream::~TlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIO too
}

std::expected<void, std::string> TlsStream::init() {
  ERR_clear_error();
  if (!ctx_) return std::unexpected("no TLS context");
  if (ctx_->role() != role_) {
    return std::unexpected(role_ == Role::server ? "a server stream needs a server context"
                                                 : "a client stream needs a client context");
  }
  ssl_ = SSL_new(ctx_->native());
  if (ssl_ == nullptr) return std::unexpected(drain_error_queue("cannot allocate a TLS connection"));
  const BIO_METHOD* method = BufferBio::method();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (bio == nullptr) return std::unexpected(drain_error_queue("cannot allocate a BIO"));
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // the SSL takes our one reference
  if (role_ == Role::server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  return {};
}

std::expected<std::unique_ptr<TlsStream>, std::string> TlsStream::server(
    std::shared_ptr<const TlsContext> ctx) {
  std::unique_ptr<TlsStream> s(new TlsStream(std::move(ctx), Role::server));
  if (auto r = s->init(); !r) return std::unexpected(r.error());
  return s;
}

std::expected<std::unique_ptr<TlsStream>, std::string> TlsStream::client(
    std::shared_ptr<const TlsContext> ctx, std::string_view hostname) {
  std::unique_ptr<TlsStream> s(new TlsStream(std::move(ctx), Role::client));
  if (auto r = s->init(); !r) return std::unexpected(r.error());

  std::string host(hostname);
  if (!host.empty() && host.back() == '.') host.pop_back();  // "mx.example.com." from DNS
  if (host.find('\0') != std::string::npos) return std::unexpected("bad host name");
  if (host.empty()) {
    if (s->ctx_->verify_peer()) return std::unexpected("a verifying TLS client needs a host name");
  } else if (is_ip_literal(host)) {
    if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), host.c_str())) {
      return std::unexpected(drain_error_queue("bad IP address"));
    }
  } else {
    if (!SSL_set_tlsext_host_name(s->ssl_, host.c_str()) || !SSL_set1_host(s->ssl_, host.c_str())) {
      return std::unexpected(fmt::format("bad host name {}: {}", host, drain_error_queue("rejected")));
    }
  }

  ERR_clear_error();
  return s;
}

void TlsStream::compact_input() {
  if (in_pos_ == 0) return;
  in_.erase(0, in_pos_);
  in_pos_ = 0;
}

void TlsStream::feed_ciphertext(std::string_view bytes) {
  if (failed_ || eof_ || bytes.empty()) return;
  compact_input();
  in_.append(bytes);
  constexpr size_t kHandshakeCopy = 32 * 1024;
  if (!handshake_done_ && handshake_in_.size() < kHandshakeCopy)
    handshake_in_.append(bytes.substr(0, kHandshakeCopy - handshake_in_.size()));
}

int plaintext_fatal_alert(std::string_view records) {
  constexpr uint8_t kAlert = 21, kFatal = 2;
  size_t pos = 0;
  while (records.size() - pos >= 5) {
    const auto byte = [&](size_t i) { return static_cast<uint8_t>(records[pos + i]); };
    const size_t len = (size_t{byte(3)} << 8) | byte(4);
    if (records.size() - pos - 5 < len) break;
    if (byte(0) == kAlert && len == 2 && byte(5) == kFatal) return byte(6);
    pos += 5 + len;
  }
  return -1;
}

void TlsStream::feed_eof() { eof_ = true; }

void TlsStream::fail(std::string reason) {
  if (failed_) return;
  failed_ = true;
  error_ = std::move(reason);
  early_plaintext_.clear();
  in_.clear();
  in_pos_ = 0;
}

std::string TlsStream::reason_from_error_queue(int ssl_error) {
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return handshake_done_ ? "closed by peer" : "connection closed during handshake";
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        return handshake_done_ ? "connection closed without close_notify"
                               : "connection closed during handshake";
      }
      break;
    default:
      break;
  }
  // A peer that gave up during the handshake with a plaintext alert where
  // an encrypted record was due (OpenSSL's TLS 1.3 client refusing our
  // certificate): BoringSSL sees a record it cannot open ("bad packet
  // length"); the alert is the reason.
  if (!handshake_done_) {
    const int alert = plaintext_fatal_alert(handshake_in_);
    std::string().swap(handshake_in_);
    if (alert >= 0) {
      ERR_clear_error();
      return fmt::format("alert from peer: {}", SSL_alert_desc_string_long(alert));
    }
  }
  uint32_t first = ERR_peek_error();
  if (ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    ERR_clear_error();
    certificate_refused_ = !dane_refused_.empty()
                               ? dane_refused_
                               : X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
    return fmt::format("certificate verify failed: {}", certificate_refused_);
  }
  return drain_error_queue(eof_ ? "connection closed" : "TLS error");
}

std::expected<TlsStream::Events, std::string> TlsStream::process(std::string& plaintext_out) {
  if (failed_) return std::unexpected(error_);
  Events ev;
  ERR_clear_error();

  if (!handshake_done_) {
    int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ && !eof_) return ev;  // need more bytes
      fail(err == SSL_ERROR_WANT_READ ? std::string("connection closed during handshake")
                                      : reason_from_error_queue(err));
      return std::unexpected(error_);
    }
    handshake_done_ = true;
    std::string().swap(handshake_in_);
    ev.handshake_completed = true;
    if (!early_plaintext_.empty()) {
      std::string pending;
      pending.swap(early_plaintext_);
      encrypt(pending);
      if (failed_) return std::unexpected(error_);
    }
  }

  char buf[16384];
  for (;;) {
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plaintext_out.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ && !eof_) break;
    if (err == SSL_ERROR_ZERO_RETURN) {  // close_notify
      ERR_clear_error();
      if (!peer_closed_) ev.peer_closed = true;
      peer_closed_ = peer_close_notify_ = true;
      break;
    }
    if (eof_ && (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_WANT_READ) && ERR_peek_error() == 0) {
      // A bare TCP close. SMTP has its own end markers, so this is a lost
      // connection to the caller, not a TLS error.
      if (!peer_closed_) ev.peer_closed = true;
      peer_closed_ = true;
      break;
    }
    fail(reason_from_error_queue(err));
    OPENSSL_cleanse(buf, sizeof buf);
    return std::unexpected(error_);
  }
  OPENSSL_cleanse(buf, sizeof buf);
  if (in_.empty() && in_.capacity() > 16384) std::string().swap(in_);
  return ev;
}

void TlsStream::encrypt(std::string_view bytes) {
  ERR_clear_error();
  while (!bytes.empty()) {
    int len = static_cast<int>(std::min<size_t>(bytes.size(), 1 << 20));
    int n = SSL_write(ssl_, bytes.data(), len);
    if (n <= 0) {
      fail(reason_from_error_queue(SSL_get_error(ssl_, n)));
      return;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void TlsStream::write_plaintext(std::string_view bytes) {
  if (failed_ || closing_ || bytes.empty()) return;
  if (!handshake_done_) {
    early_plaintext_.append(bytes);
    return;
  }
  encrypt(bytes);
}

void TlsStream::close_notify() {
  if (closing_ || failed_) return;
  closing_ = true;
  early_plaintext_.clear();
  if (!handshake_done_) return;  // nothing useful to say; the caller closes
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues the alert; 0 = "sent, peer's not yet seen"
  ERR_clear_error();
}

bool TlsStream::take_ciphertext(std::string& out) {
  if (out_.empty()) return false;
  if (out.empty()) {
    out.swap(out_);
    out_.clear();
  } else {
    out.append(out_);
    out_.clear();
  }
  return true;
}

std::string TlsStream::version() const {
  if (!handshake_done_) return {};
  return SSL_get_version(ssl_);
}

std::string TlsStream::cipher() const {
  const SSL_CIPHER* c = handshake_done_ ? SSL_get_current_cipher(ssl_) : nullptr;
  return c ? SSL_CIPHER_get_name(c) : "";
}

int TlsStream::cipher_bits() const {
  const SSL_CIPHER* c = handshake_done_ ? SSL_get_current_cipher(ssl_) : nullptr;
  return c ? SSL_CIPHER_get_bits(c, nullptr) : 0;
}

bool TlsStream::peer_verified() const {
  if (role_ != Role::client || !handshake_done_) return false;
  if (!tlsa_.empty()) return !dane_match_.empty();  // the callback refuses every other chain
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl_));
  return peer && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::string TlsStream::verify_error() const {
  if (role_ != Role::client) return {};
  if (!handshake_done_) return "no handshake";
  if (!tlsa_.empty()) return dane_match_.empty() ? dane_refused_ : "";
  long r = SSL_get_verify_result(ssl_);
  if (r != X509_V_OK) return X509_verify_cert_error_string(r);
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl_));
  return peer ? "" : "no certificate";
}

// ---------------------------------------------------------------------------
// make_self_signed

namespace {

bool valid_dns_name(const std::string& h) {
  if (h.empty() || h.size() > 253 || h.front() == '.' || h.front() == '-') return false;
  char prev = 0;
  for (char c : h) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

// mkdir -p for the parent of `file`, new directories mode 0755, through
// conf/safe_file (no link followed where another account could plant one).
std::expected<void, std::string> make_parents(const std::string& file) {
  std::string parent = std::filesystem::path(file).parent_path().string();
  if (parent.empty()) return {};
  auto d = safe::make_dirs(parent, 0755);
  if (!d) return std::unexpected(d.error());
  return {};
}

// Writes `data` to the new file `path`: a temporary file in the same
// directory (O_CREAT | O_EXCL, never through a link), fsynced, then renamed
// into place with RENAME_NOREPLACE — an existing file (or link) at `path`
// is never overwritten or followed.
std::expected<void, std::string> write_file(const std::string& path, std::string_view data, mode_t mode) {
  std::filesystem::path p(path);
  auto dir = safe::open_dir(p.parent_path().empty() ? "." : p.parent_path().string());
  if (!dir) return std::unexpected(dir.error());
  const std::string name = p.filename().string();
  uint8_t rnd[8];
  RAND_bytes(rnd, sizeof rnd);
  std::string tmp = "." + name + ".tmp";
  for (uint8_t b : rnd) tmp += fmt::format("{:02x}", b);
  auto fd = safe::open_file_at(*dir, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) return std::unexpected(fmt::format("cannot create a file in {}: {}", dir->path, fd.error()));
  auto fail = [&](const char* what) {
    int e = errno;
    ::unlinkat(dir->fd.get(), tmp.c_str(), 0);
    return std::unexpected(fmt::format("cannot {} {}: {}", what, path, std::strerror(e)));
  };
  if (::fchmod(fd->get(), mode) != 0) return fail("set the mode of");
  while (!data.empty()) {
    ssize_t n = ::write(fd->get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd->get()) != 0) return fail("sync");
  if (::close(fd->release()) != 0) return fail("write");
  if (::renameat2(dir->fd.get(), tmp.c_str(), dir->fd.get(), name.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) {
      ::unlinkat(dir->fd.get(), tmp.c_str(), 0);
      return std::unexpected(fmt::format("{} exists already; not overwriting it", path));
    }
    return fail("rename into place");
  }
  ::fsync(dir->fd.get());
  return {};
}

}  // namespace

std::expected<void, std::string> make_self_signed(const std::string& cert_path,
                                                  const std::string& key_path,
                                                  const std::string& hostname) {
  if (!valid_dns_name(hostname)) {
    return std::unexpected(fmt::format("cannot make a certificate for \"{}\": not a host name", hostname));
  }
  ERR_clear_error();
  auto crypto_error = [](const char* what) {
    return std::unexpected(fmt::format("cannot make a self-signed certificate: {}: {}", what,
                                       drain_error_queue("failed")));
  };

  // The key: RSA 2048, e = 65537.
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  if (!rsa || !e || !BN_set_word(e.get(), RSA_F4) || !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr)) {
    return crypto_error("RSA key generation");
  }
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (!key || !EVP_PKEY_assign_RSA(key.get(), rsa.release())) return crypto_error("key");

  bssl::UniquePtr<X509> cert(X509_new());
  if (!cert || !X509_set_version(cert.get(), X509_VERSION_3)) return crypto_error("certificate");

  // A random positive 127-bit serial number.
  uint8_t serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof serial_bytes);
  serial_bytes[0] = static_cast<uint8_t>((serial_bytes[0] & 0x7f) | 0x40);
  bssl::UniquePtr<BIGNUM> serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!serial || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
    return crypto_error("serial number");
  }

  // Valid from an hour ago (clients with a slow clock) for ten years.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert.get()), 3650, 0, nullptr)) {
    return crypto_error("validity");
  }

  // Subject = issuer = CN=hostname. A CN holds at most 64 octets; clients go
  // by the subjectAltName anyway, so a longer name gets a generic CN.
  bssl::UniquePtr<X509_NAME> name(X509_NAME_new());
  std::string cn = hostname.size() <= 64 ? hostname : std::string("Sluice self-signed certificate");
  if (!name ||
      !X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_ASC,
                                  reinterpret_cast<const uint8_t*>(cn.data()),
                                  static_cast<int>(cn.size()), -1, 0) ||
      !X509_set_subject_name(cert.get(), name.get()) || !X509_set_issuer_name(cert.get(), name.get()) ||
      !X509_set_pubkey(cert.get(), key.get())) {
    return crypto_error("subject");
  }

  // basicConstraints CA:FALSE (critical): a server certificate, not a CA.
  // No keyUsage: with one lacking keyCertSign, verifiers would not accept
  // the certificate as its own trust anchor (a client pinning it as CA file).
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
  if (!bc || !X509_add1_ext_i2d(cert.get(), NID_basic_constraints, bc.get(), 1, X509V3_ADD_DEFAULT)) {
    return crypto_error("basicConstraints");
  }
  // subjectAltName DNS:hostname.
  bssl::UniquePtr<GENERAL_NAMES> sans(GENERAL_NAMES_new());
  bssl::UniquePtr<GENERAL_NAME> gn(GENERAL_NAME_new());
  bssl::UniquePtr<ASN1_IA5STRING> dns(ASN1_IA5STRING_new());
  if (!sans || !gn || !dns || !ASN1_STRING_set(dns.get(), hostname.data(), static_cast<int>(hostname.size()))) {
    return crypto_error("subjectAltName");
  }
  GENERAL_NAME_set0_value(gn.get(), GEN_DNS, dns.release());
  if (!sk_GENERAL_NAME_push(sans.get(), gn.get())) return crypto_error("subjectAltName");
  gn.release();
  if (!X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, sans.get(), 0, X509V3_ADD_DEFAULT)) {
    return crypto_error("subjectAltName");
  }

  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) return crypto_error("signature");

  bssl::UniquePtr<BIO> kbio(BIO_new(BIO_s_mem()));
  bssl::UniquePtr<BIO> cbio(BIO_new(BIO_s_mem()));
  if (!kbio || !cbio ||
      !PEM_write_bio_PrivateKey(kbio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_X509(cbio.get(), cert.get())) {
    return crypto_error("PEM encoding");
  }
  std::string key_pem = bio_contents(kbio.get());
  std::string cert_pem = bio_contents(cbio.get());
  struct Wipe {
    std::string& s;
    ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wipe{key_pem};
  ERR_clear_error();

  if (auto r = make_parents(key_path); !r) return r;
  if (auto r = make_parents(cert_path); !r) return r;
  // The key first: a certificate without its key is the state to avoid.
  if (auto r = write_file(key_path, key_pem, 0600); !r) return r;
  if (auto r = write_file(cert_path, cert_pem, 0644); !r) return r;
  return {};
}

}  // namespace sluice::tls
