// webhooks.cpp — see webhooks.hpp.
#include "mta/webhooks.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "http/url.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/handle.hpp"
#include "mta/http_exchange.hpp"
#include "sts/http.hpp"
#include "webhook/store.hpp"
#include "webhook/webhook.hpp"

namespace sluice::mta {

namespace {

constexpr int64_t kFullWarningInterval = 60;  // seconds between "queue full" warnings

}  // namespace

// ---------------------------------------------------------------------------
// The loop's view of one webhook's queue.

struct WebhookService::Queue {
  WebhookService* service = nullptr;
  size_t index = 0;  // 1-based [[webhook]] position, for log lines
  std::string url_text;
  http::Url url;
  std::string log_url;  // without the query
  std::vector<std::string> events;
  std::string secret;
  std::unique_ptr<webhook::Store> store;  // the disk job's; the loop only reads copies below

  // As of the last disk job.
  webhook::Position end, acked;
  uint64_t stored_bytes = 0;
  // add()ed, for the next disk job.
  std::vector<std::string> pending;
  uint64_t pending_bytes = 0;
  // Where the next read starts, the batch being sent (or waiting to be
  // retried) and the position after it.
  webhook::Position read_from;
  std::vector<webhook::Store::Item> batch;
  webhook::Position batch_end;
  std::optional<webhook::Position> ack_wanted;
  bool posting = false;
  bool waiting_retry = false;
  uint32_t failures = 0;
  uv::Handle<uv_timer_t> retry;
  // The POST in flight.
  uint64_t serial = 0;  // bumped when a POST ends or is cancelled: stale callbacks see it
  uint64_t deadline_ms = 0;
  std::string request;
  std::vector<net::IpAddress> addresses;
  size_t next_address = 0;
  std::string last_error;
  HttpExchange* conn = nullptr;
  // Counted drops.
  uint64_t dropped_full = 0;
  int64_t last_full_warning = 0;
};

// One disk job: per queue, records to append, a position to ack, a read.
struct WebhookService::Job {
  struct Part {
    Queue* q = nullptr;
    webhook::Store* store = nullptr;
    std::vector<std::string> append;
    uint64_t append_bytes = 0;
    std::optional<webhook::Position> ack;
    std::optional<webhook::Position> read_from;
    // Results.
    std::string append_error, ack_error;
    std::optional<webhook::Store::ReadResult> read;
    webhook::Position end, acked;
    uint64_t stored_bytes = 0;
  };
  uv_work_t req{};
  std::vector<Part> parts;
};

// ---------------------------------------------------------------------------

std::expected<WebhookService::Settings, std::string> WebhookService::load_settings(const conf::Config& c) {
  Settings s;
  bool https = false;
  for (const auto& w : c.webhooks) {
    Settings::Hook h{w.url, w.events, ""};
    if (!w.secret_file.empty()) {
      auto secret = safe::read_secret_line(w.secret_file, fmt::format("webhook[{}].secret_file", w.index));
      if (!secret) return std::unexpected(secret.error());
      h.secret = std::move(*secret);
    }
    auto u = http::parse_url(w.url);
    if (u && u->tls) https = true;
    s.hooks.push_back(std::move(h));
  }
  if (https) {
    auto ctx = tls::TlsContext::client(true, c.delivery.ca_file);
    if (!ctx) return std::unexpected("webhook TLS: " + ctx.error());
    s.tls = std::move(*ctx);
  }
  return s;
}

WebhookService::WebhookService(uv_loop_t* loop, ResolverFn resolver, Options options)
    : loop_(loop), resolver_(std::move(resolver)), options_(std::move(options)),
      alive_(std::make_shared<bool>(true)) {
  if (!options_.now_s)
    options_.now_s = [] {
      using namespace std::chrono;
      return static_cast<int64_t>(duration_cast<seconds>(system_clock::now().time_since_epoch()).count());
    };
  if (!options_.jitter) {
    options_.jitter = [] {
      static thread_local std::mt19937_64 rng{std::random_device{}()};
      return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    };
  }
}

WebhookService::~WebhookService() {
  *alive_ = false;
  for (auto& q : queues_)
    if (q->conn) std::exchange(q->conn, nullptr)->detach();
}

int64_t WebhookService::now_s() const { return options_.now_s(); }

std::expected<std::unique_ptr<WebhookService>, std::string> WebhookService::create(
    uv_loop_t* loop, const conf::Config& config, Settings settings, ResolverFn resolver, Options options) {
  std::unique_ptr<WebhookService> s(new WebhookService(loop, std::move(resolver), std::move(options)));
  s->tls_ = settings.tls;
  auto spool = safe::open_dir(config.spool_dir);
  if (!spool) return std::unexpected(spool.error());
  auto dir = safe::make_dir_at(*spool, "webhooks", 0700);
  if (!dir) return std::unexpected(dir.error());
  for (size_t i = 0; i < config.webhooks.size() && i < settings.hooks.size(); ++i) {
    const auto& w = config.webhooks[i];
    auto q = std::make_unique<Queue>();
    q->service = s.get();
    q->index = w.index;
    q->url_text = w.url;
    auto u = http::parse_url(w.url);
    if (!u) return std::unexpected(fmt::format("webhook[{}].url: {}", w.index, u.error()));
    q->url = std::move(*u);
    q->log_url = webhook::url_for_log(w.url);
    q->events = settings.hooks[i].events;
    q->secret = std::move(settings.hooks[i].secret);
    const std::string name = webhook::queue_name(w.url);
    if (std::any_of(s->queues_.begin(), s->queues_.end(), [&](const auto& o) { return o->url_text == w.url; }))
      return std::unexpected(fmt::format("webhook[{}].url: \"{}\" is named twice", w.index, q->log_url));
    auto store = webhook::Store::open(dir->dir, name);
    if (!store) return std::unexpected(fmt::format("webhook {}: {}", q->log_url, store.error()));
    q->store = std::move(*store);
    q->end = q->store->end();
    q->acked = q->read_from = q->store->acked();
    q->stored_bytes = q->store->stored_bytes();
    q->retry.init(loop, uv_timer_init);
    q->retry->data = q.get();
    log::info("webhook {}: queue {}, {} bytes waiting from before", q->log_url, q->store->path(),
              q->stored_bytes);
    s->queues_.push_back(std::move(q));
  }
  s->kick();  // reads back what is stored
  return s;
}

bool WebhookService::reload(Settings settings) {
  if (settings.hooks.size() != queues_.size()) return false;
  for (size_t i = 0; i < queues_.size(); ++i)
    if (settings.hooks[i].url != queues_[i]->url_text) return false;
  tls_ = settings.tls;
  for (size_t i = 0; i < queues_.size(); ++i) {
    queues_[i]->events = std::move(settings.hooks[i].events);
    queues_[i]->secret = std::move(settings.hooks[i].secret);
  }
  return true;
}

size_t WebhookService::waiting() const {
  size_t n = 0;
  for (const auto& q : queues_) n += q->pending.size() + q->batch.size();
  return n;
}

void WebhookService::add(const obs::Event& e) {
  auto name = webhook::event_name(e.type);
  if (!name) return;
  std::string id;
  std::string record;
  for (auto& q : queues_) {
    if (std::find(q->events.begin(), q->events.end(), *name) == q->events.end()) continue;
    if (record.empty()) {
      std::array<uint8_t, 16> rnd{};
      RAND_bytes(rnd.data(), rnd.size());
      id = webhook::event_id(rnd);
      const std::string p = webhook::payload(e, id);
      if (p.size() > webhook::kMaxPayload) {
        log::warning("{} webhook: event {} not stored: its payload is {} bytes, over {}", e.id, *name, p.size(),
                     webhook::kMaxPayload);
        return;
      }
      record = webhook::encode_record(now_s(), p);
    }
    if (q->stored_bytes + q->pending_bytes + record.size() > options_.max_stored_bytes) {
      ++q->dropped_full;
      const int64_t t = now_s();
      if (t - q->last_full_warning >= kFullWarningInterval) {
        q->last_full_warning = t;
        log::warning("webhook {}: queue full ({} bytes waiting, the cap is {}): {} events dropped so far",
                     q->log_url, q->stored_bytes + q->pending_bytes, options_.max_stored_bytes, q->dropped_full);
      }
      continue;
    }
    q->pending_bytes += record.size();
    q->pending.push_back(record);
  }
  if (!record.empty()) kick();
}

// ---------------------------------------------------------------------------
// The disk job.

void WebhookService::kick() {
  if (job_) {
    again_ = true;
    return;
  }
  again_ = false;
  auto job = std::make_unique<Job>();
  for (auto& qp : queues_) {
    Queue& q = *qp;
    Job::Part part;
    part.q = &q;
    part.store = q.store.get();
    if (!q.pending.empty()) {
      part.append = std::move(q.pending);
      part.append_bytes = q.pending_bytes;
      q.pending.clear();
      q.pending_bytes = 0;
    }
    part.ack = std::exchange(q.ack_wanted, std::nullopt);
    const bool may_read = !closing_ && q.batch.empty() && !q.posting;
    if (may_read && (q.read_from < q.end || !part.append.empty())) part.read_from = q.read_from;
    if (!part.append.empty() || part.ack || part.read_from) job->parts.push_back(std::move(part));
  }
  if (job->parts.empty()) {
    maybe_closed();
    return;
  }
  job_ = std::move(job);
  job_->req.data = this;
  if (const int rc = uv_queue_work(loop_, &job_->req, &WebhookService::work, &WebhookService::after_work); rc < 0) {
    log::error("webhooks: cannot start the disk job: {}", uv_strerror(rc));
    std::abort();  // uv_queue_work fails only on a null callback
  }
}

// On a pool thread: only the job and the stores.
void WebhookService::work(uv_work_t* req) {
  uv::guard("webhook disk job", [req] {
    auto* self = static_cast<WebhookService*>(req->data);
    for (auto& p : self->job_->parts) {
      if (!p.append.empty())
        if (auto ok = p.store->append(p.append); !ok) p.append_error = ok.error();
      if (p.ack && *p.ack > p.store->acked())
        if (auto ok = p.store->ack(*p.ack); !ok) p.ack_error = ok.error();
      if (p.read_from)
        p.read = p.store->read(*p.read_from, webhook::kMaxBatchEvents, webhook::kMaxBatchBytes);
      p.end = p.store->end();
      p.acked = p.store->acked();
      p.stored_bytes = p.store->stored_bytes();
    }
  });
}

void WebhookService::after_work(uv_work_t* req, int) {
  uv::guard("webhook disk job done", [req] { static_cast<WebhookService*>(req->data)->job_done(); });
}

void WebhookService::job_done() {
  auto job = std::move(job_);
  const int64_t t = now_s();
  for (auto& p : job->parts) {
    Queue& q = *p.q;
    q.end = p.end;
    q.acked = p.acked;
    q.stored_bytes = p.stored_bytes;
    if (!p.append_error.empty())
      log::error("webhook {}: {} events lost: cannot store them: {}", q.log_url, p.append.size(), p.append_error);
    if (!p.ack_error.empty())
      log::error("webhook {}: cannot record the delivered events (they will be sent again after a restart): {}",
                 q.log_url, p.ack_error);
    if (!p.read) continue;
    for (const auto& s : p.read->skipped) log::warning("webhook {}: damaged queue file skipped: {}", q.log_url, s);
    q.read_from = p.read->next;
    size_t too_old = 0;
    std::vector<webhook::Store::Item> live;
    for (auto& item : p.read->items) {
      if (webhook::too_old(item.stored_s, t))
        ++too_old;
      else
        live.push_back(std::move(item));
    }
    if (live.empty()) {
      if (!p.read->items.empty()) q.ack_wanted = p.read->next;
    } else {
      std::vector<std::string> payloads;
      payloads.reserve(live.size());
      for (const auto& i : live) payloads.push_back(i.payload);
      const size_t n = webhook::build_batch(payloads).count;
      live.resize(n);
      q.batch_end = live.back().end;
      q.read_from = q.batch_end;
      q.batch = std::move(live);
      // Only the old events before the batch's end are dropped now; later
      // ones are read (and dropped) again.
      too_old = 0;
      for (const auto& item : p.read->items)
        if (item.end <= q.batch_end && webhook::too_old(item.stored_s, t)) ++too_old;
    }
    if (too_old > 0)
      log::warning("webhook {}: {} events dropped, undelivered for 3 days", q.log_url, too_old);
  }
  if (!closing_)
    for (auto& q : queues_)
      if (!q->batch.empty() && !q->posting && !q->waiting_retry) start_post(*q);
  bool more = again_;
  for (auto& q : queues_)
    if (!q->pending.empty() || q->ack_wanted || (!closing_ && q->batch.empty() && !q->posting && q->read_from < q->end))
      more = true;
  if (more)
    kick();
  else
    maybe_closed();
}

// ---------------------------------------------------------------------------
// Sending.

// Drops the events of the batch stored 3 days ago; false when none is left
// (the batch is then acknowledged).
bool WebhookService::prune_batch(Queue& q) {
  const int64_t t = now_s();
  const size_t before = q.batch.size();
  std::erase_if(q.batch, [t](const auto& i) { return webhook::too_old(i.stored_s, t); });
  if (q.batch.size() != before)
    log::warning("webhook {}: {} events dropped, undelivered for 3 days", q.log_url, before - q.batch.size());
  if (!q.batch.empty()) return true;
  q.ack_wanted = q.batch_end;
  q.failures = 0;
  kick();
  return false;
}

void WebhookService::start_post(Queue& q) {
  std::string body = "[";
  for (const auto& i : q.batch) {
    if (body.size() > 1) body += ',';
    body += i.payload;
  }
  body += ']';
  const std::string sig = q.secret.empty() ? std::string() : webhook::signature(q.secret, now_s(), body);
  q.request = webhook::post_request(q.url, body, sig);
  q.posting = true;
  const uint64_t serial = ++q.serial;
  uv_update_time(loop_);
  q.deadline_ms = uv_now(loop_) + static_cast<uint64_t>(options_.timeout.count());
  q.addresses.clear();
  q.next_address = 0;
  q.last_error.clear();
  if (auto ip = net::IpAddress::parse(q.url.host)) {
    q.addresses.push_back(*ip);
    connect_next(q);
    return;
  }
  dns::Resolver* resolver = resolver_ ? resolver_() : nullptr;
  if (!resolver) {
    on_post_result(q, 0, q.url.host + ": no resolver");
    return;
  }
  Queue* qp = &q;
  resolver->resolve_addresses(q.url.host, [this, qp, serial, alive = alive_](dns::AddrResult r) {
    if (!*alive || qp->serial != serial || !qp->posting) return;
    if (r.status != dns::Status::ok) {
      on_post_result(*qp, 0, fmt::format("{}: {}", qp->url.host, r.reason.empty() ? "no address" : r.reason));
      return;
    }
    qp->addresses = std::move(r.ipv4);
    qp->addresses.insert(qp->addresses.end(), r.ipv6.begin(), r.ipv6.end());
    connect_next(*qp);
  });
}

void WebhookService::connect_next(Queue& q) {
  uv_update_time(loop_);
  const uint64_t now = uv_now(loop_);
  if (q.next_address >= q.addresses.size() || now >= q.deadline_ms) {
    std::string why = q.last_error.empty() ? q.url.host + ": no address" : q.last_error;
    if (now >= q.deadline_ms) why = q.url.host + ": timed out";
    on_post_result(q, 0, std::move(why));
    return;
  }
  if (q.url.tls && !tls_) {
    on_post_result(q, 0, "no TLS context for https");
    return;
  }
  const net::IpAddress ip = q.addresses[q.next_address++];
  const uint64_t serial = q.serial;
  Queue* qp = &q;
  auto* c = new HttpExchange(loop_, q.url.tls ? tls_ : nullptr, q.url.host, q.request, q.deadline_ms - now,
                             [this, qp, serial](HttpExchange::Outcome o) {
                               if (qp->serial != serial || !qp->posting) return;
                               qp->conn = nullptr;
                               if (o.connect_failed) {
                                 qp->last_error = std::move(o.response.error());
                                 connect_next(*qp);
                                 return;
                               }
                               if (o.response) {
                                 on_post_result(*qp, o.response->status, "");
                               } else if (o.body_too_big && o.status >= 200 && o.status < 300) {
                                 // A receiver that took the events may answer with a
                                 // body we do not want: its status is what counts.
                                 on_post_result(*qp, o.status, "");
                               } else {
                                 on_post_result(*qp, 0, std::move(o.response.error()));
                               }
                             });
  q.conn = c;
  c->start(ip, q.url.port);
}

void WebhookService::on_post_result(Queue& q, int status, std::string error) {
  q.posting = false;
  q.conn = nullptr;
  ++q.serial;
  q.request.clear();
  const size_t n = q.batch.size();
  if (status >= 200 && status < 300) {
    log::info("webhook {}: {} events sent, status {}", q.log_url, n, status);
    q.failures = 0;
    q.ack_wanted = q.batch_end;
    q.batch.clear();
    kick();
    return;
  }
  ++q.failures;
  auto delay = webhook::retry_delay(q.failures, options_.jitter());
  delay = std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(delay.count()) * options_.retry_scale));
  const std::string outcome = status != 0 ? fmt::format("status {}", status) : "failed: " + one_line(error);
  const std::string in = delay.count() >= 10000 ? fmt::format("{} s", (delay.count() + 500) / 1000)
                                                : fmt::format("{:.2f} s", static_cast<double>(delay.count()) / 1000);
  if (status >= 400 && status < 500 && status != 408 && status != 429)
    log::warning("webhook {}: {} events not taken, {} (is the receiver configured for this url?); "
                 "retry {} in {}", q.log_url, n, outcome, q.failures, in);
  else
    log::info("webhook {}: {} events not sent, {}; retry {} in {}", q.log_url, n, outcome, q.failures, in);
  if (closing_) return;
  q.waiting_retry = true;
  uv_timer_start(q.retry.get(), [](uv_timer_t* t) {
    uv::guard("webhook retry timer", [t] {
      auto* qp = static_cast<Queue*>(t->data);
      qp->waiting_retry = false;
      if (qp->service->closing_ || qp->batch.empty() || qp->posting) return;
      if (qp->service->prune_batch(*qp)) qp->service->start_post(*qp);
    });
  }, static_cast<uint64_t>(std::max<int64_t>(delay.count(), 1)), 0);
}

// ---------------------------------------------------------------------------
// Closing.

void WebhookService::close(std::function<void()> done) {
  if (closing_) return;
  closing_ = true;
  close_done_ = std::move(done);
  for (auto& q : queues_) {
    if (q->conn) std::exchange(q->conn, nullptr)->detach();
    q->posting = false;
    ++q->serial;
    q->waiting_retry = false;
    q->retry.close();
  }
  kick();  // what add() holds goes to disk; then maybe_closed()
}

void WebhookService::maybe_closed() {
  if (!closing_ || job_ || !close_done_) return;
  for (const auto& q : queues_)
    if (!q->pending.empty() || q->ack_wanted) return;
  size_t unsent = 0;
  for (const auto& q : queues_) unsent += q->stored_bytes > 0;
  if (unsent) log::info("webhooks: {} queues keep events for the next start", unsent);
  std::exchange(close_done_, nullptr)();
}

}  // namespace sluice::mta
