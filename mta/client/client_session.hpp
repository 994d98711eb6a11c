// client_session.hpp — the outgoing SMTP client for one connection, as a
// state machine. Pure: no sockets, clocks, TLS or logs (docs/smtp-client.md).
// client_session.cpp has the connection phases and failures,
// client_transaction.cpp the transactions.
//
// Events in: on_connected() (TCP up, or for implicit TLS the handshake done
// with ClientConfig::in_tls set), feed(bytes) from the server (decrypted when
// in TLS), on_tls_ready()/on_tls_failed() after start_tls(), on_eof(),
// on_timeout(), start_transaction(), body()/body_end(), quit().
// Actions out, through ClientHost: send bytes, start_tls, need_body,
// transaction_done, connection_failed, idle, close.
//
// One connection carries any number of transactions, one at a time (one
// transaction = one message to all recipients of one destination):
//   greeting -> EHLO (HELO when EHLO gets 5xx) -> [STARTTLS -> handshake ->
//   EHLO] -> [AUTH] -> ready (idle()) -> MAIL, RCPT..., DATA -> body ->
//   end of data -> ready (idle()) -> ... -> quit(): QUIT and close().
// With PIPELINING, MAIL, every RCPT and DATA go out in one send() and the
// replies are matched in order (RFC 2920); without it, one command per reply.
// After a failed or aborted transaction (MAIL refused, no recipient accepted,
// DATA refused) RSET goes out and idle() follows its 250; after a completed
// one (the reply to the final dot), idle() follows at once.
//
// Contract with the host (the libuv glue):
//   - Every start_transaction() gets exactly one transaction_done(), with one
//     RecipientResult per Transaction recipient, in order. Start transactions
//     only when ready (after idle()); a call in any other state is answered
//     at once with every recipient temporary ("451 4.3.0 ... not ready").
//   - connection_failed() reports a failure of the connection itself, at most
//     once, after the transaction_done() of a transaction in flight (whose
//     recipients it already settled). close() always comes last, once.
//     After close() the session ignores every event.
//   - quit(): when ready, QUIT and close() (no failure report). Otherwise the
//     session aborts: a transaction in flight is settled as temporary
//     ("451 4.3.2 delivery aborted") and close() follows, without QUIT.
//   - need_body(): call body(chunk) as the content is read from the spool,
//     then body_end(). Pace the reads by the socket's writes: the data-block
//     timeout is about writes making progress. body() after the transaction
//     ended (the connection failed meanwhile) is ignored.
//   - Timer: after every event, arm the timer with timeout(); on expiry call
//     on_timeout(). While sending the body (State::body), also re-arm it when
//     a socket write completes (RFC 5321 §4.5.3.2.5 is per TCP send).
//     When ready (idle), on_timeout() sends QUIT and closes: that is the
//     idle limit of a reused connection.
//   - Host callbacks may call back into the session (start_transaction() or
//     quit() from idle(), body() from need_body()).
//
// STARTTLS (RFC 3207): after the server's 220 the session drops every byte
// after that reply in the same feed(), and everything fed until
// on_tls_ready() — plaintext injected before the handshake (the client-side
// CVE-2011-0411 class) never reaches the protocol. In TLS it sends EHLO again
// and forgets the capabilities learnt in plaintext.
//
// Credentials (relayhost AUTH PLAIN/LOGIN, RFC 4954) are sent only inside
// TLS, whatever ClientConfig::tls says; without TLS the connection fails and
// the password never leaves. Under `verify` (the relayhost default with
// credentials, SPEC "Hardening") AUTH also waits for the host to report the
// certificate verified; a certificate that did not verify ends the
// connection with Failure::tls_untrusted ("451 4.7.5 Server certificate not
// trusted: <why>; AUTH not sent"), temporary, before anything else is sent.
// The password is wiped once AUTH is over or the connection failed.
//
// Loops (docs/delivery.md, "Mail loops"): with ClientConfig::own_hostname
// set, an EHLO (or HELO) reply whose first word is that name (ignoring case
// and a final dot) ends the connection before anything else is sent, with
// Failure::loop ("451 4.4.6 ..."), temporary: the host is this Sluice under
// an address it does not know as its own, or a twin sharing its name.
// A greeting naming it is only noted (greeting_names_self()): a neighbour
// may share the name, and its EHLO reply tells.
//
// Everything the server says goes through ReplyParser: a malformed or
// hostile reply is a protocol error (temporary). Reply texts in results are
// sanitised; use describe() for logs.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/auth/sasl.hpp"
#include "mta/client/dot_stuffer.hpp"
#include "mta/client/reply_parser.hpp"
#include "mta/proto/reply.hpp"

namespace sluice::client {

// conf::DeliveryTls, mirrored to keep this library free of conf.
//   none           never STARTTLS (unless credentials are set)
//   opportunistic  STARTTLS when offered and a TLS context exists, else plaintext
//   required       STARTTLS or defer (not offered / refused / failed)
//   verify         as required; the host's TLS stream must verify the
//                  certificate against the host's name (an MX name, the
//                  relayhost's name or relayhost_tls_name, or an address
//                  checked against the certificate's IP entries):
//                  on_tls_ready(false) or a refused certificate fail with
//                  Failure::tls_untrusted
enum class TlsPolicy { none, opportunistic, required, verify };
std::string_view to_string(TlsPolicy p);

// RFC 5321 §4.5.3.2 where it gives a value; Postfix's defaults otherwise.
struct Timeouts {
  using ms = std::chrono::milliseconds;
  ms connect = std::chrono::seconds(30);   // for the glue's connect()
  ms greeting = std::chrono::minutes(5);   // §4.5.3.2.1 initial 220
  ms helo = std::chrono::minutes(5);       // EHLO/HELO reply
  ms starttls = std::chrono::minutes(5);   // STARTTLS reply, and the handshake
  ms auth = std::chrono::minutes(5);       // each AUTH step
  ms mail = std::chrono::minutes(5);       // §4.5.3.2.2
  ms rcpt = std::chrono::minutes(5);       // §4.5.3.2.3
  ms data_init = std::chrono::minutes(2);  // §4.5.3.2.4 DATA -> 354
  ms data_block = std::chrono::minutes(3); // §4.5.3.2.5 per send of content
  ms data_done = std::chrono::minutes(10); // §4.5.3.2.6 final dot -> reply
  ms rset = std::chrono::minutes(2);       // RSET before reusing
  ms idle = std::chrono::seconds(5);       // a ready connection waiting for work
};

struct ClientConfig {
  std::string helo_name = "localhost";  // our EHLO/HELO argument
  TlsPolicy tls = TlsPolicy::opportunistic;
  bool tls_available = false;  // the host has a client TLS context: start_tls() works
  bool in_tls = false;         // implicit TLS (port 465): already in TLS at on_connected()
  // Relayhost AUTH. Set: TLS is required, PLAIN (else LOGIN) must be offered.
  std::optional<auth::Credentials> credentials;
  // Our hostname, for the loop check; "" turns it off.
  std::string own_hostname;
  Timeouts timeouts;
};

struct Recipient {
  std::string address;  // without <>
  std::string orcpt;    // DSN ORCPT as stored (xtext), "" when absent
  uint8_t notify = 0;   // DSN NOTIFY bits as in queue::Recipient: 1 success, 2 failure, 4 delay, 8 never
};

struct Transaction {
  std::string sender;  // "" is the null sender <>
  std::vector<Recipient> recipients;
  uint64_t size = 0;            // content size, declared with SIZE=
  bool needs_8bitmime = false;  // content has 8-bit octets (BODY=8BITMIME)
  bool needs_smtputf8 = false;  // SMTPUTF8 (also implied by a non-ASCII address)
  std::string envid;            // DSN ENVID (xtext), "" when absent
  uint8_t ret = 0;              // DSN RET: 0 unset, 1 FULL, 2 HDRS
  // RFC 8689: send MAIL FROM:<...> REQUIRETLS. A server that does not offer
  // REQUIRETLS gets nothing: every recipient has Stage::requiretls and a local
  // 451 4.7.30 (queue/policy tries the next host). Whether the host's name and
  // TLS qualify is policy::requiretls_refusal(), asked before the transaction.
  bool requiretls = false;
};

// What became of one recipient. The reply's class always agrees with the
// outcome (2xx sent, 4xx temporary, 5xx permanent).
enum class Outcome { sent, temporary, permanent };
// Where it was decided: locally before sending (local), or in reply to /
// while waiting for ... (mail, rcpt, data = the DATA command, message = while
// sending the content, end_of_data = the final dot), or requiretls: nothing
// was sent because the message needs REQUIRETLS and the server does not offer
// it (a fact about the server, not the recipient: try the next host).
enum class Stage { local, mail, rcpt, data, message, end_of_data, requiretls };
std::string_view to_string(Outcome o);
std::string_view to_string(Stage s);  // "MAIL FROM", "RCPT TO", "DATA", "end of DATA", ...

struct RecipientResult {
  std::string address;
  Outcome outcome = Outcome::temporary;
  Stage stage = Stage::local;
  proto::Reply reply;   // sanitised
  bool remote = false;  // reply is the server's, verbatim; else made here
};

struct TransactionResult {
  std::vector<RecipientResult> recipients;  // in Transaction::recipients order
  // Set when the message is larger than the server's SIZE limit (RFC 1870):
  // nothing was sent, every recipient has Stage::local and 552 5.3.4, and
  // the connection stays ready for a smaller message.
  struct TooBig {
    uint64_t size = 0;   // the message's
    uint64_t limit = 0;  // the server's
  };
  std::optional<TooBig> too_big;
  size_t count(Outcome o) const;
};

enum class Failure {
  greeting_refused,   // 4xx/5xx greeting (reply)
  helo_refused,       // EHLO 4xx, or EHLO 5xx then HELO 4xx/5xx (reply)
  tls_not_offered,    // TLS required (policy or credentials), STARTTLS not in EHLO
  tls_unavailable,    // TLS required, offered, but the host has no TLS context
  tls_refused,        // TLS required and STARTTLS answered other than 220
  tls_failed,         // handshake failed (not because of the certificate)
  tls_untrusted,      // under `verify`: the certificate did not verify; nothing more sent
  auth_not_offered,   // credentials set, AUTH PLAIN/LOGIN not offered in TLS
  auth_failed,        // AUTH refused (535 or anything else but 235)
  protocol_error,     // unparsable reply, or a reply that makes no sense here
  timeout,            // a phase timed out
  connection_closed,  // EOF from the server
  service_closing,    // 421 at any point after the greeting
  loop,               // the EHLO/HELO reply names own_hostname: this is us (451 4.4.6)
};
std::string_view to_string(Failure f);

struct ConnectionFailure {
  Failure kind = Failure::protocol_error;
  // false only for greeting_refused / helo_refused with a 5xx reply. Every
  // other failure is temporary, auth_failed included (never bounce for
  // our own relayhost credentials).
  bool temporary = true;
  proto::Reply reply;   // sanitised; its class agrees with `temporary`
  bool remote = false;  // reply is the server's, verbatim
  std::string phase;    // "receiving the initial server greeting", "sending RCPT TO", ...
  // The final dot had been sent and its reply never came (timeout, EOF, a
  // bad reply): the server may have taken the message.
  bool data_sent = false;
};

struct Capabilities {
  bool esmtp = false;          // EHLO succeeded
  std::string name;            // first word of the EHLO/HELO reply (sanitised)
  bool pipelining = false;
  bool starttls = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool requiretls = false;     // RFC 8689 (only ever offered inside TLS)
  bool enhanced = false;       // ENHANCEDSTATUSCODES
  bool auth_plain = false;
  bool auth_login = false;
  std::optional<uint64_t> size;  // SIZE offered; 0 = no declared limit
};

class ClientHost {
 public:
  virtual ~ClientHost() = default;
  // Write these bytes (through the TLS stream when in TLS).
  virtual void send(std::string_view bytes) = 0;
  // The server said 220 to STARTTLS: make the client TLS stream (verifying
  // the MX name under `verify`) and run the handshake; then call
  // on_tls_ready() or on_tls_failed(). Socket reads until the stream exists
  // may be fed or dropped: the session ignores them.
  virtual void start_tls() = 0;
  // DATA was accepted: call body() with the content, then body_end().
  virtual void need_body() = 0;
  virtual void transaction_done(TransactionResult result) = 0;
  virtual void connection_failed(ConnectionFailure failure) = 0;
  // Ready for start_transaction() or quit().
  virtual void idle() = 0;
  // Close the connection once everything sent so far is written.
  virtual void close() = 0;
};

class ClientSession {
 public:
  enum class State {
    connecting, greeting, ehlo, helo, starttls, tls_handshake, auth, ready,
    mail, rcpt, data, body, data_done, rset, closed
  };

  ClientSession(ClientConfig cfg, ClientHost& host);
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // TCP is up; with ClientConfig::in_tls (implicit TLS), the handshake is
  // done too, and peer_verified / verify_error say what on_tls_ready() says.
  void on_connected(bool peer_verified = false, std::string_view verify_error = {});
  void feed(std::string_view bytes);
  // peer_verified: the TLS stream verified the certificate against the name;
  // verify_error: why not ("self signed certificate", "Hostname mismatch").
  void on_tls_ready(bool peer_verified, std::string_view verify_error = {});
  // The handshake (after STARTTLS, or the implicit one before on_connected())
  // failed. certificate_refused: non-empty when a verifying TLS stream
  // aborted it because the certificate did not verify (the reason).
  void on_tls_failed(std::string_view reason, std::string_view certificate_refused = {});
  void on_eof();
  void on_timeout();

  void start_transaction(Transaction t);
  void body(std::string_view chunk);
  void body_end();
  void quit();

  State state() const { return state_; }
  bool closed() const { return state_ == State::closed; }
  bool ready() const { return state_ == State::ready; }
  bool in_tls() const { return in_tls_; }
  bool peer_verified() const { return peer_verified_; }
  bool authenticated() const { return authenticated_; }
  const Capabilities& capabilities() const { return caps_; }
  // The 2xx greeting's first word is own_hostname (only noted: see above).
  bool greeting_names_self() const { return greeting_names_self_; }
  uint64_t transactions() const { return transactions_; }  // finished so far
  std::chrono::milliseconds timeout() const;

  static std::string_view to_string(State s);
  // "sending RCPT TO", "receiving the initial server greeting", ...
  static std::string_view phase(State s);

  // How much a server may send while the content goes out (it should send
  // nothing); more is a protocol error.
  static constexpr size_t max_held = 16 * 1024;

 private:
  enum class AuthStep { plain_challenge, plain_result, login_user, login_password, login_result };

  void handle(proto::Reply r);
  void on_greeting(const proto::Reply& r);
  void on_ehlo(const proto::Reply& r);
  void on_helo(const proto::Reply& r);
  void on_starttls(const proto::Reply& r);
  void on_auth(const proto::Reply& r);
  void on_tx_reply(const proto::Reply& r);
  void on_final(const proto::Reply& r);
  void on_rset(const proto::Reply& r);

  void send_ehlo();
  void after_hello();
  bool names_self(std::string_view name) const;
  void after_tls_choice();
  void start_auth();
  void auth_done();
  void become_ready();
  void notify_idle();
  bool tls_required() const;
  void untrusted(std::string_view why, bool polite);

  void begin(Transaction t);
  void send_rcpt(size_t k);
  std::string rcpt_line(size_t k) const;
  void decide(size_t idx, Outcome o, Stage s, const proto::Reply& r, bool remote);
  void decide_reply(size_t idx, Stage s, const proto::Reply& r);
  void end_transaction(bool rset);
  void settle_local(Transaction t, Outcome o, const proto::Reply& r);

  void fail(Failure kind, proto::Reply reply, bool remote, bool polite);
  void protocol_error(std::string_view what);
  void process_held();
  void wipe_credentials();

  ClientConfig cfg_;
  ClientHost& host_;
  State state_ = State::connecting;
  ReplyParser parser_;
  DotStuffer stuffer_;
  Capabilities caps_;
  bool in_tls_ = false;
  bool peer_verified_ = false;  // the TLS stream verified the certificate
  bool authenticated_ = false;
  bool greeting_names_self_ = false;
  AuthStep auth_step_ = AuthStep::plain_result;
  uint64_t transactions_ = 0;
  uint64_t seq_ = 0;  // bumped at every start_transaction (re-entrancy checks)
  uint64_t tls_epoch_ = 0;     // bumped when STARTTLS is accepted: feed() stops
  bool in_idle_ = false;       // inside host_.idle()
  bool idle_pending_ = false;  // idle() asked for again while inside it

  // The transaction in flight.
  bool tx_active_ = false;
  Transaction tx_;
  TransactionResult result_;
  std::vector<char> decided_;     // per recipient
  std::vector<size_t> sendable_;  // recipient indices sent as RCPT, in order
  size_t step_ = 0;               // reply awaited: 0 MAIL, 1..n RCPT, n+1 DATA
  bool mail_ok_ = false;
  size_t accepted_ = 0;
  std::vector<char> accepted_flags_;
  bool discard_final_ = false;    // "." sent after a 354 nobody needed
  std::string held_;              // server bytes received while sending the body
  std::string out_;               // scratch for stuffed content
};

}  // namespace sluice::client
