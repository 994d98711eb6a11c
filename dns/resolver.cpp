// resolver.cpp — the Resolver: c-ares on a libuv loop, the answer cache, and
// the MX / address lookups built on single queries.
//
// Structure:
//   Core       owns the c-ares channel and the uv handles; query() answers one
//              (name, type) from the cache, joins a query already in flight,
//              or sends one. Requests and their callbacks live in `pending_`;
//              finished results wait in `completions_` until the idle handle
//              delivers them, so no caller callback ever runs inside c-ares
//              or inside resolve_*().
//   lookups    resolve_host() (A + AAAA), MxLookup (MX, then its hosts, or
//              the implicit MX) — reference-counted state captured by the
//              query callbacks; each ends in Core::finish(id, result).
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
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <variant>

#include "dns/answer.hpp"
#include "dns/cache.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/handle.hpp"

namespace sluice::dns {

namespace detail {

namespace {

constexpr int kClassIn = 1;
constexpr const char* kCancelled = "cancelled";

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "sluice dns: %s\n", what);
  std::abort();
}

using uv::guard;

void ascii_lower(std::string& s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

// A name as DNS can carry it: lower case, no trailing dot, ASCII only,
// labels of 1..63 octets, 253 octets at most. Backslashes are refused since
// c-ares would read them as escapes.
std::expected<std::string, std::string> normalize_name(std::string_view in) {
  std::string s(in);
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s.empty()) return std::unexpected("empty domain name");
  if (s.size() > 253) return std::unexpected("domain name longer than 253 octets");
  size_t label = 0;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '.') {
      if (label == 0) return std::unexpected("empty label in domain name");
      label = 0;
      continue;
    }
    if (u >= 0x80) return std::unexpected("domain name is not ASCII (IDNs must be given as A-labels)");
    if (u <= 0x20 || u == 0x7f || c == '\\') return std::unexpected("invalid character in domain name");
    if (++label > 63) return std::unexpected("label longer than 63 octets in domain name");
  }
  if (label == 0) return std::unexpected("empty label in domain name");
  ascii_lower(s);
  return s;
}

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3). nullopt when the
// text is not bracketed; an error when it is but holds no valid address.
std::optional<std::expected<net::IpAddress, std::string>> parse_literal(std::string_view text) {
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') return std::nullopt;
  std::string_view inner = text.substr(1, text.size() - 2);
  bool v6 = iequals_prefix(inner, "ipv6:");
  if (v6) inner.remove_prefix(5);
  auto ip = net::IpAddress::parse(inner);
  if (!ip || (ip->family == net::IpAddress::Family::v6) != v6)
    return std::unexpected("invalid address literal " + std::string(text));
  return *ip;
}

std::string query_key(QueryType type, const std::string& name) {
  return std::string(to_string(type)) + " " + name;
}

AddrResult addr_result_of(const net::IpAddress& ip) {
  AddrResult r;
  r.status = Status::ok;
  (ip.family == net::IpAddress::Family::v4 ? r.ipv4 : r.ipv6).push_back(ip);
  return r;
}

// The addresses of `name` from its A and AAAA answers: ok if either family
// has one; else temporary if either query failed temporarily; else nxdomain
// when the name does not exist, or no_route (with `nothing` as the reason
// when the name exists without addresses).
AddrResult combine(const std::string& name, const Answer& a, const Answer& aaaa, const char* nothing) {
  AddrResult r;
  if (a.kind == Answer::Kind::records) r.ipv4 = a.addresses;
  if (aaaa.kind == Answer::Kind::records) r.ipv6 = aaaa.addresses;
  if (!r.ipv4.empty() || !r.ipv6.empty()) {
    r.status = Status::ok;
    return r;
  }
  for (auto kind : {Answer::Kind::temporary, Answer::Kind::permanent}) {
    for (const auto& [ans, type] : {std::pair<const Answer*, const char*>{&a, "A"}, {&aaaa, "AAAA"}}) {
      if (ans->kind != kind) continue;
      r.status = kind == Answer::Kind::temporary ? Status::temporary : Status::no_route;
      r.reason = name + " " + type + ": " + ans->error;
      return r;
    }
  }
  if (a.kind == Answer::Kind::nxdomain || aaaa.kind == Answer::Kind::nxdomain) {
    r.status = Status::nxdomain;
    r.reason = name + ": domain does not exist (NXDOMAIN)";
  } else {
    r.status = Status::no_route;
    r.reason = name + ": " + nothing;
  }
  return r;
}

}  // namespace

class Core {
 public:
  using Waiter = std::function<void(const Answer&)>;
  using Result = std::variant<MxResult, AddrResult>;

  Core(uv_loop_t* loop, Options options)
      : loop_(loop), options_(std::move(options)), cache_(options_.cache_max) {}

  std::optional<std::string> init();
  void attach(Resolver* owner) { owner_ = owner; }
  void detach();

  Resolver::RequestId add_request(std::function<void(MxResult)> cb) { return add(Callback{std::move(cb)}); }
  Resolver::RequestId add_request(std::function<void(AddrResult)> cb) { return add(Callback{std::move(cb)}); }
  void finish(Resolver::RequestId id, Result result);
  void cancel(Resolver::RequestId id) { pending_.erase(id); }
  void close(std::function<void()> done);

  // Answers one (name, type): from the cache, by joining a query in flight,
  // or by sending one. The waiter may run before query() returns.
  void query(const std::string& name, QueryType type, Waiter waiter);

  uint32_t random(uint32_t bound) {
    if (bound <= 1) return 0;
    if (options_.random) return options_.random(bound);
    return std::uniform_int_distribution<uint32_t>(0, bound - 1)(rng_);
  }
  const Options& options() const { return options_; }
  Resolver::Stats stats() const { return {queries_sent_, cache_hits_, cache_.size()}; }

 private:
  using Callback = std::variant<std::function<void(MxResult)>, std::function<void(AddrResult)>>;
  struct Pending {
    Callback cb;
    bool finished = false;  // its result is in completions_
  };
  struct Inflight {
    Core* core;
    std::string key;
    QueryType type;
    std::vector<Waiter> waiters;
  };

  Resolver::RequestId add(Callback cb);
  std::optional<std::string> make_channel(int flags, ares_addr_port_node* servers);
  static Result cancelled_like(const Callback& cb);
  AnswerCache::Time now() const {
    return options_.clock ? options_.clock() : std::chrono::milliseconds(uv_now(loop_));
  }

  // c-ares and libuv callbacks.
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_timer(uv_timer_t* handle);
  static void on_idle(uv_idle_t* handle);
  static void on_handle_closed(void* core);  // the timer or a socket's poll
  static void on_idle_closed(void* core);

  void sock_state(ares_socket_t fd, bool readable, bool writable);
  void answered(Inflight* raw, int status, std::span<const unsigned char> reply);
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void rearm_timer();
  void schedule_delivery();
  void deliver();
  void handle_closed();
  void finalize();

  uv_loop_t* loop_;
  Options options_;
  Resolver* owner_ = nullptr;
  ares_channel channel_ = nullptr;
  uv::Handle<uv_timer_t> timer_;
  uv::Handle<uv_idle_t> idle_;  // empty once closing: it closes last
  int open_handles_ = 0;  // the timer and socket watches, not the idle handle
  int in_ares_ = 0;       // depth of calls into c-ares on the stack
  bool closing_ = false;
  bool detached_ = false;
  std::unordered_map<ares_socket_t, uv::Handle<uv_poll_t>> watches_;  // data: this
  std::unordered_map<std::string, Inflight*> inflight_;  // owned by c-ares until on_answer
  AnswerCache cache_;
  std::mt19937 rng_{std::random_device{}()};
  Resolver::RequestId next_id_ = 1;
  std::unordered_map<Resolver::RequestId, Pending> pending_;
  std::deque<std::pair<Resolver::RequestId, Result>> completions_;
  std::vector<std::function<void()>> dones_;
  uint64_t queries_sent_ = 0;
  uint64_t cache_hits_ = 0;
};

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

Resolver::RequestId Core::add(Callback cb) {
  Resolver::RequestId id = next_id_++;
  pending_.emplace(id, Pending{std::move(cb)});
  return id;
}

Core::Result Core::cancelled_like(const Callback& cb) {
  if (cb.index() == 0) return MxResult{Status::temporary, {}, false, kCancelled};
  AddrResult r;
  r.reason = kCancelled;
  return r;
}

void Core::finish(Resolver::RequestId id, Result result) {
  auto it = pending_.find(id);
  if (it == pending_.end() || it->second.finished) return;
  it->second.finished = true;
  if (closing_) result = cancelled_like(it->second.cb);
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
    Callback cb = std::move(it->second.cb);
    pending_.erase(it);
    if (auto* mx = std::get_if<0>(&cb)) {
      if (*mx) (*mx)(std::get<0>(std::move(result)));
    } else if (auto* addr = std::get_if<1>(&cb); *addr) {
      (*addr)(std::get<1>(std::move(result)));
    }
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
  ares_query(channel_, name.c_str(), kClassIn, static_cast<int>(type), &Core::on_answer, q);
  --in_ares_;
  rearm_timer();
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
  for (auto id : open) finish(id, cancelled_like(pending_.at(id).cb));
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

// ---------------------------------------------------------------------------
// Lookups

namespace {

// A and AAAA of `name`, asked at once; `done` gets the combination.
void resolve_host(Core& core, const std::string& name, std::function<void(AddrResult)> done,
                  const char* nothing = "no A or AAAA records") {
  struct State {
    std::string name;
    const char* nothing;
    std::function<void(AddrResult)> done;
    Answer a, aaaa;
    int remaining = 2;
    void got() {
      if (--remaining == 0) done(combine(name, a, aaaa, nothing));
    }
  };
  auto st = std::make_shared<State>();
  st->name = name;
  st->nothing = nothing;
  st->done = std::move(done);
  core.query(name, QueryType::a, [st](const Answer& ans) {
    st->a = ans;
    st->got();
  });
  core.query(name, QueryType::aaaa, [st](const Answer& ans) {
    st->aaaa = ans;
    st->got();
  });
}

class MxLookup : public std::enable_shared_from_this<MxLookup> {
 public:
  MxLookup(Core& core, Resolver::RequestId id, std::string domain)
      : core_(core), id_(id), domain_(std::move(domain)) {}

  void start() {
    auto self = shared_from_this();
    core_.query(domain_, QueryType::mx, [self](const Answer& a) { self->on_mx(a); });
  }

 private:
  void fail(Status status, std::string reason) {
    MxResult r;
    r.status = status;
    r.reason = std::move(reason);
    core_.finish(id_, std::move(r));
  }

  void on_mx(const Answer& a) {
    switch (a.kind) {
      case Answer::Kind::records: return on_mx_records(a.mx);
      case Answer::Kind::nodata: return implicit_mx();
      case Answer::Kind::nxdomain: return fail(Status::nxdomain, domain_ + ": domain does not exist (NXDOMAIN)");
      case Answer::Kind::temporary: return fail(Status::temporary, domain_ + " MX: " + a.error);
      case Answer::Kind::permanent: return fail(Status::no_route, domain_ + " MX: " + a.error);
    }
  }

  void on_mx_records(const std::vector<MxRecord>& records) {
    // RFC 7505: a single MX whose exchange is "." (several such are no better).
    if (std::all_of(records.begin(), records.end(), [](const MxRecord& r) { return r.host.empty(); })) {
      MxResult r;
      r.status = Status::null_mx;
      r.reason = domain_ + " does not accept mail (null MX)";
      core_.finish(id_, std::move(r));
      return;
    }
    auto ordered = order_mx(records, core_.options().max_mx_hosts, [this](uint32_t b) { return core_.random(b); });
    hosts_.resize(ordered.size());
    results_.resize(ordered.size());
    remaining_ = ordered.size();
    for (size_t i = 0; i < ordered.size(); ++i) {
      hosts_[i].name = ordered[i].host;
      hosts_[i].preference = ordered[i].preference;
    }
    auto self = shared_from_this();
    for (size_t i = 0; i < ordered.size(); ++i) {
      resolve_host(core_, hosts_[i].name, [self, i](AddrResult r) {
        self->results_[i] = std::move(r);
        if (--self->remaining_ == 0) self->on_hosts_resolved();
      });
    }
  }

  // Hosts in MX order, those without addresses skipped. None left:
  // temporary if any host failed temporarily, else no_route (even when every
  // host is NXDOMAIN: the domain itself exists).
  void on_hosts_resolved() {
    MxResult r;
    std::string why;
    bool temporary = false;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      AddrResult& res = results_[i];
      if (res.status == Status::ok) {
        hosts_[i].ipv4 = std::move(res.ipv4);
        hosts_[i].ipv6 = std::move(res.ipv6);
        r.hosts.push_back(std::move(hosts_[i]));
        continue;
      }
      temporary |= res.status == Status::temporary;
      why += (why.empty() ? "" : "; ") + res.reason;
    }
    if (r.hosts.empty()) return fail(temporary ? Status::temporary : Status::no_route,
                                     "no MX host of " + domain_ + " has an address: " + why);
    r.status = Status::ok;
    core_.finish(id_, std::move(r));
  }

  // No MX records: the domain's own A/AAAA, as if it were an MX host of
  // preference 0 (RFC 5321 §5.1).
  void implicit_mx() {
    auto self = shared_from_this();
    resolve_host(
        core_, domain_,
        [self](AddrResult a) {
          if (a.status != Status::ok) return self->fail(a.status, std::move(a.reason));
          MxResult r;
          r.status = Status::ok;
          r.implicit_mx = true;
          r.hosts.push_back(MxHost{self->domain_, 0, std::move(a.ipv4), std::move(a.ipv6)});
          self->core_.finish(self->id_, std::move(r));
        },
        "no MX, A or AAAA records");
  }

  Core& core_;
  Resolver::RequestId id_;
  std::string domain_;
  std::vector<MxHost> hosts_;
  std::vector<AddrResult> results_;
  size_t remaining_ = 0;
};

}  // namespace
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

Resolver::RequestId Resolver::resolve_mx(std::string_view domain, std::function<void(MxResult)> cb) {
  if (!core_) detail::die("resolve_mx() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  auto fail = [&](std::string reason) {
    MxResult r;
    r.status = Status::no_route;
    r.reason = std::move(reason);
    core.finish(id, std::move(r));
  };
  if (auto literal = detail::parse_literal(domain)) {
    if (!*literal) {
      fail(literal->error());
    } else {
      auto addrs = detail::addr_result_of(**literal);
      MxResult r;
      r.status = Status::ok;
      r.hosts.push_back(MxHost{std::string(domain), 0, std::move(addrs.ipv4), std::move(addrs.ipv6)});
      core.finish(id, std::move(r));
    }
    return id;
  }
  auto name = detail::normalize_name(domain);
  if (!name) {
    fail("\"" + std::string(domain) + "\": " + name.error());
    return id;
  }
  std::make_shared<detail::MxLookup>(core, id, std::move(*name))->start();
  return id;
}

Resolver::RequestId Resolver::resolve_addresses(std::string_view host, std::function<void(AddrResult)> cb) {
  if (!core_) detail::die("resolve_addresses() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  auto literal = detail::parse_literal(host);
  if (!literal) {
    if (auto ip = net::IpAddress::parse(host)) literal = *ip;
  }
  if (literal) {
    if (*literal) {
      core.finish(id, detail::addr_result_of(**literal));
    } else {
      AddrResult r;
      r.status = Status::no_route;
      r.reason = literal->error();
      core.finish(id, std::move(r));
    }
    return id;
  }
  auto name = detail::normalize_name(host);
  if (!name) {
    AddrResult r;
    r.status = Status::no_route;
    r.reason = "\"" + std::string(host) + "\": " + name.error();
    core.finish(id, std::move(r));
    return id;
  }
  detail::resolve_host(core, *name, [&core, id](AddrResult r) { core.finish(id, std::move(r)); });
  return id;
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
