// policy.cpp — delivery decisions (see policy.hpp and docs/delivery.md).
#include "queue/policy.hpp"

#include <algorithm>

namespace sluice::queue {

std::string Outcome::str() const {
  std::string s = std::to_string(code);
  if (!enhanced.empty()) {
    s += ' ';
    s += enhanced;
  }
  if (!text.empty()) {
    s += ' ';
    s += text;
  }
  return s;
}

std::string_view to_string(Action a) {
  switch (a) {
    case Action::sent: return "sent";
    case Action::defer: return "deferred";
    case Action::bounce: return "bounced";
  }
  return "unknown";
}

namespace policy {
namespace {

bool digits(std::string_view s) {
  if (s.empty() || s.size() > 3) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

char reply_class(int code) {
  if (code >= 200 && code < 300) return '2';
  if (code >= 500 && code < 600) return '5';
  return '4';  // 4xx, and anything unexpected is a temporary protocol problem
}

// `status` with its class digit replaced.
std::string with_class(std::string status, char cls) {
  if (!status.empty()) status[0] = cls;
  return status;
}

// A reason Sluice makes up, in reply form: "451 4.4.1 text".
Verdict made_up(Action action, int code, std::string status, std::string_view text) {
  Verdict v;
  v.action = action;
  v.reply = std::to_string(code) + " " + status + " " + std::string(text);
  v.status = std::move(status);
  return v;
}

// A server's reply, as the verdict `action` with a status of class `cls`.
Verdict from_reply(Action action, char cls, const Outcome& r, std::string_view host,
                   std::string_view fallback = "0.0") {
  Verdict v;
  v.action = action;
  v.status = with_class(status_of(r, fallback), cls);
  v.reply = r.str();
  v.remote_host = std::string(host);
  return v;
}

std::string with_detail(std::string s, std::string_view detail, std::string_view sep = ": ") {
  if (!detail.empty()) {
    s += sep;
    s += detail;
  }
  return s;
}

bool refused_at_greeting(const SessionEvent& e) {
  return (e.what == SessionFailure::greeting || e.what == SessionFailure::helo) &&
         e.reply.permanent();
}

// The deferral (or, for the kinds that never retry elsewhere, the verdict)
// that one host's failure means on its own.
Verdict verdict_for(const SessionEvent& e, const Context& ctx) {
  const std::string& host = e.host;
  switch (e.what) {
    case SessionFailure::connect_failed:
      return made_up(Action::defer, 451, "4.4.1",
                     with_detail("connect to " + host, e.detail.empty() ? "connection failed" : e.detail));
    case SessionFailure::timeout:
      return made_up(Action::defer, 451, "4.4.2",
                     with_detail("timeout talking to " + host, e.detail, " "));
    case SessionFailure::connection_lost:
      return made_up(Action::defer, 451, "4.4.2",
                     with_detail("lost connection with " + host, e.detail, " "));
    case SessionFailure::protocol_error:
      // The client's detail already reads "Protocol error while sending ...".
      return made_up(Action::defer, 451, "4.5.0",
                     with_detail(e.detail.empty() ? "Protocol error" : e.detail, host, " at "));
    case SessionFailure::greeting:
    case SessionFailure::helo:
      if (e.reply.code == 0)
        return made_up(Action::defer, 451, "4.5.0",
                       with_detail("no usable greeting from " + host, e.detail));
      return from_reply(Action::defer, '4', e.reply, host);
    case SessionFailure::tls_unavailable:
      return made_up(Action::defer, 451, "4.7.4",
                     with_detail("TLS is required, but " + host + " does not offer it", e.detail));
    case SessionFailure::tls_failed:
      if (e.reply.code != 0) return from_reply(Action::defer, '4', e.reply, host, "7.0");
      return made_up(Action::defer, 451, "4.7.5",
                     with_detail("TLS with " + host + " failed", e.detail));
    case SessionFailure::auth_failed:
      // Never a bounce, whatever the relayhost answered: the administrator
      // has to fix the credentials, and the mail must wait for that.
      if (e.reply.code != 0) return from_reply(Action::defer, '4', e.reply, host, "7.8");
      return made_up(Action::defer, 451, "4.7.8",
                     with_detail("authentication at " + host + " failed", e.detail));
    case SessionFailure::mail_from:
      if (e.reply.permanent()) return from_reply(Action::bounce, '5', e.reply, host);
      if (e.reply.code == 0)
        return made_up(Action::defer, 451, "4.5.0",
                       with_detail("no usable reply to MAIL FROM from " + host, e.detail));
      return from_reply(Action::defer, '4', e.reply, host, e.reply.transient() ? "0.0" : "5.0");
    case SessionFailure::too_big:
      return made_up(Action::bounce, 552, "5.3.4",
                     with_detail("message too big for " + host, e.detail));
    case SessionFailure::loop:
      // Maybe a neighbour sharing our name, maybe us behind an address we do
      // not know as ours: not certain enough to bounce (Postfix: 4.4.6).
      return made_up(Action::defer, 451, "4.4.6",
                     with_detail("mail loops back to myself at " + host, e.detail));
    case SessionFailure::requiretls:
      return made_up(Action::defer, 451, "4.7.30",
                     with_detail("REQUIRETLS support required, not met by " + host, e.detail));
  }
  (void)ctx;
  return made_up(Action::defer, 451, "4.0.0", "unknown failure at " + host);
}

}  // namespace

std::string_view to_string(SessionFailure f) {
  switch (f) {
    case SessionFailure::connect_failed: return "connect failed";
    case SessionFailure::timeout: return "timeout";
    case SessionFailure::connection_lost: return "connection lost";
    case SessionFailure::protocol_error: return "protocol error";
    case SessionFailure::greeting: return "greeting refused";
    case SessionFailure::helo: return "EHLO refused";
    case SessionFailure::tls_unavailable: return "TLS unavailable";
    case SessionFailure::tls_failed: return "TLS failed";
    case SessionFailure::auth_failed: return "authentication failed";
    case SessionFailure::mail_from: return "MAIL FROM refused";
    case SessionFailure::too_big: return "message too big";
    case SessionFailure::loop: return "loops back to myself";
    case SessionFailure::requiretls: return "REQUIRETLS not possible";
  }
  return "unknown";
}

bool valid_status(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  std::string_view rest = s.substr(2);
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return false;
  return digits(rest.substr(0, dot)) && digits(rest.substr(dot + 1));
}

std::string status_of(const Outcome& reply, std::string_view fallback) {
  char cls = reply_class(reply.code);
  if (valid_status(reply.enhanced)) return with_class(reply.enhanced, cls);
  return std::string(1, cls) + "." + std::string(fallback);
}

Verdict dns_failure(DnsFailure what, std::string_view domain, std::string_view reason,
                    const Context& ctx) {
  std::string why = reason.empty() ? std::string(domain) + ": DNS lookup failed" : std::string(reason);
  if (ctx.via_relayhost)  // the relayhost's name is the administrator's choice: never bounce
    return made_up(Action::defer, 451, "4.4.3", "relayhost lookup failed: " + why);
  switch (what) {
    case DnsFailure::temporary:
      return made_up(Action::defer, 451, "4.4.3", why);
    case DnsFailure::nxdomain:
      return made_up(Action::bounce, 550, "5.1.2", why);
    case DnsFailure::no_route:
      return made_up(Action::bounce, 550, "5.4.4", why);
    case DnsFailure::null_mx:
      return made_up(Action::bounce, 556, "5.1.10",
                     std::string(domain) + " does not accept mail (null MX)");
  }
  return made_up(Action::defer, 451, "4.4.3", why);
}

std::optional<DnsFailure> dns_failure_of(dns::Status s) {
  switch (s) {
    case dns::Status::ok: return std::nullopt;
    case dns::Status::null_mx: return DnsFailure::null_mx;
    case dns::Status::nxdomain: return DnsFailure::nxdomain;
    case dns::Status::no_route: return DnsFailure::no_route;
    case dns::Status::temporary: return DnsFailure::temporary;
  }
  return DnsFailure::temporary;
}

bool try_next_host(const SessionEvent& e, const Context& ctx) {
  (void)ctx;
  switch (e.what) {
    case SessionFailure::connect_failed:
    case SessionFailure::greeting:
    case SessionFailure::helo:
    case SessionFailure::tls_unavailable:
    case SessionFailure::tls_failed:
    case SessionFailure::loop:  // the next MX may be the real one
    case SessionFailure::requiretls:  // the next MX may qualify
      return true;
    case SessionFailure::timeout:
    case SessionFailure::connection_lost:
    case SessionFailure::protocol_error:
      // After the final dot the server may have the message: trying another
      // host now would make a duplicate likely; wait for the next attempt.
      return !e.data_sent;
    case SessionFailure::mail_from:
      return !e.reply.permanent();
    case SessionFailure::auth_failed:  // the same credentials fail everywhere
    case SessionFailure::too_big:      // the message will not shrink
      return false;
  }
  return false;
}

Verdict session_verdict(std::span<const SessionEvent> tried, const Context& ctx) {
  if (tried.empty()) return made_up(Action::defer, 451, "4.4.0", "no host could be tried");
  const SessionEvent& last = tried.back();
  if (!ctx.via_relayhost && refused_at_greeting(last) &&
      std::all_of(tried.begin(), tried.end(), refused_at_greeting)) {
    // Every server of the destination said "go away" for good.
    return from_reply(Action::bounce, '5', last.reply, last.host);
  }
  return verdict_for(last, ctx);
}

std::optional<Verdict> rcpt_reply(const Outcome& reply, std::string_view host) {
  if (reply.positive()) return std::nullopt;
  if (reply.permanent()) return from_reply(Action::bounce, '5', reply, host);
  return from_reply(Action::defer, '4', reply, host, reply.transient() ? "0.0" : "5.0");
}

Verdict data_reply(const Outcome& reply, std::string_view host) {
  if (reply.positive()) return from_reply(Action::sent, '2', reply, host);
  if (reply.permanent()) return from_reply(Action::bounce, '5', reply, host);
  return from_reply(Action::defer, '4', reply, host, reply.transient() ? "0.0" : "5.0");
}

std::optional<Verdict> recipient_verdict(const RecipientResult& r, std::string_view host,
                                         bool connection_failed) {
  const Outcome& o = r.reply;
  const std::string_view remote_host = r.remote ? host : std::string_view();
  if (o.positive()) return data_reply(o, host);
  if (r.stage == Stage::mail && r.remote) return std::nullopt;  // refused_mail() decides
  if (r.stage == Stage::requiretls) return std::nullopt;        // so it does here
  if (!r.remote && o.transient() && connection_failed) return std::nullopt;
  switch (r.stage) {
    case Stage::local:
      return from_reply(o.permanent() ? Action::bounce : Action::defer, reply_class(o.code), o, "");
    case Stage::rcpt:
      if (auto v = rcpt_reply(o, remote_host)) return v;
      return data_reply(o, remote_host);
    case Stage::mail:
    case Stage::requiretls:
    case Stage::data:
    case Stage::message:
    case Stage::end_of_data:
      break;
  }
  return data_reply(o, remote_host);
}

std::optional<SessionEvent> refused_mail(std::span<const RecipientResult> results,
                                         std::string_view host) {
  for (const RecipientResult& r : results) {
    if (r.stage == Stage::mail && r.remote && !r.reply.positive())
      return SessionEvent{SessionFailure::mail_from, std::string(host), r.reply, {}, false};
    if (r.stage == Stage::requiretls)
      return SessionEvent{SessionFailure::requiretls, std::string(host), {},
                          "it does not offer REQUIRETLS", false};
  }
  return std::nullopt;
}

std::optional<SessionEvent> requiretls_refusal(std::string_view host, bool name_authenticated,
                                               TlsLevel level, bool peer_offers_requiretls) {
  auto refuse = [host](std::string detail) {
    return SessionEvent{SessionFailure::requiretls, std::string(host), {}, std::move(detail), false};
  };
  if (!name_authenticated)
    return refuse("its name is not authenticated (MX records not DNSSEC-signed, no MTA-STS "
                  "policy in enforce mode naming it)");
  if (!authenticated(level))
    return refuse("TLS is " + std::string(to_string(level)) +
                  ", not authenticated by PKIX, MTA-STS or DANE");
  if (!peer_offers_requiretls) return refuse("it does not offer REQUIRETLS");
  return std::nullopt;
}

Verdict requiretls_impossible(std::string_view why) {
  return made_up(Action::bounce, 550, "5.7.30",
                 with_detail("REQUIRETLS support required", why));
}

Verdict loops_back(std::string_view destination) {
  return made_up(Action::bounce, 554, "5.4.6",
                 "mail for " + std::string(destination) + " loops back to myself");
}

Verdict sts_no_matching_mx(std::string_view destination) {
  return made_up(Action::defer, 451, "4.7.5",
                 "no MX host of " + std::string(destination) +
                     " is allowed by its MTA-STS policy (mode enforce)");
}

bool expired(int64_t arrival_us, int64_t lifetime_us, int64_t now_us) {
  return now_us - arrival_us >= lifetime_us;
}

Verdict expire(Verdict deferred) {
  deferred.action = Action::bounce;
  if (deferred.status == "4.7.30") {
    // RFC 8689 §5: "REQUIRETLS support required" is what the sender learns.
    deferred.status = "5.7.30";
    constexpr std::string_view kPrefix = "451 4.7.30";
    if (deferred.reply.starts_with(kPrefix))
      deferred.reply = "550 5.7.30" + deferred.reply.substr(kPrefix.size());
    return deferred;
  }
  deferred.status = "4.4.7";
  return deferred;
}

Verdict cancelled_by_admin() {
  return made_up(Action::bounce, 554, "5.0.0", "delivery cancelled by the mail administrator");
}

Verdict message_missing() {
  return made_up(Action::defer, 451, "4.3.0", "message not found");
}

}  // namespace policy
}  // namespace sluice::queue
