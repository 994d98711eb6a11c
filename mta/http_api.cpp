// http_api.cpp — POST /api/v1/messages (http_api.hpp).
#include "mta/http_api.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "api/idempotency.hpp"
#include "api/mime.hpp"
#include "api/request.hpp"
#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "mail/headers.hpp"
#include "mta/events.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"
#include "obs/event.hpp"

namespace sluice::mta {

namespace {

using json = nlohmann::json;

constexpr int kRetryAfterSpace_s = 60;
constexpr std::string_view kStoreDir = "api";
constexpr std::string_view kStoreFile = "idempotency";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_json(std::optional<std::string_view> ct) {
  if (!ct) return false;
  return iequals(trim(ct->substr(0, ct->find(';'))), "application/json");
}

// "Bearer KEY" (the scheme in any case, RFC 7235 §2.1); nullopt otherwise.
std::optional<std::string_view> bearer(std::optional<std::string_view> auth) {
  if (!auth) return std::nullopt;
  std::string_view a = trim(*auth);
  if (a.size() < 7 || !iequals(a.substr(0, 6), "bearer") || (a[6] != ' ' && a[6] != '\t'))
    return std::nullopt;
  a = trim(a.substr(7));
  if (a.empty()) return std::nullopt;
  return a;
}

uint64_t random64() {
  uint64_t v = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&v), sizeof v);
  return v;
}

bool kept(int status) { return status == 202 || status == 400 || status == 403 || status == 413; }

}  // namespace

// What outlives HttpApi: the kept answers and the file they go to.
struct HttpApi::State : std::enable_shared_from_this<HttpApi::State> {
  uv_loop_t* loop = nullptr;
  api::IdempotencyStore idem;
  safe::Fd fd;  // <spool_dir>/api/idempotency, O_APPEND; closed: memory only
  std::string path;
  int64_t last_expire_us = 0;
  // Group sync: lines written and fdatasync'ed by one thread-pool job at a
  // time; what arrives meanwhile waits for the next.
  std::string pending;
  std::vector<std::function<void()>> waiting;
  bool busy = false;

  struct Job {
    uv_work_t req;
    std::shared_ptr<State> state;
    std::string lines;
    std::vector<std::function<void()>> then;
    std::string error;
  };

  void append(std::string line, std::function<void()> then) {
    if (!fd) {
      then();
      return;
    }
    pending += line;
    waiting.push_back(std::move(then));
    if (!busy) start();
  }

  void start() {
    busy = true;
    auto* job = new Job{};
    job->req.data = job;
    job->state = shared_from_this();
    job->lines = std::move(pending);
    job->then = std::move(waiting);
    pending.clear();
    waiting.clear();
    uv_queue_work(
        loop, &job->req,
        [](uv_work_t* r) {
          auto* j = static_cast<Job*>(r->data);
          const int fd = j->state->fd.get();
          for (size_t done = 0; done < j->lines.size();) {
            const ssize_t n = ::write(fd, j->lines.data() + done, j->lines.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
              j->error = fmt::format("write: {}", std::strerror(errno));
              return;
            }
            done += static_cast<size_t>(n);
          }
          if (::fdatasync(fd) != 0) j->error = fmt::format("fdatasync: {}", std::strerror(errno));
        },
        [](uv_work_t* r, int) {
          std::unique_ptr<Job> j(static_cast<Job*>(r->data));
          uv::guard("idempotency write", [&] {
            if (!j->error.empty())
              log::error("api: {}: {} (the Idempotency-Key answers of this batch will not survive a restart)",
                         j->state->path, j->error);
            for (auto& f : j->then) f();
            j->state->busy = false;
            if (!j->state->pending.empty()) j->state->start();
          });
        });
  }
};

// One request on its way.
struct HttpApi::Call {
  http::Reply reply;
  http::Peer peer;
  std::shared_ptr<const conf::Config> config;
  std::string key_name;
  auth::User senders;
  std::string idem_key;  // "" none
  std::string request_hash;
  api::MessageRequest req;
  std::string content;   // the message in stored form
  std::string message_id;
  int64_t now_us = 0;
};

namespace {

// Sends the answer; a kept one (Idempotency-Key) is stored and written first.
void answer(HttpApi::State& st, HttpApi::Call& c, int status, json body,
            std::vector<http::Header> headers = {}) {
  http::Response r = http::Response::json(status, body.dump(-1, ' ', false, json::error_handler_t::replace));
  for (auto& h : headers) r.headers.push_back(std::move(h));
  if (c.idem_key.empty()) {
    c.reply(std::move(r));
    return;
  }
  if (!kept(status)) {
    st.idem.forget(c.key_name, c.idem_key);
    c.reply(std::move(r));
    return;
  }
  std::string line = st.idem.finish(c.key_name, c.idem_key,
                                    {status, r.body, wall_clock_us(), c.request_hash});
  st.append(std::move(line), [reply = std::move(c.reply), r = std::move(r)]() mutable { reply(std::move(r)); });
}

void reject(HttpApi::State& st, HttpApi::Call& c, int status, std::string error, std::string field = {},
            std::vector<http::Header> headers = {}) {
  obs::Event e;
  e.type = obs::EventType::rejection;
  e.time_us = wall_clock_us();
  e.sender = c.req.from.address;
  e.response = {status, "", error};
  e.peer_address = c.peer.address;
  e.tls = c.peer.tls ? "TLS" : "none";  // as mta/events.cpp writes it
  e.source = "api";
  obs::emit(e, fmt::format("api reject key={} client={} status={} error=\"{}\"{}", c.key_name.empty() ? "-" : c.key_name,
                           c.peer.address, status, log::sanitize(error),
                           field.empty() ? "" : fmt::format(" field={}", log::sanitize(field))));
  json body = {{"error", std::move(error)}};
  if (!field.empty() || status == 400) body["field"] = std::move(field);
  answer(st, c, status, std::move(body), std::move(headers));
}

std::string retry_after(int64_t retry_at_us, int64_t now_us) {
  const int64_t us = retry_at_us - now_us;
  return std::to_string(us <= 0 ? 1 : (us + 999'999) / 1'000'000);
}

}  // namespace

HttpApi::HttpApi(uv_loop_t* loop, Intake& intake, queue::Spool& spool, shaping::Store* store,
                 std::shared_ptr<const conf::Config> config)
    : loop_(loop), intake_(intake), spool_(spool), store_(store), config_(std::move(config)),
      state_(std::make_shared<State>()) {
  state_->loop = loop_;
}

HttpApi::~HttpApi() = default;

std::expected<std::shared_ptr<const api::KeyDb>, std::string> HttpApi::load_keys(const conf::Config& c) {
  if (c.http.api_keys_file.empty()) return nullptr;
  return api::KeyDb::load(c.http.api_keys_file);
}

std::expected<void, std::string> HttpApi::open_store() {
  auto spool_dir = safe::open_dir(config_->spool_dir);
  if (!spool_dir) return std::unexpected(spool_dir.error());
  auto dir = safe::make_dir_at(*spool_dir, kStoreDir, 0700);
  if (!dir) return std::unexpected(dir.error());
  state_->path = dir->dir.child(kStoreFile);
  const int64_t now = wall_clock_us();
  if (auto old = safe::open_file_at(dir->dir, kStoreFile, O_RDONLY)) {
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = ::read(old->get(), buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return std::unexpected(fmt::format("{}: read: {}", state_->path, std::strerror(errno)));
      text.append(buf, static_cast<size_t>(n));
    }
    const size_t n = state_->idem.load(text, now);
    log::info("api: {} Idempotency-Key answers from {}", n, state_->path);
  }
  // Rewritten without the expired entries: a new file renamed over the old.
  const std::string tmp = std::string(kStoreFile) + ".tmp";
  ::unlinkat(dir->dir.fd.get(), tmp.c_str(), 0);
  auto fd = safe::open_file_at(dir->dir, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) return std::unexpected(fd.error());
  const std::string all = state_->idem.dump();
  for (size_t done = 0; done < all.size();) {
    const ssize_t n = ::write(fd->get(), all.data() + done, all.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(fmt::format("{}: write: {}", state_->path, std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd->get()) != 0 ||
      ::renameat(dir->dir.fd.get(), tmp.c_str(), dir->dir.fd.get(), std::string(kStoreFile).c_str()) != 0 ||
      ::fsync(dir->dir.fd.get()) != 0)
    return std::unexpected(fmt::format("{}: {}", state_->path, std::strerror(errno)));
  auto app = safe::open_file_at(dir->dir, kStoreFile, O_WRONLY | O_APPEND);
  if (!app) return std::unexpected(app.error());
  state_->fd = std::move(*app);
  state_->last_expire_us = now;
  return {};
}

void HttpApi::set_config(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }
void HttpApi::set_keys(std::shared_ptr<const api::KeyDb> keys) { keys_ = std::move(keys); }

void HttpApi::handle(const http::Request& req, const http::Peer& peer, http::Reply reply) {
  auto call = std::make_shared<Call>();
  call->reply = std::move(reply);
  call->peer = peer;
  call->config = config_;
  call->now_us = wall_clock_us();
  State& st = *state_;
  if (call->now_us - st.last_expire_us > 3'600'000'000) {
    st.idem.expire(call->now_us);
    st.last_expire_us = call->now_us;
  }

  if (req.method != "POST") {
    http::Response r = http::Response::json(405, R"({"error":"use POST"})");
    r.headers.push_back({"Allow", "POST"});
    call->reply(std::move(r));
    return;
  }
  if (!is_json(req.header("Content-Type")))
    return reject(st, *call, 415, "the body must be JSON (Content-Type: application/json)");
  const auto token = bearer(req.header("Authorization"));
  const api::ApiKey* key = token && keys_ ? keys_->find(*token) : nullptr;
  if (!key)
    return reject(st, *call, 401, token ? "unknown API key" : "an API key is required (Authorization: Bearer KEY)",
                  {}, {{"WWW-Authenticate", "Bearer realm=\"sluice\""}});
  call->key_name = key->name;
  call->senders = key->senders;

  if (auto idem = req.header("Idempotency-Key")) {
    if (!api::valid_idempotency_key(*idem))
      return reject(st, *call, 400, "1 to 255 printable ASCII characters without spaces", "Idempotency-Key");
    call->request_hash = api::hex(api::sha256(req.body));
    const auto found = st.idem.begin(call->key_name, std::string(*idem), call->request_hash, call->now_us);
    switch (found.kind) {
      case api::IdempotencyStore::Kind::fresh:
        call->idem_key = std::string(*idem);
        break;
      case api::IdempotencyStore::Kind::in_progress:
        return reject(st, *call, 409, "a request with this Idempotency-Key is still being answered");
      case api::IdempotencyStore::Kind::mismatch:
        return reject(st, *call, 422, "this Idempotency-Key was used with a different request body",
                      "Idempotency-Key");
      case api::IdempotencyStore::Kind::replay: {
        log::info("api replay key={} client={} status={}", call->key_name, peer.address, found.answer->status);
        http::Response r = http::Response::json(found.answer->status, found.answer->body);
        r.headers.push_back({"Idempotent-Replayed", "true"});
        call->reply(std::move(r));
        return;
      }
    }
  }

  auto decoded = api::decode_request(req.body, api::Limits{call->config->limits.max_recipients});
  if (!decoded) return reject(st, *call, 400, decoded.error().message, decoded.error().field);
  call->req = std::move(*decoded);
  if (!auth::may_send_as(call->senders, call->req.from.address))
    return reject(st, *call, 403, fmt::format("API key {} may not send as <{}>", call->key_name, call->req.from.address),
                  "from");

  call->message_id =
      mail::message_id(call->now_us, fmt::format("{:016x}", random64()), call->config->hostname);
  call->content = api::build_message(call->req, api::BuildContext{call->now_us, call->message_id, random64});
  if (call->content.size() > call->config->limits.max_message_size)
    return reject(st, *call, 413,
                  fmt::format("the message is {} bytes, more than limits.max_message_size ({})",
                              call->content.size(), call->config->limits.max_message_size));
  if (const uint64_t reserve = call->config->limits.min_free_space; reserve > 0) {
    const uint64_t need = reserve + call->content.size();
    if (spool_.free_space(need) < need)
      return reject(st, *call, 503, "insufficient system storage", {},
                    {{"Retry-After", std::to_string(kRetryAfterSpace_s)}});
  }
  const shaping::Rate rate = call->config->limits.messages_per_login;
  if (!store_ || rate.unlimited()) return after_checks(std::move(call));
  // The store may answer now or after a round trip; the HttpApi may be gone
  // by then only at shutdown, when the server no longer answers anyway.
  store_->take("api:" + call->key_name, rate, rate.count, [this, call](shaping::Admission a) {
    if (a.allowed) return after_checks(call);
    reject(*state_, *call, 429,
           fmt::format("too much mail from API key {} (limit {})", call->key_name, shaping::to_string(call->config->limits.messages_per_login)),
           {}, {{"Retry-After", retry_after(a.retry_at_us, wall_clock_us())}});
  });
}

void HttpApi::after_checks(std::shared_ptr<Call> call) {
  const conf::Config& cfg = *call->config;
  mail::Trace trace;
  trace.by = cfg.hostname;
  trace.unix_us = call->now_us;
  trace.client_address = call->peer.address;
  trace.api_key = call->key_name;
  trace.with = call->peer.tls ? "HTTPS" : "HTTP";
  const std::vector<std::string> rcpts = call->req.recipients();
  if (rcpts.size() == 1) trace.for_recipient = rcpts[0];
  auto msg = intake_.begin(Intake::Source::submission, std::move(trace));
  msg->from_rule([senders = call->senders](std::string_view from) { return auth::may_send_as(senders, from); });
  const api::HeaderScan scan = api::scan_headers(call->content);
  const std::string_view content = call->content;
  msg->append(content.substr(0, scan.header_end));
  msg->end_of_headers(mail::Present{scan.date, scan.message_id, scan.from}, call->req.from.address);
  msg->append(content.substr(scan.header_end));

  queue::Envelope env;
  env.arrival_us = call->now_us;
  env.sender = call->req.from.address;
  for (const auto& r : rcpts) env.recipients.push_back(queue::Recipient{.address = r});
  env.smtputf8 = call->req.smtputf8();
  if (std::any_of(content.begin(), content.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
    env.body = queue::BodyType::eight_bit_mime;
  env.client_address = call->peer.address;
  env.auth_user = "api:" + call->key_name;
  env.message_id = scan.message_id ? scan.message_id_value : std::string();
  call->content.clear();
  call->content.shrink_to_fit();

  std::shared_ptr<State> st = state_;
  intake_.commit(std::move(msg), std::move(env), [st, call](bool ok, const queue::Envelope& e) {
    if (!ok) {
      reject(*st, *call, 503, "the message could not be stored; try again", {},
             {{"Retry-After", std::to_string(kRetryAfterSpace_s)}});
      return;
    }
    json list = json::array();
    for (const auto& r : e.recipients) list.push_back(r.address);
    events::reception(e, "api", call->peer.tls ? "TLS" : "",
                      fmt::format("{}: accept api key={} from=<{}> size={} nrcpt={} msgid={} client={}", e.id,
                                  call->key_name, log::sanitize(e.sender), e.size, e.recipients.size(),
                                  e.message_id.empty() ? "-" : log::sanitize(e.message_id), call->peer.address));
    answer(*st, *call, 202, json{{"id", e.id}, {"recipients", std::move(list)}});
  });
}

}  // namespace sluice::mta
