// attempt.cpp — one job's delivery attempt (see attempt.hpp).
#include "queue/attempt.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace sluice::queue {

namespace {

[[noreturn]] void misuse(const char* what) {
  std::fprintf(stderr, "sluice attempt: %s\n", what);
  std::abort();
}

}  // namespace

std::string Target::str() const { return host + "[" + ip.str() + "]"; }

DeliveryAttempt::DeliveryAttempt(std::size_t recipients, policy::Context ctx,
                                 std::shared_ptr<const Myself> myself, uint16_t port)
    : ctx_(ctx), myself_(myself ? std::move(myself) : std::make_shared<const Myself>()),
      port_(port), verdicts_(recipients), relays_(recipients, "none"),
      tls_(recipients, TlsLevel::none) {}

DeliveryAttempt::Decision DeliveryAttempt::decide_all(const Verdict& v) {
  for (auto& x : verdicts_)
    if (!x) x = v;
  return Done{};
}

DeliveryAttempt::Decision DeliveryAttempt::on_mx(const dns::MxResult& r, std::string_view domain) {
  if (auto what = policy::dns_failure_of(r.status))
    return decide_all(policy::dns_failure(*what, domain, r.reason, ctx_));
  const std::vector<dns::MxHost> hosts = myself_->prune_mx(r.hosts, port_);
  if (hosts.empty()) return decide_all(policy::loops_back(domain));
  targets_.clear();
  next_ = 0;
  for (const auto& h : hosts) {
    for (const auto& ip : h.ipv4) targets_.push_back({h.name, ip, h.secure});
    for (const auto& ip : h.ipv6) targets_.push_back({h.name, ip, h.secure});
  }
  return next_host();
}

DeliveryAttempt::Decision DeliveryAttempt::on_addresses(const dns::AddrResult& r, std::string_view name) {
  if (auto what = policy::dns_failure_of(r.status))
    return decide_all(policy::dns_failure(*what, name, r.reason, ctx_));
  // One host, one preference: an address that is myself leaves nothing.
  if (myself_->host_is(dns::MxHost{std::string(name), 0, r.ipv4, r.ipv6}, port_))
    return decide_all(policy::loops_back(name));
  targets_.clear();
  next_ = 0;
  for (const auto& ip : r.ipv4) targets_.push_back({std::string(name), ip, r.secure});
  for (const auto& ip : r.ipv6) targets_.push_back({std::string(name), ip, r.secure});
  return next_host();
}

// The next address, unless the last host's failure says not to try another
// one now (policy::try_next_host), none is left, or delivery stops.
DeliveryAttempt::Decision DeliveryAttempt::next_host() {
  const bool go_on = events_.empty() || policy::try_next_host(events_.back(), ctx_);
  if (stopped_ || !go_on || next_ >= targets_.size()) return Done{};
  return Connect{targets_[next_++]};
}

void DeliveryAttempt::on_connection(std::string host, std::string relay, bool reused) {
  host_ = std::move(host);
  relay_ = std::move(relay);
  reused_ = reused;
  sent_.clear();
}

const std::vector<std::size_t>& DeliveryAttempt::start_transaction() {
  sent_.clear();
  for (std::size_t i = 0; i < verdicts_.size(); ++i)
    if (!verdicts_[i]) sent_.push_back(i);
  return sent_;
}

DeliveryAttempt::Decision DeliveryAttempt::on_host_done(HostReport report) {
  if (report.results.size() > sent_.size()) misuse("more results than recipients offered");
  const bool failed = report.failure.has_value();
  last_tls_ = report.tls;
  for (std::size_t k = 0; k < report.results.size(); ++k) {
    const std::size_t i = sent_[k];
    auto v = policy::recipient_verdict(report.results[k], host_, failed);
    if (!v) continue;
    verdicts_[i] = std::move(*v);
    relays_[i] = relay_;
    tls_[i] = report.tls;
  }
  sent_.clear();
  if (std::all_of(verdicts_.begin(), verdicts_.end(), [](const auto& v) { return v.has_value(); })) {
    reused_ = false;
    return Done{};
  }
  policy::SessionEvent ev;
  if (report.failure)
    ev = std::move(*report.failure);
  else if (auto mail = policy::refused_mail(report.results, host_))
    ev = std::move(*mail);
  else  // nothing said why (an abort): a lost connection
    ev = policy::SessionEvent{policy::SessionFailure::connection_lost, host_, {}, "(delivery aborted)", false};
  if (reused_) {
    reused_ = false;
    if (!stopped_ && policy::try_next_host(ev, ctx_)) {
      targets_.clear();
      next_ = 0;
      return Resolve{};
    }
  }
  events_.push_back(std::move(ev));
  return next_host();
}

bool DeliveryAttempt::interrupted() const {
  return stopped_ && std::none_of(verdicts_.begin(), verdicts_.end(), [](const auto& v) {
           return v && v->action != Action::defer;
         });
}

DeliveryAttempt::Result DeliveryAttempt::finish() const {
  Result r;
  r.verdicts.reserve(verdicts_.size());
  r.relays = relays_;
  r.tls = tls_;
  std::optional<Verdict> session_v;
  for (std::size_t i = 0; i < verdicts_.size(); ++i) {
    if (verdicts_[i]) {
      r.verdicts.push_back(*verdicts_[i]);
      continue;
    }
    if (!session_v) session_v = policy::session_verdict(events_, ctx_);
    r.verdicts.push_back(*session_v);
    r.relays[i] = relay_;
    r.tls[i] = last_tls_;
  }
  for (std::size_t i = 0; i < r.verdicts.size(); ++i) r.verdicts[i].tls = r.tls[i];
  return r;
}

}  // namespace sluice::queue
