// format.cpp — see format.hpp.
#include "mta/control/format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "mta/auth/sasl.hpp"

namespace sluice::control {

namespace {

using J = nlohmann::json;

const J* field(const J& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// A string field, printable; `dflt` when missing, null or not a string.
std::string str(const J& j, const char* key, std::string_view dflt = "-") {
  const J* v = field(j, key);
  if (v && v->is_string()) return printable(v->get_ref<const std::string&>());
  return std::string(dflt);
}

std::optional<uint64_t> num(const J& j, const char* key) {
  const J* v = field(j, key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer() && v->get<int64_t>() >= 0) return uint64_t(v->get<int64_t>());
  return std::nullopt;
}

std::string numstr(const J& j, const char* key) {
  auto n = num(j, key);
  return n ? std::to_string(*n) : "-";
}

const J& array_or_empty(const J& j, const char* key) {
  static const J empty = J::array();
  const J* v = field(j, key);
  return v && v->is_array() ? *v : empty;
}

const J& object_or_empty(const J& j, const char* key) {
  static const J empty = J::object();
  const J* v = field(j, key);
  return v && v->is_object() ? *v : empty;
}

bool flag(const J& j, const char* key) {
  const J* v = field(j, key);
  return v && v->is_boolean() && v->get<bool>();
}

// "2026-12-03T06:02:23Z" -> "2026-12-03 06:02:23"; anything else as is.
std::string human_time(const J& j, const char* key) {
  std::string s = str(j, key);
  if (s.size() == 20 && s[10] == 'T' && s[19] == 'Z') {
    s[10] = ' ';
    s.pop_back();
  }
  return s;
}

std::string plural(uint64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

std::string sender_of(const J& m) {
  const J* v = field(m, "sender");
  if (v && v->is_string() && v->get_ref<const std::string&>().empty()) return "<>";
  return str(m, "sender");
}

std::string human_size(uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", double(b) / 1024);
  if (b < 1024ull * 1024 * 1024) return fmt::format("{:.1f} MiB", double(b) / (1024 * 1024));
  return fmt::format("{:.1f} GiB", double(b) / (1024.0 * 1024 * 1024));
}

std::string duration(uint64_t s) {
  const uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d) return fmt::format("{}d {}h {}m", d, h, m);
  if (h) return fmt::format("{}h {}m", h, m);
  if (m) return fmt::format("{}m {}s", m, sec);
  return fmt::format("{}s", sec);
}

void put_message_row(std::string& out, const J& m) {
  fmt::format_to(std::back_inserter(out), "{:<16}  {:<8}  {:>9}  {:<19}  {:<19}  {}\n",
                 str(m, "id"), str(m, "state"), numstr(m, "size"), human_time(m, "arrival_time"),
                 human_time(m, "next_attempt"), sender_of(m));
  for (const J& r : array_or_empty(m, "recipients")) {
    std::string status = str(r, "status", "");
    out += "    ";
    out += str(r, "address");
    if (!status.empty() && status != "pending") fmt::format_to(std::back_inserter(out), "  [{}]", status);
    out += '\n';
  }
  if (const J* e = field(m, "last_error"); e && e->is_string() && !e->get_ref<const std::string&>().empty())
    fmt::format_to(std::back_inserter(out), "    ({})\n", printable(e->get_ref<const std::string&>()));
}

// The content as stored has CRLF line ends; a terminal wants LF.
std::string crlf_to_lf(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out += s[i];
  }
  return out;
}

}  // namespace

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      // U+0080..U+009F, the C1 controls (CSI among them) in UTF-8.
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", static_cast<unsigned char>(s[i + 1]));
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string format_list(const J& response, std::optional<std::string_view> state) {
  const J& messages = array_or_empty(response, "messages");
  if (messages.empty()) {
    if (state) return fmt::format("No {} messages\n", printable(*state));
    return "Mail queue is empty\n";
  }
  std::string out;
  out.reserve(messages.size() * 200);
  fmt::format_to(std::back_inserter(out), "{:<16}  {:<8}  {:>9}  {:<19}  {:<19}  {}\n", "Queue ID",
                 "State", "Size", "Arrival (UTC)", "Next attempt (UTC)", "Sender / recipients");
  for (const J& m : messages) {
    out += '\n';
    put_message_row(out, m);
  }
  const J& t = object_or_empty(response, "total");
  const uint64_t n = num(t, "messages").value_or(messages.size());
  const uint64_t bytes = num(t, "bytes").value_or(0);
  fmt::format_to(std::back_inserter(out), "\n-- {}, {} KB: {} queued, {} deferred, {} held\n",
                 plural(n, "message", "messages"), (bytes + 1023) / 1024, numstr(t, "queued"),
                 numstr(t, "deferred"), numstr(t, "held"));
  return out;
}

std::string format_show(const J& response) {
  const J& m = object_or_empty(response, "message");
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    fmt::format_to(std::back_inserter(out), "{:<15} {}\n", label, value);
  };
  line("Queue ID:", str(m, "id"));
  line("State:", str(m, "state"));
  line("Size:", numstr(m, "size") + " bytes");
  line("Arrival:", human_time(m, "arrival_time") + " UTC");
  const J* next = field(m, "next_attempt");
  line("Next attempt:", next && next->is_string() ? human_time(m, "next_attempt") + " UTC"
                                                  : std::string("- (held)"));
  line("Attempts:", numstr(m, "attempts"));
  line("Sender:", "<" + str(m, "sender", "") + ">");
  line("Message-ID:", str(m, "message_id", "").empty() ? "-" : str(m, "message_id"));
  std::string client = str(m, "client_address", "");
  std::string helo = str(m, "helo", "");
  line("Client:", (client.empty() ? std::string("-") : client) +
                      (helo.empty() ? "" : " (helo " + helo + ")"));
  std::string login = str(m, "auth_user", "");
  line("Login:", login.empty() ? "-" : login);
  std::string body_type = str(m, "body_type", "");
  line("Body type:", (body_type.empty() ? std::string("-") : body_type) +
                         (flag(m, "smtputf8") ? ", SMTPUTF8" : ""));
  // RFC 8689: MAIL's REQUIRETLS, or a "TLS-Required: No" header field.
  if (flag(m, "requiretls") || flag(m, "tls_optional"))
    line("TLS:", flag(m, "requiretls") ? "REQUIRETLS (authenticated TLS to every hop)"
                                       : "optional (TLS-Required: No)");
  std::string envid = str(m, "envid", "");
  std::string ret = str(m, "ret", "");
  if (!envid.empty() || !ret.empty())
    line("DSN:", fmt::format("envid={} ret={}", envid.empty() ? "-" : envid, ret.empty() ? "-" : ret));

  out += "\nRecipients:\n";
  for (const J& r : array_or_empty(m, "recipients")) {
    fmt::format_to(std::back_inserter(out), "  {}\n", str(r, "address"));
    std::string status = str(r, "status");
    auto attempts = num(r, "attempts");
    if (attempts && *attempts > 0) status += ", " + plural(*attempts, "attempt", "attempts");
    if (const J* last = field(r, "last_attempt"); last && last->is_string())
      status += ", last " + human_time(r, "last_attempt") + " UTC";
    // How the session that gave the last verdict was protected: shown when a
    // server gave it (remote_host set), as delivery logs it (tls=...).
    if (!str(r, "remote_host", "").empty() && field(r, "tls") != nullptr)
      status += ", tls=" + str(r, "tls");
    fmt::format_to(std::back_inserter(out), "      status: {}\n", status);
    std::string reply = str(r, "last_reply", "");
    if (!reply.empty()) {
      std::string host = str(r, "remote_host", "");
      fmt::format_to(std::back_inserter(out), "      reply:  {}{}\n", reply,
                     host.empty() ? "" : " (from " + host + ")");
    }
    std::string orcpt = str(r, "orcpt", "");
    if (!orcpt.empty()) fmt::format_to(std::back_inserter(out), "      orcpt:  {}\n", orcpt);
    std::string notify;
    for (const J& f : array_or_empty(r, "notify"))
      if (f.is_string()) notify += (notify.empty() ? "" : ",") + printable(f.get_ref<const std::string&>());
    if (!notify.empty()) fmt::format_to(std::back_inserter(out), "      notify: {}\n", notify);
  }

  const J& history = array_or_empty(m, "history");
  out += "\nHistory (oldest first):\n";
  if (history.empty()) out += "  (no attempts yet)\n";
  for (const J& h : history) {
    std::string host = str(h, "host", "");
    fmt::format_to(std::back_inserter(out), "  {} UTC  {}  {}{}\n", human_time(h, "time"),
                   str(h, "recipient", "(all recipients)"), host.empty() ? "" : host + ": ",
                   str(h, "reply", ""));
  }

  if (const J* b = field(m, "body_base64"); b && b->is_string()) {
    auto content = auth::base64_decode(b->get_ref<const std::string&>());
    if (!content) {
      out += "\nMessage: (the daemon sent content that is not valid base64)\n";
    } else {
      if (flag(m, "body_truncated"))
        fmt::format_to(std::back_inserter(out), "\nMessage (the first {} of {} bytes):\n",
                       content->size(), numstr(m, "size"));
      else
        out += "\nMessage:\n";
      out += crlf_to_lf(*content);
      if (!out.empty() && out.back() != '\n') out += '\n';
    }
  }
  return out;
}

std::string format_status(const J& response) {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    fmt::format_to(std::back_inserter(out), "{:<17} {}\n", label, value);
  };
  out += "sluiced " + str(response, "version") + "\n";
  auto up = num(response, "uptime_seconds");
  line("Started:", human_time(response, "started") + " UTC" +
                       (up ? " (up " + duration(*up) + ")" : std::string()));
  const J& c = object_or_empty(response, "connections");
  line("Connections in:", fmt::format("{} open, {} since start", numstr(c, "in"), numstr(c, "in_total")));
  line("Connections out:", fmt::format("{} open", numstr(c, "out")));
  const J& q = object_or_empty(response, "queue");
  line("Queue:", fmt::format("{}: {} queued, {} deferred, {} held",
                             plural(num(q, "messages").value_or(0), "message", "messages"),
                             numstr(q, "queued"), numstr(q, "deferred"), numstr(q, "held")));
  line("Delivery:", fmt::format("{} in flight, {} with work",
                                plural(num(q, "jobs").value_or(0), "job", "jobs"),
                                plural(num(q, "destinations").value_or(0), "destination", "destinations")));
  const J& s = object_or_empty(response, "spool");
  line("Spool:", fmt::format("{} committed, {} updates, {} syncs, {} written",
                             plural(num(s, "commits").value_or(0), "message", "messages"),
                             numstr(s, "updates"), numstr(s, "syncs"),
                             human_size(num(s, "bytes").value_or(0))));
  // Failures an administrator must fix; their lines are warnings in the log.
  const J& w = object_or_empty(response, "warnings");
  if (field(response, "warnings")) {
    const uint64_t total = num(w, "total").value_or(0);
    std::string text = total == 0 ? std::string("none")
                                  : fmt::format("{} (relayhost login {}, certificate verification {}, "
                                                "configuration {}); see the log's warning lines",
                                                total, numstr(w, "relayhost_auth"),
                                                numstr(w, "tls_verify"), numstr(w, "config"));
    line("Warnings:", text);
  }
  return out;
}

std::string format_tls_reports(const J& response) {
  std::string out;
  if (!flag(response, "enabled")) out += "TLS reports are not enabled ([tls_reports] enabled = false)\n";
  const J& days = array_or_empty(response, "days");
  size_t rows = 0;
  for (const J& d : days) {
    for (const J& dom : array_or_empty(d, "domains")) {
      if (rows++ == 0) out += fmt::format("{:<10}  {:<30} {:>10} {:>8}  {}\n", "DAY", "DOMAIN", "SUCCESSFUL", "FAILED", "REPORTS TO");
      std::string rua;
      for (const J& a : array_or_empty(dom, "rua"))
        if (a.is_string()) rua += (rua.empty() ? "" : ",") + printable(a.get<std::string>());
      out += fmt::format("{:<10}  {:<30} {:>10} {:>8}  {}\n", str(d, "day"), printable(str(dom, "domain")),
                         numstr(dom, "successful"), numstr(dom, "failed"), rua);
      for (const J& p : array_or_empty(dom, "policies"))
        for (const J& f : array_or_empty(p, "failures"))
          out += fmt::format("{:<10}    {} x {} ({}) from={} mx={} ip={}{}\n", "", numstr(f, "count"),
                             str(f, "result"), str(p, "type"), printable(str(f, "sending_ip", "")),
                             printable(str(f, "receiving_mx", "")), printable(str(f, "receiving_ip", "")),
                             str(f, "reason", "").empty() ? "" : " reason=" + printable(str(f, "reason", "")));
    }
  }
  if (rows == 0) out += "No TLS sessions counted\n";
  return out;
}

namespace {

std::string joined(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

// A site's automation: "rate 10/m, 1 connection until 2026-12-05 23:10:00 UTC
// (in 29m 12s): REASON", or "suspended until ...".
std::string automation_text(const J& a) {
  std::vector<std::string> limits;
  if (flag(a, "suspended")) {
    limits.push_back("suspended");
  } else {
    if (std::string rate = str(a, "rate", ""); !rate.empty()) limits.push_back("rate " + rate);
    if (uint64_t n = num(a, "connections").value_or(0); n > 0)
      limits.push_back(plural(n, "connection", "connections"));
  }
  std::string out = limits.empty() ? std::string("in force") : joined(limits, ", ");
  out += fmt::format(" until {} UTC", human_time(a, "until"));
  if (auto left = num(a, "expires_in")) out += fmt::format(" (in {})", duration(*left));
  if (std::string reason = str(a, "reason", ""); !reason.empty()) out += ": " + reason;
  return out;
}

}  // namespace

std::string format_shaping(const J& response) {
  std::string out;
  const std::string store = str(response, "store");
  if (store == "local") out += "Store: this node only\n";
  else if (store.starts_with("redis")) out += "Store: shared through " + store + "\n";
  else out += "Store: " + store + "\n";
  const J& sites = array_or_empty(response, "sites");
  if (sites.empty()) return out + "no active sites\n";
  for (const J& s : sites) {
    const std::string source = str(s, "source", "");
    out += fmt::format("\n{} ({})\n", str(s, "site"), source.empty() ? "default for its MX hosts" : source);
    std::vector<std::string> domains;
    for (const J& d : array_or_empty(s, "domains"))
      if (d.is_string()) domains.push_back(printable(d.get_ref<const std::string&>()));
    out += fmt::format("  domains: {}\n", domains.empty() ? std::string("-") : joined(domains, ", "));
    out += fmt::format("  connections {} open, concurrency {} of {}\n", numstr(s, "connections"),
                       numstr(s, "concurrency"), numstr(s, "max_concurrency"));
    if (std::string rate = str(s, "rate", ""); rate.empty())
      out += "  rate unlimited\n";
    else
      out += fmt::format("  rate {}, {} left\n", rate, plural(num(s, "tokens").value_or(0), "token", "tokens"));
    if (const J* a = field(s, "automation"); a && a->is_object())
      out += "  automation: " + automation_text(*a) + "\n";
  }
  return out;
}

std::string format_action(const J& response) {
  const std::string action = str(response, "action");
  const J* ids = field(response, "ids");
  if (!ids || !ids->is_array()) {  // a flush of every message
    uint64_t n = num(response, "count").value_or(0);
    return fmt::format("{} {}\n", action, plural(n, "message", "messages"));
  }
  if (ids->empty()) return "Mail queue is empty\n";
  std::vector<std::string> held;
  for (const J& h : array_or_empty(response, "held"))
    if (h.is_string()) held.push_back(h.get<std::string>());
  std::string out;
  out.reserve(ids->size() * 30);
  for (const J& id : *ids) {
    if (!id.is_string()) continue;
    const auto& s = id.get_ref<const std::string&>();
    out += printable(s);
    out += ": ";
    out += action;
    if (std::find(held.begin(), held.end(), s) != held.end())
      out += " (but held: no attempt until released)";
    out += '\n';
  }
  return out;
}

std::string format_error(const J& response) {
  std::string message = str(response, "message", "");
  if (message.empty()) message = "the daemon reported an error: " + str(response, "error", "unknown");
  return message;
}

int render(const Request& request, std::string_view response_line, bool json, std::ostream& out,
           std::ostream& err, std::string_view program) {
  auto j = J::parse(response_line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    err << program << ": malformed response from sluiced\n";
    return kExitFailed;
  }
  try {
    const bool ok = flag(j, "ok");
    if (json) out << response_line << '\n';
    if (!ok) {
      err << program << ": " << format_error(j) << '\n';
      const std::string code = str(j, "error", "");
      return code == "permission_denied" || code == "busy" ? kExitUnreachable : kExitFailed;
    }
    if (!json) {
      switch (request.command) {
        case Command::list: {
          std::optional<std::string_view> state;
          if (request.state) state = queue::to_string(*request.state);
          out << format_list(j, state);
          break;
        }
        case Command::show: out << format_show(j); break;
        case Command::status: out << format_status(j); break;
        case Command::tls_reports: out << format_tls_reports(j); break;
        case Command::shaping: out << format_shaping(j); break;
        default: out << format_action(j); break;
      }
    }
    int rc = kExitOk;
    for (const J& v : array_or_empty(j, "vanished")) {
      if (!v.is_string()) continue;
      err << program << ": " << printable(v.get_ref<const std::string&>())
          << ": left the queue before it could be " << str(j, "action", "changed") << '\n';
      rc = kExitFailed;
    }
    return rc;
  } catch (const std::exception& e) {
    err << program << ": cannot show the response: " << e.what() << '\n';
    return kExitFailed;
  }
}

}  // namespace sluice::control
