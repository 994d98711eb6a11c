// client_test_util.hpp — what the client session tests share: a recording
// host standing in for the libuv glue, configurations, transactions, EHLO
// replies, and the steps to a ready (or TLS) session. The test plays the
// server.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mta/auth/sasl.hpp"
#include "mta/client/client_session.hpp"

using namespace std::chrono_literals;
using sluice::client::ClientConfig;
using sluice::client::ClientHost;
using sluice::client::ClientSession;
using sluice::client::ConnectionFailure;
using sluice::client::Failure;
using sluice::client::Outcome;
using sluice::client::Recipient;
using sluice::client::Stage;
using sluice::client::TlsPolicy;
using sluice::client::Transaction;
using sluice::client::TransactionResult;
using State = ClientSession::State;

// Internal linkage: each test file gets its own copy.
namespace {

struct Host : ClientHost {
  std::string out;
  int tls_started = 0, need_body_n = 0, idle_n = 0, closed_n = 0;
  std::vector<TransactionResult> done;
  std::vector<ConnectionFailure> failures;
  std::function<void()> on_idle;       // called from idle()
  std::function<void()> on_need_body;  // called from need_body()
  std::function<void()> on_start_tls;  // called from start_tls()

  void send(std::string_view b) override { out.append(b); }
  void start_tls() override {
    ++tls_started;
    if (on_start_tls) on_start_tls();
  }
  void need_body() override {
    ++need_body_n;
    if (on_need_body) on_need_body();
  }
  void transaction_done(TransactionResult r) override { done.push_back(std::move(r)); }
  void connection_failed(ConnectionFailure f) override { failures.push_back(std::move(f)); }
  void idle() override {
    ++idle_n;
    if (on_idle) on_idle();
  }
  void close() override { ++closed_n; }

  std::string take() {
    std::string s;
    s.swap(out);
    return s;
  }
};

ClientConfig config(TlsPolicy tls = TlsPolicy::none, bool tls_available = false) {
  ClientConfig c;
  c.helo_name = "client.test";
  c.tls = tls;
  c.tls_available = tls_available;
  return c;
}

sluice::auth::Credentials creds(std::string login = "alice", std::string password = "secret") {
  sluice::auth::Credentials c;
  c.login = std::move(login);
  c.password = std::move(password);
  return c;
}

Transaction tx(std::vector<std::string> rcpts, uint64_t size = 100,
               std::string sender = "a@x.test") {
  Transaction t;
  t.sender = std::move(sender);
  for (auto& r : rcpts) t.recipients.push_back(Recipient{std::move(r), "", 0});
  t.size = size;
  return t;
}

constexpr std::string_view kEhloPlain = "250-mx.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";
constexpr std::string_view kEhloPipe =
    "250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";
constexpr std::string_view kEhloTls =
    "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE 1000\r\n";

// Connect, greet, EHLO with `ehlo`. Leaves the output after EHLO in h.out.
void connect(ClientSession& s, Host& h, std::string_view ehlo) {
  CHECK(s.state() == State::connecting);
  s.on_connected();
  CHECK(s.state() == State::greeting);
  s.feed("220 mx.test ESMTP\r\n");
  REQUIRE(h.take() == "EHLO client.test\r\n");
  s.feed(ehlo);
}


// Through STARTTLS to the EHLO inside TLS.
void into_tls(ClientSession& s, Host& h) {
  REQUIRE(h.take() == "STARTTLS\r\n");
  s.feed("220 go ahead\r\n");
  s.on_tls_ready(true);
  REQUIRE(h.take() == "EHLO client.test\r\n");
}

}  // namespace
