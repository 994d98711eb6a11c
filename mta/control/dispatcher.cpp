// dispatcher.cpp — see dispatcher.hpp.
#include "mta/control/dispatcher.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "mta/auth/sasl.hpp"

namespace sluice::control {

namespace {

Outcome error(ErrorCode code, std::string message, std::vector<std::string> ids = {}) {
  return Outcome{error_response(Error{code, std::move(message), std::move(ids)}), {}};
}

// Written as text straight away: no JSON tree for thousands of messages.
Outcome list(const Request& r, QueueAdmin& admin) {
  const auto ids = admin.ids();
  std::string out;
  out.reserve(64 + ids.size() * 320);
  out += "{\"ok\":true,\"messages\":[";
  uint64_t bytes = 0;
  size_t n = 0, queued = 0, deferred = 0, held = 0;
  for (const auto& id : ids) {
    const queue::Envelope* env = admin.find(id);
    if (!env) continue;
    const auto state = queue::state_of(*env);
    if (r.state && state != *r.state) continue;
    if (n++) out += ',';
    bytes += env->size;
    switch (state) {
      case queue::MessageState::queued: ++queued; break;
      case queue::MessageState::deferred: ++deferred; break;
      case queue::MessageState::held: ++held; break;
    }
    append_summary(out, *env);
  }
  fmt::format_to(std::back_inserter(out),
                 "],\"total\":{{\"messages\":{},\"bytes\":{},\"queued\":{},\"deferred\":{},\"held\":{}}}}}",
                 n, bytes, queued, deferred, held);
  return Outcome{std::move(out), {}};
}

std::string unknown_message(const std::vector<std::string>& unknown) {
  std::string m = unknown.size() == 1 ? "unknown queue id: " : "unknown queue ids: ";
  for (size_t i = 0; i < unknown.size(); ++i) {
    if (i) m += ", ";
    m += unknown[i];
  }
  return m + " (nothing was changed)";
}

Outcome show(const Request& r, QueueAdmin& admin) {
  const queue::Envelope* env = admin.find(r.id);
  if (!env) return error(ErrorCode::unknown_id, unknown_message({r.id}), {r.id});
  Json m = message_detail(*env);
  const uint64_t size = env->size;
  if (r.body) {
    auto content = admin.read_body(r.id, kMaxBodyBytes);
    if (!content)
      return error(ErrorCode::io_error,
                   fmt::format("{}: cannot read the message: {}", r.id, content.error()));
    m["body_base64"] = auth::base64_encode(*content);
    m["body_truncated"] = size > content->size();
  }
  Json j;
  j["ok"] = true;
  j["message"] = std::move(m);
  return Outcome{dump(j), {}};
}

std::string_view past_tense(Command c) {
  switch (c) {
    case Command::remove: return "deleted";
    case Command::hold: return "held";
    case Command::release: return "released";
    case Command::flush: return "flushed";
    case Command::bounce: return "bounced";
    default: return "done";
  }
}

bool act(Command c, QueueAdmin& admin, std::string_view id) {
  switch (c) {
    case Command::remove: return admin.remove(id);
    case Command::hold: return admin.hold(id);
    case Command::release: return admin.release(id);
    case Command::flush: return admin.flush(id);
    case Command::bounce: return admin.bounce(id);
    default: return false;
  }
}

Outcome action(const Request& r, QueueAdmin& admin) {
  const std::string_view verb = past_tense(r.command);
  Json j;
  j["ok"] = true;
  j["action"] = verb;
  if (r.command == Command::flush && r.ids.empty()) {
    size_t n = admin.flush_all();
    j["count"] = n;
    return Outcome{dump(j), {fmt::format("all messages flushed ({})", n)}};
  }

  std::vector<std::string> ids;
  if (r.command == Command::remove && r.all) {
    ids = admin.ids();
  } else {
    std::vector<std::string> unknown;
    for (const auto& id : r.ids)
      if (!admin.find(id)) unknown.push_back(id);
    if (!unknown.empty()) {
      std::string message = unknown_message(unknown);
      return error(ErrorCode::unknown_id, std::move(message), std::move(unknown));
    }
    ids = r.ids;
  }

  // Flushing a held message makes it due, but it stays held: say so.
  std::vector<std::string> still_held;
  if (r.command == Command::flush)
    for (const auto& id : ids)
      if (const auto* env = admin.find(id); env && env->held) still_held.push_back(id);

  Outcome out;
  std::vector<std::string> done, vanished;
  done.reserve(ids.size());
  out.changes.reserve(ids.size());
  for (auto& id : ids) {
    if (act(r.command, admin, id)) {
      out.changes.push_back(fmt::format("{}: {}", id, verb));
      done.push_back(std::move(id));
    } else {
      vanished.push_back(std::move(id));
    }
  }
  j["count"] = done.size();
  j["ids"] = std::move(done);
  if (!still_held.empty()) j["held"] = std::move(still_held);
  if (!vanished.empty()) j["vanished"] = std::move(vanished);
  out.response = dump(j);
  return out;
}

Outcome status(QueueAdmin& admin) {
  const DaemonStatus s = admin.status();
  const int64_t now = admin.now_us();
  Json j;
  j["ok"] = true;
  j["version"] = s.version;
  j["time"] = rfc3339(now);
  j["started"] = rfc3339(s.started_us);
  j["uptime_seconds"] = std::max<int64_t>(0, (now - s.started_us) / 1'000'000);
  Json c;
  c["in"] = s.connections_in;
  c["in_total"] = s.connections_in_total;
  c["out"] = s.connections_out;
  j["connections"] = std::move(c);
  Json q;
  q["messages"] = s.counts.messages;
  q["queued"] = s.counts.queued;
  q["deferred"] = s.counts.deferred;
  q["held"] = s.counts.held;
  q["jobs"] = s.counts.jobs;
  q["destinations"] = s.counts.destinations;
  j["queue"] = std::move(q);
  Json sp;
  sp["commits"] = s.spool.commits;
  sp["updates"] = s.spool.updates;
  sp["syncs"] = s.spool.syncs;
  sp["bytes"] = s.spool.bytes;
  j["spool"] = std::move(sp);
  Json w;
  w["total"] = s.warnings.total();
  w["relayhost_auth"] = s.warnings.relayhost_auth;
  w["tls_verify"] = s.warnings.tls_verify;
  w["config"] = s.warnings.config;
  j["warnings"] = std::move(w);
  return Outcome{dump(j), {}};
}

// tls-reports.list: {"ok":true,"enabled":B,"days":[{"day":"YYYY-MM-DD","domains":[{"domain",
// "rua":[...],"successful":N,"failed":N,"policies":[{"type","successful","failed",
// "failures":[{"result","sending_ip","receiving_mx","receiving_ip","reason","count"}]}]}]}]}
Outcome tls_reports(QueueAdmin& admin) {
  Json days = Json::array();
  for (const auto& d : admin.tls_report_days()) {
    Json domains = Json::array();
    for (const auto& [domain, dc] : d.domains) {
      uint64_t ok = 0, failed = 0;
      Json policies = Json::array();
      for (const auto& [key, pc] : dc.policies) {
        ok += pc.success;
        failed += pc.failure_total();
        Json failures = Json::array();
        for (const auto& [fk, n] : pc.failures)
          failures.push_back({{"result", tlsrpt::result_type_name(fk.result)},
                              {"sending_ip", fk.sending_ip},
                              {"receiving_mx", fk.receiving_mx},
                              {"receiving_ip", fk.receiving_ip},
                              {"reason", fk.reason},
                              {"count", n}});
        policies.push_back({{"type", tlsrpt::policy_type_name(key.type)},
                            {"policy_strings", key.strings},
                            {"mx_patterns", key.mx},
                            {"successful", pc.success},
                            {"failed", pc.failure_total()},
                            {"failures", std::move(failures)}});
      }
      domains.push_back({{"domain", domain},
                         {"rua", dc.rua},
                         {"successful", ok},
                         {"failed", failed},
                         {"policies", std::move(policies)}});
    }
    days.push_back({{"day", tlsrpt::day_name(d.day)}, {"domains", std::move(domains)}});
  }
  Json j;
  j["ok"] = true;
  j["enabled"] = admin.tls_reports_enabled();
  j["days"] = std::move(days);
  return Outcome{dump(j), {}};
}

// tls-reports.send: {"ok":true,"action":"sent","count":N}
Outcome tls_reports_send(const Request& r, QueueAdmin& admin) {
  auto n = admin.send_tls_reports(r.include_today);
  if (!n) return error(ErrorCode::bad_request, n.error());
  Json j;
  j["ok"] = true;
  j["action"] = "sent";
  j["count"] = *n;
  return Outcome{dump(j), {fmt::format("tls reports sent{}: {} messages", r.include_today ? " (today included)" : "", *n)}};
}

// shaping: {"ok":true,"store":"local","sites":[{"site","source","domains":[...],"connections",
// "concurrency","max_concurrency","rate","tokens","automation":null or {"rate","connections",
// "suspended","until","expires_in","reason"}}]}, the sites by name.
Outcome shaping_sites(QueueAdmin& admin) {
  const int64_t now = admin.now_us();
  auto sites = admin.shaping_sites();
  std::stable_sort(sites.begin(), sites.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  Json list = Json::array();
  for (const auto& s : sites) {
    Json automation = nullptr;
    if (const auto& o = s.automation) {
      // Whole seconds left, rounded up: "0" only once it has ended.
      const int64_t left_us = std::max<int64_t>(0, o->until_us - now);
      automation = Json{{"rate", shaping::to_string(o->rate)},
                        {"connections", o->connections},
                        {"suspended", o->suspended},
                        {"until", rfc3339(o->until_us)},
                        {"expires_in", (left_us + 999'999) / 1'000'000},
                        {"reason", o->reason}};
    }
    list.push_back(Json{{"site", s.name},
                        {"source", s.source},
                        {"domains", s.domains},
                        {"connections", s.connections},
                        {"concurrency", s.concurrency},
                        {"max_concurrency", s.max_concurrency},
                        {"rate", shaping::to_string(s.rate)},
                        {"tokens", s.tokens},
                        {"automation", std::move(automation)}});
  }
  Json j;
  j["ok"] = true;
  j["store"] = admin.shaping_store();
  j["sites"] = std::move(list);
  return Outcome{dump(j), {}};
}

}  // namespace

Outcome dispatch(const Request& r, QueueAdmin& admin) {
  try {
    switch (r.command) {
      case Command::list: return list(r, admin);
      case Command::show: return show(r, admin);
      case Command::status: return status(admin);
      case Command::remove:
      case Command::hold:
      case Command::release:
      case Command::flush:
      case Command::bounce: return action(r, admin);
      case Command::tls_reports: return tls_reports(admin);
      case Command::tls_reports_send: return tls_reports_send(r, admin);
      case Command::shaping: return shaping_sites(admin);
    }
    return error(ErrorCode::internal, "unhandled command");
  } catch (const std::exception& e) {
    return error(ErrorCode::internal, fmt::format("internal error: {}", e.what()));
  }
}

Outcome handle_request(std::string_view line, QueueAdmin& admin) {
  auto r = parse_request(line);
  if (!r) return Outcome{error_response(r.error()), {}};
  return dispatch(*r, admin);
}

}  // namespace sluice::control
