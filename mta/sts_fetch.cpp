// sts_fetch.cpp — see sts_fetch.hpp.
#include "mta/sts_fetch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "mta/http_exchange.hpp"
#include "sts/http.hpp"

namespace sluice::mta {

namespace {

std::string describe_problem(sts::FetchProblem p, const sts::Response& r) {
  switch (p) {
    case sts::FetchProblem::redirect:
      return fmt::format("redirect ({}) to {} refused", r.status,
                         r.location.empty() ? std::string("nowhere") : r.location.substr(0, 200));
    case sts::FetchProblem::http_status:
      return fmt::format("HTTP status {}", r.status);
    case sts::FetchProblem::content_type:
      return fmt::format("content type \"{}\" is not text/plain",
                         r.content_type.substr(0, 100));
  }
  return "unknown problem";
}

// The policy in a whole response, or why not (RFC 8461 §3.3).
StsFetchResult policy_of(HttpExchange::Outcome o) {
  if (!o.response) return std::unexpected(std::move(o.response.error()));
  const sts::Response& r = *o.response;
  auto body = sts::judge(r);
  if (!body) return std::unexpected(fmt::format("{}: {}", o.where, describe_problem(body.error(), r)));
  auto policy = sts::parse_policy(*body);
  if (!policy) return std::unexpected(fmt::format("{}: bad policy: {}", o.where, one_line(policy.error())));
  return std::move(*policy);
}

}  // namespace

struct StsFetcher::Fetch {
  std::string host;  // mta-sts.DOMAIN
  Done done;
  uint64_t deadline = 0;  // uv_now() ms
  std::vector<net::IpAddress> addresses;
  size_t next = 0;
  std::string last_error;
  HttpExchange* conn = nullptr;  // the one in progress; it outlives its report
};

StsFetcher::StsFetcher(uv_loop_t* loop, std::shared_ptr<const tls::TlsContext> tls, Options options)
    : loop_(loop), tls_(std::move(tls)), options_(options), alive_(std::make_shared<bool>(true)) {}

StsFetcher::~StsFetcher() {
  *alive_ = false;
  cancel_all();
}

uint64_t StsFetcher::fetch(dns::Resolver& resolver, std::string_view domain, Done done) {
  auto host = sts::policy_host(domain);
  if (!host) return 0;
  const uint64_t id = next_id_++;
  auto f = std::make_unique<Fetch>();
  f->host = *host;
  f->done = std::move(done);
  uv_update_time(loop_);
  f->deadline = uv_now(loop_) + static_cast<uint64_t>(options_.timeout.count());
  fetches_.emplace(id, std::move(f));
  resolver.resolve_addresses(*host, [this, id, alive = alive_](dns::AddrResult r) {
    if (*alive) on_addresses(id, std::move(r));
  });
  return id;
}

void StsFetcher::on_addresses(uint64_t id, dns::AddrResult r) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;  // cancelled
  Fetch& f = *it->second;
  if (r.status != dns::Status::ok) {
    finish(id, std::unexpected(fmt::format("{}: {}", f.host, r.reason.empty() ? "no address" : r.reason)));
    return;
  }
  f.addresses = std::move(r.ipv4);
  f.addresses.insert(f.addresses.end(), r.ipv6.begin(), r.ipv6.end());
  try_next(id);
}

void StsFetcher::try_next(uint64_t id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  Fetch& f = *it->second;
  uv_update_time(loop_);
  const uint64_t now = uv_now(loop_);
  if (f.next >= f.addresses.size() || now >= f.deadline) {
    std::string why = f.last_error.empty() ? f.host + ": no address" : f.last_error;
    if (now >= f.deadline) why = f.host + ": timed out";
    finish(id, std::unexpected(std::move(why)));
    return;
  }
  const net::IpAddress ip = f.addresses[f.next++];
  auto* c = new HttpExchange(loop_, tls_, f.host, sts::policy_request(f.host), f.deadline - now,
                             [this, id](HttpExchange::Outcome o) {
                               auto it2 = fetches_.find(id);
                               if (it2 == fetches_.end()) return;
                               it2->second->conn = nullptr;
                               if (o.connect_failed) {
                                 it2->second->last_error = o.response.error();
                                 try_next(id);
                                 return;
                               }
                               finish(id, policy_of(std::move(o)));
                             });
  f.conn = c;
  c->start(ip, options_.port);
}

void StsFetcher::finish(uint64_t id, StsFetchResult r) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  Done done = std::move(it->second->done);
  fetches_.erase(it);
  if (done) done(std::move(r));
}

void StsFetcher::cancel(uint64_t id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  HttpExchange* c = it->second->conn;
  fetches_.erase(it);
  if (c) c->detach();
}

void StsFetcher::cancel_all() {
  auto all = std::move(fetches_);
  fetches_.clear();
  for (auto& [id, f] : all)
    if (f->conn) f->conn->detach();
}

}  // namespace sluice::mta
