// delivery_security.cpp — Delivery's transport security (see delivery.hpp
// and docs/transport-security.md): the MTA-STS policy applied to the MX
// answer or the relayhost, the TLSA lookup and the Protection each
// connection is opened with, REQUIRETLS's next-hop rule, which idle
// connections may carry a job, the §5.1 check before a bounce, and the
// TLS-RPT counts of each session.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "conf/log.hpp"
#include "mta/delivery.hpp"
#include "mta/delivery_job.hpp"
#include "mta/tls/dane.hpp"
#include "mta/tls_reports.hpp"

namespace sluice::mta {

// A connection opened for an earlier job carries this one only if it was
// held to what this job needs now: an MTA-STS policy in enforce mode (it may
// have arrived since the connection was opened) or REQUIRETLS.
bool Delivery::may_reuse(const Outbound& o, const JobRun& run) {
  const Protection& p = o.protection();
  const bool held = p.rule == Protection::Rule::mta_sts || p.rule == Protection::Rule::dane;
  if (run.requiretls && !held && !p.verify) return false;
  if (held || run.relaxed || !sts_ || !config_->delivery.mta_sts) return true;
  auto policy = sts_->current(run.job.destination);
  return !policy || policy->mode != sts::Mode::enforce;
}

// SPEC: through a relayhost, the relayhost's domain is the MTA-STS policy
// domain: its name without the first label when it has three labels or
// more ("smtp.provider.net" -> "provider.net"), else the name itself; none
// for an address literal.
static std::string relayhost_policy_domain(const std::string& name) {
  if (name.empty() || net::IpAddress::parse(name)) return {};
  if (std::count(name.begin(), name.end(), '.') < 2) return name;
  return name.substr(name.find('.') + 1);
}

void Delivery::on_relayhost(JobRun* run, const dns::AddrResult& r) {
  const auto& dc = config_->delivery;
  run->sts.reset();
  const std::string domain = relayhost_policy_domain(dc.relayhost_name);
  if (sts_ && dc.mta_sts && !run->relaxed && !domain.empty()) {
    if (auto p = sts_->current(domain); p && p->mode != sts::Mode::none) {
      run->sts = std::make_shared<const sts::Policy>(std::move(*p));
      run->sts_domain = domain;
    }
  }
  if (run->sts && run->sts->mode == sts::Mode::enforce && r.status == dns::Status::ok &&
      !sts::mx_allowed(*run->sts, dc.relayhost_name)) {
    log::info("{}: mta-sts: domain={} mode=enforce does not list the relayhost {}", run->job.message_id,
              log::sanitize(domain), log::sanitize(dc.relayhost_name));
    run->attempt.give_up(queue::policy::sts_no_matching_mx(domain));
    finish(run, true);
    return;
  }
  note_site(run, {dc.relayhost_name});
  carry_out(run, run->attempt.on_addresses(r, dc.relayhost_name));
}

void Delivery::on_mx(JobRun* run, dns::MxResult r) {
  run->mx_secure = dane_ && r.mx_secure;
  run->sts.reset();
  if (sts_ && config_->delivery.mta_sts && !run->relaxed) {
    if (auto p = sts_->current(run->job.destination); p && p->mode != sts::Mode::none) {
      run->sts = std::make_shared<const sts::Policy>(std::move(*p));
      run->sts_domain = run->job.destination;
    }
  }
  if (run->sts && run->sts->mode == sts::Mode::enforce && r.status == dns::Status::ok) {
    // RFC 8461 §4.2: only the MX hosts the policy lists are candidates.
    std::vector<dns::MxHost> allowed;
    std::vector<std::string> refused;
    for (auto& h : r.hosts) {
      if (sts::mx_allowed(*run->sts, h.name))
        allowed.push_back(std::move(h));
      else
        refused.push_back(h.name);
    }
    if (!refused.empty())
      log::info("{}: mta-sts: domain={} mode=enforce skips MX {} (not in the policy)",
                run->job.message_id, log::sanitize(run->job.destination),
                log::sanitize(fmt::format("{}", fmt::join(refused, ","))));
    if (allowed.empty()) {
      run->attempt.give_up(queue::policy::sts_no_matching_mx(run->job.destination));
      finish(run, true);
      return;
    }
    r.hosts = std::move(allowed);
  } else if (run->sts && run->sts->mode == sts::Mode::testing) {
    for (const auto& h : r.hosts)
      if (!sts::mx_allowed(*run->sts, h.name))
        log::info("{}: mta-sts: domain={} mode=testing: MX {} is not in the policy (delivered anyway)",
                  run->job.message_id, log::sanitize(run->job.destination), log::sanitize(h.name));
  }
  std::vector<std::string> hosts;  // its site's name (an implicit MX: the domain itself)
  for (const auto& h : r.hosts) hosts.push_back(h.name);
  if (!hosts.empty()) note_site(run, hosts);
  carry_out(run, run->attempt.on_mx(r, run->job.destination));
}

void Delivery::open(JobRun* run, const queue::Target& target) {
  const auto& dc = config_->delivery;
  // RFC 7672 §2.2: TLSA records count only for a host whose address records
  // are DNSSEC-secure (then the TLSA answer can be too); never through a relayhost.
  if (run->requiretls) {
    // RFC 8689 §4.2.1: the next hop's name must be authenticated — a
    // relayhost, an MX answer that was DNSSEC-secure, or an MX listed by an
    // enforced MTA-STS policy — before anything is sent.
    const bool name_ok = !dc.relayhost.empty() || run->mx_secure ||
                         (run->sts && run->sts->mode == sts::Mode::enforce);
    if (!name_ok) {
      if (auto ev = queue::policy::requiretls_refusal(target.str(), false, queue::TlsLevel::none, false)) {
        fail_target(run, target, std::move(*ev));
        return;
      }
    }
  }
  if (!dane_ || !dc.relayhost.empty() || !target.secure || run->relaxed) {
    if (run->relaxed && (run->sts || (dane_ && target.secure)))
      log::info("{}: MTA-STS and DANE not enforced for {}: {}", run->job.message_id,
                log::sanitize(target.host),
                tls_reports_ && tls_reports_->is_tls_report(run->job.message_id)
                    ? "a TLS report (RFC 8460 §5.3.1)"
                    : "TLS-Required: No (RFC 8689 §5)");
    open_with(run, target, protection_without_dane(*run));
    return;
  }
  const uint64_t serial = run->job.serial;
  const uint64_t gen = resolver_gen_;
  const std::string name = fmt::format("_{}._tcp.{}", dc.port, target.host);
  resolver_->resolve_tlsa(name, [this, serial, gen, target, name](dns::TlsaResult r) {
    JobRun* run = find_run(serial);
    if (!run) return;
    if (gen != resolver_gen_ && !stopping_) return open(run, target);  // a reload swapped resolvers
    if (r.status == dns::Status::temporary) {
      // Not "no records": an answer that could have been secure did not
      // come. Never weaker TLS for it: this host is not tried (§2.2).
      fail_target(run, target,
                  queue::policy::SessionEvent{queue::policy::SessionFailure::tls_failed, target.str(), {},
                                              fmt::format("TLSA lookup of {} failed: {}", name, r.reason),
                                              false});
      return;
    }
    if (r.status != dns::Status::ok || !r.secure) {
      // No records, or records that are not DNSSEC-secure: DANE does not apply.
      open_with(run, target, protection_without_dane(*run));
      return;
    }
    Protection p;
    p.sts = run->sts;
    p.verify = run->requiretls;
    for (auto& rec : r.records)
      if (tls::dane::usable(rec)) p.tlsa.push_back(std::move(rec));
    if (!p.tlsa.empty()) {
      p.rule = Protection::Rule::dane;  // DANE takes precedence over MTA-STS
    } else {
      // Records, none usable: TLS mandatory, not authenticated by DANE; an
      // enforced MTA-STS policy may still demand PKIX.
      p = protection_without_dane(*run);
      if (p.rule == Protection::Rule::configured) p.rule = Protection::Rule::dane_unusable;
    }
    open_with(run, target, std::move(p));
  });
}

Protection Delivery::protection_without_dane(const JobRun& run) const {
  Protection p;
  p.sts = run.sts;
  p.verify = run.requiretls;  // REQUIRETLS: PKIX at least (RFC 8689 §4.2.1)
  if (run.sts && run.sts->mode == sts::Mode::enforce && !run.relaxed) p.rule = Protection::Rule::mta_sts;
  return p;
}

void Delivery::fail_target(JobRun* run, const queue::Target& target, queue::policy::SessionEvent event) {
  const auto& dc = config_->delivery;
  const std::string host = target.str();
  const std::string relay = fmt::format("{}:{}", host, dc.relayhost.empty() ? dc.port : dc.relayhost_port);
  log::warning("{}: relay={} not tried: {}", run->job.message_id, relay,
               log::sanitize(event.detail.empty() ? event.reply.text : event.detail, 400));
  run->attempt.on_connection(host, relay, false);
  queue::HostReport report;
  report.failure = std::move(event);
  carry_out(run, run->attempt.on_host_done(std::move(report)));
}

// RFC 8461 §5.1: a message that is about to bounce because of an enforced
// policy (a 4.7.5 deferral at the end of its lifetime) first has the policy
// checked again at once — its TXT id, and a fetch if the id changed. A
// different policy (or none) gives the job another attempt under it; the
// same one lets it bounce. Once per job.
bool Delivery::sts_recheck(JobRun* run, const std::vector<queue::Verdict>& verdicts, int64_t now) {
  if (run->sts_rechecked || !run->sts || run->sts->mode != sts::Mode::enforce || !sts_ || stopping_)
    return false;
  const queue::Envelope* env = scheduler_.find(run->job.message_id);
  const int64_t lifetime_us =
      std::chrono::duration_cast<std::chrono::microseconds>(config_->delivery.max_queue_lifetime).count();
  if (!env || !queue::policy::expired(env->arrival_us, lifetime_us, now)) return false;
  const bool sts_failure = std::any_of(verdicts.begin(), verdicts.end(), [](const queue::Verdict& v) {
    return v.action == queue::Action::defer && v.status == "4.7.5";
  });
  if (!sts_failure) return false;
  run->sts_rechecked = true;
  log::info("{}: mta-sts: domain={} checked again before the message bounces (RFC 8461 §5.1)",
            run->job.message_id, log::sanitize(run->sts_domain));
  const uint64_t serial = run->job.serial;
  sts_->recheck(run->sts_domain, [this, serial, before = run->sts](std::optional<sts::Policy> now_p) {
    JobRun* run = find_run(serial);
    if (!run) return;
    const bool same = now_p && now_p->mode == before->mode && now_p->max_age == before->max_age &&
                      now_p->mx == before->mx;
    if (same || stopping_) {
      finish(run, true);
      return;
    }
    log::info("{}: mta-sts: domain={} has a new policy ({}); delivery is tried again under it",
              run->job.message_id, log::sanitize(run->sts_domain),
              now_p ? sts::mode_name(now_p->mode) : std::string_view("none"));
    queue::Job job = run->job;
    runs_.erase(serial);
    if (JobRun* fresh = make_run(std::move(job))) {
      fresh->sts_rechecked = true;
      resolve(fresh);
    }
  });
  return true;
}

// --- TLS-RPT: one outgoing session's TLS outcome, counted per policy domain ---
// Called when a connection is ready (TLS up or not: `failure` null) and when
// it failed. Only MX delivery (a relayhost is not a recipient domain's MX).
// The policy is the one the session was held to: DANE's TLSA records, the
// MTA-STS policy (enforce or testing), or none found (RFC 8460 §4.4).
namespace {

std::string tlsa_text(const dns::TlsaRecord& r) {
  std::string hex;
  for (uint8_t b : r.data) hex += fmt::format("{:02x}", b);
  return fmt::format("{} {} {} {}", r.usage, r.selector, r.matching_type, hex);
}

}  // namespace

void record_tls(TlsReports* reports, const OutboundShared& shared, const Outbound& o,
                const queue::policy::SessionEvent* failure) {
  if (!reports || !shared.config->delivery.relayhost.empty()) return;
  if (!shared.tls) return;  // no TLS at all: nothing to report about it
  const Protection& p = o.protection();
  TlsSession s;
  s.policy_domain = o.destination();
  using R = tlsrpt::ResultType;
  if (p.rule == Protection::Rule::dane || p.rule == Protection::Rule::dane_unusable) {
    s.type = tlsrpt::PolicyType::tlsa;
    for (const auto& r : p.tlsa) s.policy_strings.push_back(tlsa_text(r));
  } else if (p.sts) {
    s.type = tlsrpt::PolicyType::sts;
    s.policy_strings.push_back("version: STSv1");
    s.policy_strings.push_back(fmt::format("mode: {}", sts::mode_name(p.sts->mode)));
    for (const auto& mx : p.sts->mx) s.policy_strings.push_back("mx: " + mx);
    s.policy_strings.push_back(fmt::format("max_age: {}", p.sts->max_age));
    s.mx_patterns = p.sts->mx;
  } else if (outbound_tls(shared.config->delivery) == conf::DeliveryTls::none) {
    return;  // TLS off by configuration and nothing published demands it
  }
  s.receiving_mx = o.target().host;
  s.receiving_ip = o.target().ip.str();
  if (failure) {
    using F = queue::policy::SessionFailure;
    if (failure->what == F::tls_unavailable) {
      s.failure = R::starttls_not_supported;
    } else if (failure->what == F::tls_failed) {
      const std::string& why = failure->detail.empty() ? failure->reply.text : failure->detail;
      const bool not_offered = why.find("not offered") != std::string::npos;
      const bool cert = why.find("certificate") != std::string::npos || why.find("DANE") != std::string::npos;
      if (not_offered)
        s.failure = R::starttls_not_supported;
      else if (why.find("TLSA lookup") != std::string::npos)
        s.failure = R::dnssec_invalid;
      else if (s.type == tlsrpt::PolicyType::sts && cert)
        s.failure = why.find("Hostname mismatch") != std::string::npos ? R::certificate_host_mismatch
                                                                         : R::sts_webpki_invalid;
      else if (cert)
        s.failure = s.type == tlsrpt::PolicyType::tlsa ? R::validation_failure : R::certificate_not_trusted;
      else
        s.failure = R::validation_failure;
      s.failure_reason = why.substr(0, 200);
    } else {
      return;  // not about TLS
    }
  } else if (!o.in_tls()) {
    s.failure = R::starttls_not_supported;
  } else if (s.type == tlsrpt::PolicyType::sts && !o.peer_verified()) {
    // testing mode: delivered, but the policy would have refused it (§5.2)
    s.failure = R::sts_webpki_invalid;
    s.failure_reason = "certificate not verified (mode testing: delivered)";
  }
  reports->record(std::move(s));
}

}  // namespace sluice::mta
