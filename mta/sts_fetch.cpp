// sts_fetch.cpp — see sts_fetch.hpp.
#include "mta/sts_fetch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "mta/uv/stream.hpp"
#include "sts/http.hpp"

namespace sluice::mta {

namespace {

constexpr size_t kReadBuffer = 16 * 1024;

// The read buffer comes first among the bases, so that it exists before
// StreamConnection is given it.
struct ReadBuffer {
  std::unique_ptr<char[]> bytes = std::make_unique_for_overwrite<char[]>(kReadBuffer);
};

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

// Keeps reasons printable on one log line.
std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

// One HTTPS exchange with one address. Reports once through report_ (from
// an event, or from on_closing when it closes for another reason), then
// closes; it frees itself (StreamConnection).
class StsFetcher::Connection final : private ReadBuffer, public uv::StreamConnection {
 public:
  struct Outcome {
    bool connect_failed = false;  // nothing was exchanged: the next address may be tried
    StsFetchResult result;
  };
  using Report = std::function<void(Outcome)>;

  Connection(uv_loop_t* loop, std::shared_ptr<const tls::TlsContext> ctx, std::string host,
             uint64_t budget_ms, Report report)
      : StreamConnection(loop, Kind::tcp, {ReadBuffer::bytes.get(), kReadBuffer}),
        ctx_(std::move(ctx)), host_(std::move(host)), budget_ms_(budget_ms), report_(std::move(report)) {}

  void start(const net::IpAddress& ip, uint16_t port) {
    sockaddr_storage ss{};
    net::Endpoint{ip, port}.to_sockaddr(&ss);
    where_ = net::Endpoint{ip, port}.str();
    const int rc = connect(reinterpret_cast<const sockaddr*>(&ss));
    if (rc < 0) {
      conclude({true, std::unexpected(fmt::format("connect to {}: {}", where_, uv_strerror(rc)))});
      return;
    }
    arm_timer(std::max<uint64_t>(budget_ms_, 1));
  }

  // The fetcher no longer wants the outcome (cancelled): close quietly.
  void detach() {
    report_ = nullptr;
    begin_close();
  }

 private:
  ~Connection() override = default;

  void conclude(Outcome o) {
    if (auto r = std::exchange(report_, nullptr)) r(std::move(o));
    begin_close();
  }
  void fail(std::string why) { conclude({false, std::unexpected(fmt::format("{}: {}", where_, why))}); }

  void on_connect(int status) override {
    if (status < 0) {
      conclude({true, std::unexpected(fmt::format("connect to {}: {}", where_, uv_strerror(status)))});
      return;
    }
    auto s = tls::TlsStream::client(ctx_, host_);
    if (!s) {
      fail("tls: " + s.error());
      return;
    }
    start_tls(std::move(*s));
    std::string none;
    if (auto ev = tls_pump({}, none); !ev) {  // the ClientHello
      fail("tls: " + ev.error());
      return;
    }
    write(sts::policy_request(host_));  // held until the handshake completes
    read(true);
  }

  void on_bytes(std::string_view ciphertext) override {
    plain_.clear();
    auto ev = tls_pump(ciphertext, plain_);
    if (!ev) {
      fail("tls: " + one_line(ev.error()));
      return;
    }
    std::string_view in = plain_;
    if (parser_.feed(in) != sts::ResponseParser::Result::more) {
      judge();
      return;
    }
    if (ev->peer_closed) end_of_response();
  }

  void on_end(int) override {
    if (tls() && !tls()->handshake_done()) {
      fail("tls: connection closed during handshake");
      return;
    }
    end_of_response();
  }

  // The peer closed: a body delimited by the close ends here.
  void end_of_response() {
    parser_.finish();
    judge();
  }

  void judge() {
    using R = sts::ResponseParser::Result;
    if (parser_.result() == R::error) {
      fail(fmt::format("bad HTTP response: {}", sts::error_name(parser_.error())));
      return;
    }
    if (parser_.result() != R::done) {
      fail("bad HTTP response: truncated");
      return;
    }
    const sts::Response& r = parser_.response();
    auto body = sts::judge(r);
    if (!body) {
      fail(describe_problem(body.error(), r));
      return;
    }
    auto policy = sts::parse_policy(*body);
    if (!policy) {
      fail("bad policy: " + one_line(policy.error()));
      return;
    }
    conclude({false, std::move(*policy)});
  }

  void on_timer() override { fail("timed out"); }

  void on_closing() override {
    if (auto r = std::exchange(report_, nullptr))
      r({false, std::unexpected(fmt::format("{}: connection lost", where_))});
  }

  void after_event() override { flush(); }

  std::shared_ptr<const tls::TlsContext> ctx_;
  std::string host_;
  uint64_t budget_ms_;
  Report report_;
  std::string where_;
  std::string plain_;
  sts::ResponseParser parser_;
};

struct StsFetcher::Fetch {
  std::string host;  // mta-sts.DOMAIN
  Done done;
  uint64_t deadline = 0;  // uv_now() ms
  std::vector<net::IpAddress> addresses;
  size_t next = 0;
  std::string last_error;
  Connection* conn = nullptr;  // the one in progress; it outlives its report
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
  auto* c = new Connection(loop_, tls_, f.host, f.deadline - now, [this, id](Connection::Outcome o) {
    auto it2 = fetches_.find(id);
    if (it2 == fetches_.end()) return;
    it2->second->conn = nullptr;
    if (o.connect_failed) {
      it2->second->last_error = o.result.error();
      try_next(id);
      return;
    }
    finish(id, std::move(o.result));
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
  Connection* c = it->second->conn;
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
