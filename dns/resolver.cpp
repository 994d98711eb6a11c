// resolver.cpp — the Resolver's Core: c-ares on a libuv loop, the answer
// cache, delivering results, closing. The lookups built on single queries
// (MX with its hosts, addresses, TXT, PTR) are in lookups.cpp; the Core's
// class and the protocol between the two files are in core.hpp.
//
// Structure:
//   Core       owns the c-ares channel and the uv handles; query() answers one
//              (name, type) from the cache, joins a query already in flight,
//              or sends one. Requests and their callbacks live in `pending_`;
//              finished results wait in `completions_` until the idle handle
//              delivers them, so no caller callback ever runs inside c-ares
//              or inside resolve_*().
//
// Lifetime: the Core is heap-allocated and deletes itself in the close
// callback of its last handle (the idle handle closes last). The Resolver
// only points at it; ~Resolver detaches and starts the close. Every handle
// (a socket's uv_poll_t, the timer, the idle) is a uv::Handle, whose memory
// is freed only in its close callback. Exceptions never cross a C callback:
// every entry goes through uv::guard().
#include "dns/resolver.hpp"

#include <ares.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <span>

#include "dns/core.hpp"
#include "obs/sluice_metrics.hpp"
#include "mta/uv/guard.hpp"

namespace sluice::dns {

static_assert(std::variant_size_v<detail::Core::Result> == obs::kDnsTypes &&
                  std::is_same_v<std::variant_alternative_t<0, detail::Core::Result>, MxResult> &&
                  std::is_same_v<std::variant_alternative_t<4, detail::Core::Result>, TlsaResult> &&
                  static_cast<size_t>(Status::temporary) + 1 == obs::kDnsOutcomes,
              "obs/sluice_metrics.hpp's DnsType and DNS outcomes follow Core::Result and dns::Status");

namespace detail {

namespace {

constexpr int kClassIn = 1;

using uv::guard;

std::string query_key(QueryType type, const std::string& name) {
  return std::string(to_string(type)) + " " + name;
}

}  // namespace

void die(const char* what) {
  std::fprintf(stderr, "sluice dns: %s\n", what);
  std::abort();
}
std::optional<std::string> Core::init() {
  static std::once_flag once;
  static int lib_status = ARES_SUCCESS;
  std::call_once(once, [] { lib_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (lib_status != ARES_SUCCESS) return std::string("c-ares library init: ") + ares_strerror(lib_status);

  std::vector<ares_addr_port_node> nodes(options_.servers.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const net::Endpoint& ep = options_.servers[i];
    ares_addr_port_node& n = nodes[i];
    n.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
    if (ep.ip.family == net::IpAddress::Family::v4) {
      n.family = AF_INET;
      std::memcpy(&n.addr.addr4, ep.ip.bytes.data(), 4);
    } else {
      n.family = AF_INET6;
      std::memcpy(&n.addr.addr6, ep.ip.bytes.data(), 16);
    }
    n.udp_port = n.tcp_port = ep.port == 0 ? 53 : ep.port;
  }
  if (auto err = make_channel(0, nodes.empty() ? nullptr : nodes.data())) return err;

  // c-ares 1.18 answers a SERVFAIL or REFUSED reply by trying the next
  // server, and once none is left reports ARES_ECONNREFUSED, as if no server
  // could be reached. With a single server there is no next one to try, so
  // take such replies as they are (ARES_FLAG_NOCHECKRESP) and keep the
  // precise reason for logs and DSNs.
  ares_addr_port_node* servers = nullptr;
  if (ares_get_servers_ports(channel_, &servers) == ARES_SUCCESS && servers && !servers->next) {
    ares_addr_port_node only = *servers;
    only.next = nullptr;
    ares_destroy(channel_);
    channel_ = nullptr;
    if (auto err = make_channel(ARES_FLAG_NOCHECKRESP, &only)) {
      ares_free_data(servers);
      return err;
    }
  }
  if (servers) ares_free_data(servers);

  timer_.init(loop_, uv_timer_init);
  timer_->data = this;
  idle_.init(loop_, uv_idle_init);
  idle_->data = this;
  ++open_handles_;  // the timer
  return std::nullopt;
}

// A channel with our socket callback, timeout and tries; servers from
// resolv.conf, or the list given. resolv.conf's timeout/attempts/rotate
// options are overridden; its search domains are never used (ares_query).
std::optional<std::string> Core::make_channel(int flags, ares_addr_port_node* servers) {
  ares_options opts{};
  opts.sock_state_cb = &Core::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(options_.timeout.count());
  opts.tries = options_.tries;
  opts.flags = flags;
  // NOROTATE: servers are asked in the order given, even if resolv.conf
  // says "options rotate".
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_NOROTATE;
  int rc = ares_init_options(&channel_, &opts, mask);
  if (rc != ARES_SUCCESS) {
    channel_ = nullptr;
    return std::string("c-ares init: ") + ares_strerror(rc);
  }
  if (servers) {
    rc = ares_set_servers_ports(channel_, servers);
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      channel_ = nullptr;
      return std::string("c-ares servers: ") + ares_strerror(rc);
    }
  }
  return std::nullopt;
}

Resolver::RequestId Core::add(Pending p) {
  Resolver::RequestId id = next_id_++;
  pending_.emplace(id, std::move(p));
  return id;
}

void Core::finish(Resolver::RequestId id, Result result) {
  auto it = pending_.find(id);
  if (it == pending_.end() || it->second.finished) return;
  it->second.finished = true;
  if (closing_) {
    result = it->second.cancelled;
  } else {  // sluice_dns_lookups_total{type,outcome}: Result's types and Status in obs's order
    const auto status = std::visit([](const auto& r) { return r.status; }, result);
    obs::sluice_metrics().record_dns(static_cast<obs::DnsType>(result.index()), static_cast<size_t>(status));
  }
  completions_.emplace_back(id, std::move(result));
  schedule_delivery();
}

void Core::schedule_delivery() {
  if (idle_ && !uv_is_active(idle_.handle())) uv_idle_start(idle_.get(), &Core::on_idle);
}

void Core::on_idle(uv_idle_t* handle) {
  guard("idle callback", [&] { static_cast<Core*>(handle->data)->deliver(); });
}

// Runs the callbacks of the results finished so far (not those they add).
void Core::deliver() {
  auto batch = std::move(completions_);
  completions_.clear();
  for (auto& [id, result] : batch) {
    if (detached_) return;  // the Resolver was destroyed by a callback
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // cancelled
    auto deliver = std::move(it->second.deliver);
    pending_.erase(it);
    deliver(std::move(result));
  }
  if (completions_.empty() && idle_) {
    uv_idle_stop(idle_.get());
    if (closing_ && open_handles_ == 0) idle_.close(&Core::on_idle_closed, this);
  }
}

void Core::query(const std::string& name, QueryType type, Waiter waiter) {
  if (closing_) {
    waiter(temporary_answer(kCancelled));
    return;
  }
  std::string key = query_key(type, name);
  if (auto hit = cache_.find(key, now())) {
    ++cache_hits_;
    waiter(*hit);
    return;
  }
  if (auto it = inflight_.find(key); it != inflight_.end()) {
    it->second->waiters.push_back(std::move(waiter));
    return;
  }
  auto* q = new Inflight{this, key, type, {}};
  q->waiters.push_back(std::move(waiter));
  inflight_.emplace(key, q);
  ++queries_sent_;
  ++in_ares_;
  // ares_query, not ares_search: a mail domain is never completed with the
  // search domains of resolv.conf. c-ares owns q until on_answer, which may
  // run before ares_query returns.
  if (requests_ad(type) || options_.request_ad)
    send_with_ad(name, type, q);
  else
    ares_query(channel_, name.c_str(), kClassIn, static_cast<int>(type), &Core::on_answer, q);
  --in_ares_;
  rearm_timer();
}

// The query ares_query would send (recursion desired, no EDNS), with the
// AD bit set in its header (RFC 6840 §5.7), sent with ares_send, whose
// completion reports any RCODE as success: interpret_reply reads it.
void Core::send_with_ad(const std::string& name, QueryType type, Inflight* q) {
  unsigned char* buf = nullptr;
  int len = 0;
  int rc = ares_create_query(name.c_str(), kClassIn, static_cast<int>(type), 0, 1, &buf, &len, 0);
  if (rc != ARES_SUCCESS || len < 4) {
    if (buf) ares_free_string(buf);
    answered(q, rc == ARES_SUCCESS ? ARES_EBADQUERY : rc, {});
    return;
  }
  buf[3] |= 0x20;  // AD: the low byte of the flags word
  ares_send(channel_, buf, len, &Core::on_answer, q);
  ares_free_string(buf);
}

void Core::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* q = static_cast<Inflight*>(arg);
  guard("c-ares answer callback", [&] {
    std::span<const unsigned char> reply;
    if (abuf && alen > 0) reply = {abuf, static_cast<size_t>(alen)};
    q->core->answered(q, status, reply);
  });
}

void Core::answered(Inflight* raw, int status, std::span<const unsigned char> reply) {
  std::unique_ptr<Inflight> q(raw);
  if (auto it = inflight_.find(q->key); it != inflight_.end() && it->second == raw) inflight_.erase(it);
  Answer answer = interpret_reply(q->type, status, reply);
  if (answer.cacheable() && !closing_) {
    auto cap = answer.kind == Answer::Kind::records ? options_.max_ttl : options_.negative_ttl_max;
    auto ttl = std::min(std::chrono::seconds(answer.ttl), cap);
    cache_.put(q->key, answer, now(), ttl);
  }
  for (auto& w : q->waiters) w(answer);
}

void Core::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  guard("c-ares socket state callback",
        [&] { static_cast<Core*>(data)->sock_state(fd, readable != 0, writable != 0); });
}

void Core::sock_state(ares_socket_t fd, bool readable, bool writable) {
  auto it = watches_.find(fd);
  if (!readable && !writable) {
    // c-ares closes fd right after this returns; closing stops polling it.
    if (it != watches_.end()) {
      it->second.close(&Core::on_handle_closed, this);
      watches_.erase(it);
    }
    return;
  }
  if (it == watches_.end()) {
    uv::Handle<uv_poll_t> poll;
    // Never expected to fail; the query this socket serves then times out.
    if (poll.init(loop_, uv_poll_init_socket, fd) != 0) return;
    poll->data = this;
    // The timer, armed while any query is in flight, keeps the loop alive;
    // an idle socket c-ares keeps open must not.
    uv_unref(poll.handle());
    ++open_handles_;
    it = watches_.emplace(fd, std::move(poll)).first;
  }
  uv_poll_start(it->second.get(), (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), &Core::on_poll);
}

void Core::on_poll(uv_poll_t* handle, int status, int events) {
  guard("poll callback", [&] {
    auto* core = static_cast<Core*>(handle->data);
    uv_os_fd_t fd = -1;
    uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fd);
    if (status < 0) {
      // Let c-ares read and write and so meet the socket's error itself.
      core->process(fd, fd);
      return;
    }
    core->process(events & UV_READABLE ? fd : ARES_SOCKET_BAD, events & UV_WRITABLE ? fd : ARES_SOCKET_BAD);
  });
}

void Core::on_timer(uv_timer_t* handle) {
  guard("timer callback", [&] { static_cast<Core*>(handle->data)->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD); });
}

void Core::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  if (!channel_) return;
  ++in_ares_;
  ares_process_fd(channel_, read_fd, write_fd);  // also expires timed-out queries
  --in_ares_;
  rearm_timer();
}

// Wakes the loop when c-ares next has to act (a try's timeout); called
// after every event and every query started, never from inside c-ares.
void Core::rearm_timer() {
  if (in_ares_ > 0 || !channel_ || closing_) return;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    uv_timer_stop(timer_.get());
    return;
  }
  uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec + 999) / 1000;
  uv_timer_start(timer_.get(), &Core::on_timer, ms, 0);
}

// (Close callbacks run inside uv::guard, in uv::Handle.)
void Core::on_handle_closed(void* core) { static_cast<Core*>(core)->handle_closed(); }

void Core::handle_closed() {
  --open_handles_;
  if (!closing_ || open_handles_ > 0 || !idle_) return;
  if (!completions_.empty()) {
    schedule_delivery();  // deliver() closes the idle handle when done
    return;
  }
  idle_.close(&Core::on_idle_closed, this);
}

void Core::on_idle_closed(void* core) { static_cast<Core*>(core)->finalize(); }

// The last handle is closed. Results that arrived in between (lookups asked
// for by other loop events meanwhile) are delivered here, then done.
void Core::finalize() {
  while (!completions_.empty() && !detached_) deliver();
  auto dones = std::move(dones_);
  if (owner_) owner_->core_ = nullptr;
  delete this;
  for (auto& done : dones)
    if (done) done();
}

void Core::close(std::function<void()> done) {
  dones_.push_back(std::move(done));
  if (closing_) return;
  closing_ = true;
  uv_timer_stop(timer_.get());
  if (channel_) {
    // Every query in flight completes now with ARES_ECANCELLED (or
    // ARES_EDESTRUCTION); with closing_ set, nothing new is sent.
    ++in_ares_;
    ares_cancel(channel_);
    ares_destroy(channel_);
    --in_ares_;
    channel_ = nullptr;
  }
  // Whatever did not finish through c-ares (nothing should) is cancelled too,
  // in request order.
  std::vector<Resolver::RequestId> open;
  for (auto& [id, p] : pending_)
    if (!p.finished) open.push_back(id);
  std::sort(open.begin(), open.end());
  for (auto id : open) finish(id, pending_.at(id).cancelled);
  for (auto& [fd, poll] : watches_) poll.close(&Core::on_handle_closed, this);
  watches_.clear();
  timer_.close(&Core::on_handle_closed, this);
}

void Core::detach() {
  detached_ = true;
  owner_ = nullptr;
  pending_.clear();
  completions_.clear();
  dones_.clear();
  if (!closing_) close(nullptr);
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Resolver

std::expected<std::unique_ptr<Resolver>, std::string> Resolver::create(uv_loop_t* loop, Options options) {
  if (!loop) return std::unexpected("dns: no event loop");
  if (options.timeout.count() < 1 || options.timeout > std::chrono::minutes(10))
    return std::unexpected("dns: timeout must be between 1 ms and 10 minutes");
  if (options.tries < 1 || options.tries > 10) return std::unexpected("dns: tries must be between 1 and 10");
  if (options.max_mx_hosts < 1) return std::unexpected("dns: max_mx_hosts must be at least 1");
  auto* core = new detail::Core(loop, std::move(options));
  if (auto err = core->init()) {
    delete core;  // no handle was initialized
    return std::unexpected("dns: " + *err);
  }
  std::unique_ptr<Resolver> r(new Resolver(core));
  core->attach(r.get());
  return r;
}

Resolver::~Resolver() {
  if (core_) core_->detach();
}

void Resolver::cancel(RequestId id) {
  if (core_) core_->cancel(id);
}

void Resolver::close(std::function<void()> done) {
  if (!core_) {
    if (done) done();
    return;
  }
  core_->close(std::move(done));
}

Resolver::Stats Resolver::stats() const { return core_ ? core_->stats() : Stats{}; }

}  // namespace sluice::dns
