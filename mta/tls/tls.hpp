// tls.hpp — TLS for SMTP over in-memory buffers (BoringSSL). No sockets.
//
// TlsContext holds what every connection of one kind shares: for the server
// the certificate chain and private key, for the client the CA store and
// whether verification failures are fatal; plus the protocol and cipher
// policy (TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE + AES-GCM or
// CHACHA20-POLY1305 only). TlsStream is one connection's TLS state. It never
// touches a socket: the event-loop glue moves bytes between the socket and
// the stream, and between the stream and the SMTP session.
//
// The four byte paths, each with one method, named by what flows through it:
//
//     socket --feed_ciphertext()--> TlsStream --process(plaintext_out)--> session
//     session --write_plaintext()--> TlsStream --take_ciphertext(out)--> socket
//
// Driving a stream (what mta/server.cpp does; see docs/tls.md):
//   - on every socket read:  feed_ciphertext(bytes); process(plain);
//                            then hand `plain` to the session, then send
//                            whatever take_ciphertext() yields (even when
//                            process() failed: it may be a TLS alert).
//   - on socket EOF:         feed_eof(); process(plain) -> peer_closed or an
//                            error if the handshake had not finished.
//   - the session replies:   write_plaintext(reply); then take_ciphertext()
//                            and write it to the socket. Plaintext written
//                            before the handshake completes is held and
//                            encrypted as soon as it completes.
//   - handshake completion:  the process() call that completes it reports
//                            Events::handshake_completed (exactly once);
//                            version()/cipher()/cipher_bits() are valid from
//                            then on (for the log and the Received header).
//   - clean close:           close_notify(), take_ciphertext(), write it,
//                            then close the socket.
// A client stream starts with one process() call before anything is fed:
// that produces the ClientHello; send it, then drive it like a server stream.
// (A session to resume, or other per-connection settings, go in through
// native() before that first call.)
//
// Implicit TLS (port 465): make the server stream at accept and start the
// session at once; its greeting, written with write_plaintext(), is held
// and goes out encrypted right after the handshake.
//
// STARTTLS, in this order: (1) the session's "220 2.0.0 Ready to start TLS"
// is written to the socket in plaintext; (2) the session drops whatever it
// still holds from the plaintext phase (the rest of that read after the
// STARTTLS line, its line reader's partial line); (3) the glue makes the
// server stream; (4) from the next socket read on, every read goes to
// feed_ciphertext() and everything the session receives comes out of
// process(). A stream only ever sees bytes read after it was made, and no
// call puts plaintext into the inbound path, so bytes sent before the
// handshake can reach the session only if the session itself keeps them.
//
// Threading: a TlsContext is immutable once made and may be shared by any
// number of streams on any threads (shared_ptr). A TlsStream belongs to one
// thread at a time. There is no global mutable state: reloading means making
// a new TlsContext; streams keep the context they were made with alive.
//
// Lifetime: a TlsStream is neither copyable nor movable (BoringSSL points
// back into it); own it through the unique_ptr its factories return.
//
// Failure reporting: nothing throws (except std::bad_alloc). Factories return
// std::expected with a one-line message naming the file or the problem.
// A stream that fails (bad input from the peer, failed verification, ...)
// stays failed: process() returns the same short lowercase reason every time
// ("wrong version number", "http request", "no shared cipher",
// "unsupported protocol", "alert from peer: handshake failure",
// "certificate verify failed: Hostname mismatch", "connection closed during
// handshake") and error() repeats it; later writes are dropped.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dns/result.hpp"

// BoringSSL's own type names, so that users of this header need not include
// <openssl/ssl.h>.
struct ssl_ctx_st;
struct ssl_st;

namespace sluice::tls {

enum class Role { server, client };

class TlsContext {
 public:
  // A server context: `cert_chain_pem_path` holds the server's certificate
  // first, then its intermediates (Let's Encrypt's fullchain.pem);
  // `key_pem_path` its unencrypted private key (PEM: PKCS#8, PKCS#1 or
  // SEC1; RSA or ECDSA). Both may name the same file.
  // Fails when a file cannot be read or parsed, or the key does not belong
  // to the first certificate.
  static std::expected<std::shared_ptr<TlsContext>, std::string> server(
      const std::string& cert_chain_pem_path, const std::string& key_pem_path);

  // A client context. The server's certificate is always checked against
  // `ca_file_or_empty` (empty: /etc/ssl/certs/ca-certificates.crt) and the
  // host name each TlsStream::client() is given; `verify_peer` decides
  // whether a failed check aborts the handshake (true) or is only reported
  // through TlsStream::peer_verified() (false: opportunistic TLS). An
  // unreadable CA file is an error when verify_peer is set or the file was
  // named; a missing default one is tolerated without verify_peer (then
  // nothing verifies).
  static std::expected<std::shared_ptr<TlsContext>, std::string> client(
      bool verify_peer, const std::string& ca_file_or_empty = {});

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Role role() const { return role_; }
  bool verify_peer() const { return verify_peer_; }
  // Server: one line for the log, e.g.
  // "subject=CN=mail.example.com not_after=Mar  1 12:00:00 2035 GMT
  //  intermediates=1" (" (EXPIRED)" after the date when it is). Client:
  // "ca_file=/etc/ssl/certs/ca-certificates.crt verify=required|report".
  const std::string& describe() const { return description_; }

  // The BoringSSL context, for tests and for settings this class does not
  // wrap. Change it only before the first stream is made from it.
  ssl_ctx_st* native() const { return ctx_; }

 private:
  TlsContext(Role role, ssl_ctx_st* ctx);
  Role role_;
  ssl_ctx_st* ctx_;  // owned (one reference)
  bool verify_peer_ = false;
  std::string description_;
};

class TlsStream {
 public:
  // A server-side stream (after STARTTLS, or at once on an implicit-TLS
  // port). `ctx` must be a server context.
  static std::expected<std::unique_ptr<TlsStream>, std::string> server(
      std::shared_ptr<const TlsContext> ctx);

  // A client-side stream to `hostname` (sent as SNI when it is a DNS name,
  // and the name the certificate must match; an IP address literal is
  // matched against the certificate's IP addresses; empty: no name check,
  // which a verifying context refuses). `ctx` must be a client context.
  // The first process() call produces the ClientHello.
  static std::expected<std::unique_ptr<TlsStream>, std::string> client(
      std::shared_ptr<const TlsContext> ctx, std::string_view hostname);

  // A client stream authenticated by DANE (RFC 7672) instead of the CA
  // store: `tlsa` are the host's DNSSEC-validated TLSA records (at least one
  // usable, tls/dane.hpp). The handshake fails unless the server's chain
  // matches them: a DANE-EE(3) record matches the leaf (names and dates
  // ignored), or a DANE-TA(2) record matches a chain certificate from which
  // the chain verifies and whose leaf names `hostname` (or, as RFC 7672
  // §3.2.2 allows, the MX host name is all that is checked). Done in
  // BoringSSL's custom verify callback, so nothing is sent to a server
  // that fails. peer_verified() then means "DANE matched"; the refusal's
  // reason ("DANE: no TLSA record matched ...") is certificate_refused().
  static std::expected<std::unique_ptr<TlsStream>, std::string> client_dane(
      std::shared_ptr<const TlsContext> ctx, std::string_view hostname,
      std::vector<dns::TlsaRecord> tlsa);

  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // ---- inbound: socket -> stream -> session ----

  // Bytes read from the socket. Only buffered; process() consumes them.
  void feed_ciphertext(std::string_view bytes);
  // The socket reached EOF (the peer closed or shut down its side).
  void feed_eof();

  struct Events {
    bool handshake_completed = false;  // in this call; reported exactly once
    bool peer_closed = false;          // in this call; no more plaintext comes
  };
  // Advances the handshake and decrypts everything fed so far, appending the
  // plaintext to `plaintext_out` (it never touches what is already there).
  // Always follow it with take_ciphertext(): the handshake, TLS 1.3 session
  // tickets and key updates, and alerts all produce bytes to send.
  std::expected<Events, std::string> process(std::string& plaintext_out);

  // ---- outbound: session -> stream -> socket ----

  // Encrypts `bytes` (held until the handshake completes). Dropped once the
  // stream failed or close_notify() was called.
  void write_plaintext(std::string_view bytes);
  // Starts a clean shutdown: queues a close_notify alert. Nothing may be
  // written after it. (Waiting for the peer's close_notify is not needed.)
  void close_notify();
  // Moves the ciphertext waiting to be sent to the socket into `out`
  // (appended; when `out` is empty the buffer is handed over without a
  // copy). Returns false when there was none.
  bool take_ciphertext(std::string& out);
  size_t pending_ciphertext_bytes() const { return out_.size(); }

  // ---- state ----

  Role role() const { return role_; }
  bool handshake_done() const { return handshake_done_; }
  bool peer_closed() const { return peer_closed_; }
  // The peer ended with a close_notify (false after a bare EOF).
  bool peer_close_notify() const { return peer_close_notify_; }
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }

  // After the handshake: "TLSv1.3"; the cipher's OpenSSL name as Postfix
  // logs it ("TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES128-GCM-SHA256"); its
  // symmetric key bits (256). Empty / 0 before.
  std::string version() const;
  std::string cipher() const;
  int cipher_bits() const;

  // Client streams, after the handshake: whether the server's certificate
  // chained to the CA store and matched the host name. With a verifying
  // context a completed handshake implies it. verify_error() says why not
  // ("Hostname mismatch", "self signed certificate"; empty when verified).
  bool peer_verified() const;
  // A client_dane() stream whose handshake completed: how DANE matched
  // ("DANE-EE(3) SPKI SHA2-256 matched the leaf certificate"). Empty otherwise.
  const std::string& dane_match() const { return dane_match_; }
  std::string verify_error() const;
  // Client streams whose handshake failed because a verifying context
  // refused the server's certificate: why ("self signed certificate",
  // "Hostname mismatch", "IP address mismatch", "unable to get local issuer
  // certificate"). Empty for every other outcome.
  const std::string& certificate_refused() const { return certificate_refused_; }

  // The BoringSSL connection, for tests and diagnostics only.
  ssl_st* native() const { return ssl_; }

 private:
  TlsStream(std::shared_ptr<const TlsContext> ctx, Role role);
  std::expected<void, std::string> init();
  void fail(std::string reason);
  std::string reason_from_error_queue(int ssl_error);
  void encrypt(std::string_view bytes);
  void compact_input();

  // The custom BIO reads and writes these (see tls.cpp).
  friend struct BufferBio;
  std::string in_;       // ciphertext fed, not yet consumed by BoringSSL
  size_t in_pos_ = 0;    // consumed prefix of in_
  // A copy of what the peer sent during the handshake (at most 32 KiB,
  // dropped once it ends): a TLS 1.3 peer that refuses our certificate may
  // send its alert in plaintext where BoringSSL expects an encrypted record
  // ("bad packet length"); the failure's reason is then read from this.
  std::string handshake_in_;
  bool eof_ = false;
  std::string out_;      // ciphertext produced, not yet taken

  std::shared_ptr<const TlsContext> ctx_;
  Role role_;
  ssl_st* ssl_ = nullptr;  // owned
  std::string early_plaintext_;  // written before the handshake completed
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool peer_close_notify_ = false;
  bool closing_ = false;
  bool failed_ = false;
  std::string error_;
  std::string certificate_refused_;
  // DANE (client_dane): the records, and the verdict of the verify callback.
  friend struct DaneVerifier;
  std::vector<dns::TlsaRecord> tlsa_;
  std::string dane_match_;    // set when the chain matched
  std::string dane_refused_;  // set when it did not: the reason
};

// The description of the first fatal alert record sent in plaintext in
// `records` (TLS records from their start: type, version, length, body),
// or -1 when there is none. Pure; for TlsStream's failure reason.
int plaintext_fatal_alert(std::string_view records);

// Makes a self-signed certificate for `hostname` (CN and subjectAltName
// DNS:hostname, valid from one hour ago for ten years, RSA 2048 with
// SHA-256: the choice every client accepts, as Debian's snakeoil) and writes
// it as PEM: the key to `key_path` with mode 0600, the certificate to
// `cert_path` with mode 0644, each through a temporary file and rename, so a
// reader never sees half a file. Missing parent directories are created with
// mode 0755. An existing file (or link) at either path is never replaced
// nor followed: an error (conf/safe_file.hpp). `hostname` must be a DNS name
// (letters, digits, '-', '.'; at most 253 octets).
std::expected<void, std::string> make_self_signed(const std::string& cert_path,
                                                  const std::string& key_path,
                                                  const std::string& hostname);

}  // namespace sluice::tls
