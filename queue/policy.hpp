// policy.hpp — the one place where delivery decides what an outcome means:
// sent, defer (try again later), bounce (give up and tell the sender), and
// whether to try the next MX host or address now.
//
// Like Postfix's smtp_trouble.c, this is "the policy of how to deal with the
// error"; the delivery glue only reports what happened (a DNS failure, a
// connection failure, a reply) and applies the Verdict it gets back. Nothing
// here knows about sockets, clocks, logs or the spool: every function is pure
// and table-tested (policy_test.cpp). The strategy for administrators is in
// docs/delivery.md ("Temporary or permanent").
//
// Replies are values. queue/ does not depend on mta/, so `Outcome` is the
// queue-side twin of sluice::proto::Reply; the glue converts with
//   Outcome{reply.code, reply.enhanced, reply.text()}.
// A Verdict records the reply as text ("550 5.1.1 <a@example.com>: no such
// user") because that is what the spool keeps (Recipient::last_reply), what
// sluicectl shows and what a bounce reports as Diagnostic-Code. Reasons that
// Sluice makes up itself (DNS, connection failures, expiry) are written in the
// same form with a synthesized code ("451 4.4.1 connect to ...: Connection
// refused") and an empty remote_host, so a bounce can tell them apart.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dns/result.hpp"
#include "queue/tls_level.hpp"

namespace sluice::queue {

// A reply from a remote SMTP server.
struct Outcome {
  int code = 0;          // 0 when there was no reply
  std::string enhanced;  // "5.1.1" as the server sent it; "" when it sent none
  std::string text;      // the reply's lines joined with "; "

  bool positive() const { return code >= 200 && code < 300; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500 && code < 600; }
  std::string str() const;  // "550 5.1.1 text" (enhanced left out when empty)
  bool operator==(const Outcome&) const = default;
};

enum class Action : uint8_t {
  sent,    // the remote server took responsibility (2xx after the data)
  defer,   // try again along delivery.retry_schedule
  bounce,  // give up: the recipient fails, the sender gets a DSN (unless <>)
};
std::string_view to_string(Action a);

// What to do with one recipient.
struct Verdict {
  Action action = Action::defer;
  std::string status;       // RFC 3463 enhanced status: "2.0.0", "4.4.1", "5.1.1", "4.4.7"
  std::string reply;        // kept as last_reply, reported as Diagnostic-Code
  std::string remote_host;  // the server whose reply `reply` is; "" when Sluice made it up
  TlsLevel tls = TlsLevel::none;  // how the deciding session was protected (set by the attempt)
  bool operator==(const Verdict&) const = default;
};

namespace policy {

struct Context {
  // delivery.relayhost is set: everything goes to one host the administrator
  // chose, so failures that are about that host (its name, its greeting, our
  // credentials) are configuration problems and never bounce mail.
  bool via_relayhost = false;
};

// ---------------------------------------------------------------------------
// DNS: the destination could not be resolved; applies to every recipient of
// the job.

enum class DnsFailure : uint8_t {
  temporary,  // SERVFAIL, REFUSED, timeout, unreachable server     -> defer 4.4.3
  nxdomain,   // the domain does not exist                         -> bounce 5.1.2
  no_route,   // exists, but no MX host / address can ever be used -> bounce 5.4.4
  null_mx,    // RFC 7505 null MX                                  -> bounce 5.1.10 (556)
};

// `domain` is the destination, `reason` the resolver's text (e.g.
// "nx.example: domain does not exist (NXDOMAIN)"). With a relayhost every
// DNS failure (of the relayhost's own name) defers.
Verdict dns_failure(DnsFailure what, std::string_view domain, std::string_view reason,
                    const Context& ctx);

// What the resolver's Status means (dns/result.hpp): nullopt for ok. The
// status is set in dns/ where the answer is known; `reason` is never read.
std::optional<DnsFailure> dns_failure_of(dns::Status s);

// ---------------------------------------------------------------------------
// Session: something went wrong with one host (one address of one MX host)
// before the recipients had their own answers, or while the accepted ones
// waited for the end of the data. Applies to every recipient of the job that
// has no verdict yet.

enum class SessionFailure : uint8_t {
  connect_failed,   // refused, unreachable, reset before the greeting         (detail)
  timeout,          // no answer in time: connect, greeting or any command     (detail)
  connection_lost,  // the server closed or reset the connection mid-session   (detail)
  protocol_error,   // a reply that cannot be read: too long, NUL, bad code...  (detail)
  greeting,         // the greeting was not 2xx                                (reply)
  helo,             // EHLO and HELO refused                                   (reply)
  tls_unavailable,  // TLS is required (delivery.tls or credentials), not offered (detail)
  tls_failed,       // STARTTLS refused, handshake or verification failed      (reply or detail)
  auth_failed,      // relayhost refused our credentials / no usable mechanism (reply or detail)
  mail_from,        // MAIL FROM refused                                       (reply)
  too_big,          // the server's SIZE limit is below the message size       (detail)
  loop,             // its EHLO (or HELO) reply names our own hostname          (detail)
  requiretls,       // a REQUIRETLS message, and this host does not qualify     (detail)
};
std::string_view to_string(SessionFailure f);

struct SessionEvent {
  SessionFailure what = SessionFailure::connect_failed;
  std::string host;    // as it should appear in logs and bounces: "mx1.example.com[192.0.2.1]"
  Outcome reply;       // the server's reply, when there was one
  std::string detail;  // local description: "Connection refused", "after RCPT TO", ...
  // The end of the data was sent and no reply came (timeout / connection
  // lost only): the server may have taken the message.
  bool data_sent = false;
};

// After `e` at one host: is it worth trying the next MX host or address now
// (if one is left)? Yes for connection failures, timeouts, lost connections
// (unless the data was sent), any greeting or EHLO refusal, TLS problems, a
// host naming itself with our hostname (a loop: 4.4.6, as Postfix), a 4xx
// to MAIL FROM and a host a REQUIRETLS message may not go to; no for AUTH
// failures, a 5xx to MAIL FROM and a message too big for the server.
bool try_next_host(const SessionEvent& e, const Context& ctx);

// The verdict for the recipients still undecided once try_next_host() said
// no or no host is left. `tried` holds every host's failure of this attempt
// in order (at least one). The last one decides, except that a greeting or
// EHLO 5xx bounces only when *every* host tried refused that way (and never
// with a relayhost); otherwise it defers.
Verdict session_verdict(std::span<const SessionEvent> tried, const Context& ctx);

// ---------------------------------------------------------------------------
// Loops (docs/delivery.md, "Mail loops").

// Every next hop left for `destination` (its MX hosts once queue::Myself
// pruned them, its implicit MX, or the relayhost) is this Sluice: bounce
// at once, "554 5.4.6 mail for DESTINATION loops back to myself", also with
// a relayhost (waiting cannot fix it; the administrator must).
Verdict loops_back(std::string_view destination);

// MTA-STS (RFC 8461 §5): the destination's policy is in enforce mode and
// none of its MX hosts matches a pattern it lists: defer, 451 4.7.5 (a
// policy or MX change may fix it; at the end of the queue lifetime it
// bounces like any deferral).
Verdict sts_no_matching_mx(std::string_view destination);

// ---------------------------------------------------------------------------
// Recipients and data.

// Where one recipient's result was decided in a transaction: before anything
// was sent (local), or in reply to MAIL FROM, RCPT TO, the DATA command, while
// the content went out (message) or to the final dot (end_of_data); or
// nothing was sent because the message needs REQUIRETLS and the server does
// not offer it (requiretls). The client session's stages, mirrored: queue/
// does not depend on mta/.
enum class Stage : uint8_t { local, mail, rcpt, data, message, end_of_data, requiretls };

struct RecipientResult {
  Stage stage = Stage::local;
  // Its class is the result: 2xx sent, 4xx temporary, 5xx permanent.
  Outcome reply;
  bool remote = false;  // the server's reply; else one the client made up
};

// What one recipient's result from a transaction at `host` means: its
// verdict, or nullopt when the result is not about the recipient and the
// host's failure decides instead: a refused MAIL FROM or a server without
// REQUIRETLS (refused_mail() makes that failure), or a temporary result the
// client made up because the connection failed (`connection_failed`). Local refusals (an address the
// client will not send, content the server cannot take) bounce or defer by
// their class, with no remote host.
std::optional<Verdict> recipient_verdict(const RecipientResult& r, std::string_view host,
                                         bool connection_failed);

// A refused MAIL FROM among the results of one transaction at `host`: a
// failure of the whole message at that host (the next host is tried after a
// 4xx; a 5xx bounces), as a SessionEvent. A Stage::requiretls result (MAIL
// not sent: the server lacks REQUIRETLS) gives SessionFailure::requiretls.
// nullopt when MAIL was neither refused nor held back.
std::optional<SessionEvent> refused_mail(std::span<const RecipientResult> results,
                                         std::string_view host);

// The reply to one RCPT TO: nullopt when accepted (the recipient waits for
// the data), else its verdict: 4xx defer, 5xx bounce, anything else defers
// (4.5.0, protocol error).
std::optional<Verdict> rcpt_reply(const Outcome& reply, std::string_view host);

// A refusal of the DATA command (anything but 354), or the reply after the
// end of the data: for every accepted recipient. 2xx sent, 4xx defer, 5xx
// bounce, anything else defers (4.5.0).
Verdict data_reply(const Outcome& reply, std::string_view host);

// ---------------------------------------------------------------------------
// REQUIRETLS (RFC 8689 §4.2.1; docs/transport-security.md "REQUIRETLS",
// docs/delivery.md "REQUIRETLS").

// Whether a message sent with REQUIRETLS may go to `host` on this
// connection, asked once TLS (or its absence) is settled and the EHLO reply
// is known, before the transaction. nullopt: it may (send MAIL with
// REQUIRETLS). Otherwise the SessionFailure::requiretls event to report for
// that host instead of a transaction: try_next_host() says yes, and when no
// host is left session_verdict() defers with 451 4.7.30; the deferral that
// outlives delivery.max_queue_lifetime becomes 550 5.7.30 (expire()).
//   name_authenticated     the host's name is authenticated: the MX records
//                          were DNSSEC-secure, or an MTA-STS policy in
//                          enforce mode lists the host, or it is the
//                          configured relayhost
//   level                  how this session is protected; it must be
//                          authenticated() (PKIX, MTA-STS or DANE)
//   peer_offers_requiretls REQUIRETLS was in the EHLO reply (after STARTTLS)
// The first unmet condition, in this order, is the event's detail.
std::optional<SessionEvent> requiretls_refusal(std::string_view host, bool name_authenticated,
                                               TlsLevel level, bool peer_offers_requiretls);

// A REQUIRETLS message that no next hop can ever take under the present
// configuration (delivery.tls = "none": Sluice never starts TLS, so waiting
// cannot help): bounce at once, "550 5.7.30 REQUIRETLS support required:
// <why>".
Verdict requiretls_impossible(std::string_view why);

// ---------------------------------------------------------------------------
// Lifetime and the administrator.

// True when a message that arrived at `arrival_us` has been queued for
// max_queue_lifetime or longer at `now_us`.
bool expired(int64_t arrival_us, int64_t lifetime_us, int64_t now_us);

// A deferral after the message expired: bounce with status 4.4.7 (delivery
// time expired, RFC 3463), keeping the last reply for the DSN. A REQUIRETLS
// deferral (status 4.7.30) bounces as RFC 8689 §5 says instead: 550 5.7.30,
// the reply's code and status made permanent, its text kept.
Verdict expire(Verdict deferred);

// `sluicectl queue bounce`: give up now, status 5.0.0.
Verdict cancelled_by_admin();

// A job whose message the scheduler no longer has (a bug): defer, 4.3.0.
Verdict message_missing();

// The RFC 3463 status to report for a reply: the server's enhanced code if
// it is well-formed, with its class forced to the reply's (a "550 4.1.1"
// reports 5.1.1); else class.fallback (e.g. "5" + ".0.0"). A code outside
// 2xx/4xx/5xx gets class 4.
std::string status_of(const Outcome& reply, std::string_view fallback = "0.0");
// True for "c.s.d" with c in {2,4,5}, s and d of 1 to 3 digits.
bool valid_status(std::string_view s);

}  // namespace policy
}  // namespace sluice::queue
