// http_api.hpp — POST /api/v1/messages (docs/http-api.md, "Sending mail"):
// the route of the daemon's HTTP server (mta/http_server.hpp) that takes a
// message from an application and puts it through mta::Intake exactly as
// the SMTP server does (Received field "with HTTP"/"with HTTPS" naming the
// API key, DKIM signing of a From the key may use, the spool commit).
//
// One request, in this order (each step's refusal ends it):
//   415  Content-Type is not application/json
//   401  no "Authorization: Bearer KEY", or a key not in api_keys_file
//   400  Idempotency-Key malformed; 409 one with that key is in progress;
//        422 it was used with another body; a kept answer is sent again
//   400  the JSON (api/request.hpp), {"error", "field"}
//   403  "from" is not a sender the key may use (the users file's rule)
//   413  the built message is larger than limits.max_message_size
//   503  the spool is short of space (limits.min_free_space, as SMTP's 452),
//        Retry-After
//   429  past limits.messages_per_login for the key (shaping store key
//        "api:NAME", as SMTP's "login:NAME"), Retry-After; counted last, so
//        a refused request costs nothing
//   503  the commit failed, Retry-After
//   202  {"id", "recipients"} once the commit is durable (the Intake's Done)
// An accepted message is one log line ("ID: accept api key=NAME from=<...>
// size=N nrcpt=N msgid=... client=ADDR") and one obs reception event per
// recipient (source "api", through mta/events.hpp as the other sources);
// each refusal one rejection event with the request's sender when known. The key itself
// and the Authorization header are never logged.
//
// Idempotency-Key: answers 202, 400, 403 and 413 are kept 24 hours per API
// key (api/idempotency.hpp) and appended to <spool_dir>/api/idempotency; a
// 202's line is written and fdatasync'ed on libuv's thread pool (lines of
// concurrent answers share one sync) after the spool commit and before the
// 202 is sent. At start the file is read and rewritten without expired
// entries.
//
// Threads and lifetime: the loop thread only. What a pending answer needs
// (the idempotency store, the file) is shared with the Intake's Done and the
// thread-pool work, so destroying HttpApi while commits are in flight is
// safe: their answers go to a closed connection (http::Reply does nothing).
#pragma once

#include <uv.h>

#include <expected>
#include <memory>
#include <string>

#include "api/keys.hpp"
#include "conf/config.hpp"
#include "http/message.hpp"
#include "mta/intake.hpp"
#include "queue/spool.hpp"
#include "shaping/store.hpp"

namespace sluice::mta {

class HttpApi {
 public:
  // store: the shaping store for messages_per_login (null: no limit).
  HttpApi(uv_loop_t* loop, Intake& intake, queue::Spool& spool, shaping::Store* store,
          std::shared_ptr<const conf::Config> config);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // [http] api_keys_file read and checked; null when none is configured (every
  // request is then 401). Errors one per line, "PATH:LINE: ...".
  static std::expected<std::shared_ptr<const api::KeyDb>, std::string> load_keys(const conf::Config& c);

  // Reads <spool_dir>/api/idempotency (made 0700 when missing) and opens it
  // for appending. Call as the daemon's user, before the first request;
  // without it Idempotency-Key answers live in memory only (logged).
  std::expected<void, std::string> open_store();

  // At start and on reload (SIGHUP): the configuration and the keys in force.
  void set_config(std::shared_ptr<const conf::Config> config);
  void set_keys(std::shared_ptr<const api::KeyDb> keys);

  // The route's handler (captures this: HttpApi must outlive the server).
  void handle(const http::Request& req, const http::Peer& peer, http::Reply reply);
  http::Handler handler() {
    return [this](const http::Request& r, const http::Peer& p, http::Reply reply) {
      handle(r, p, std::move(reply));
    };
  }

  struct State;  // shared with pending answers (http_api.cpp)
  struct Call;   // one request on its way (http_api.cpp)

 private:
  void after_checks(std::shared_ptr<Call> call);

  uv_loop_t* loop_;
  Intake& intake_;
  queue::Spool& spool_;
  shaping::Store* store_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const api::KeyDb> keys_;
  std::shared_ptr<State> state_;
};

}  // namespace sluice::mta
