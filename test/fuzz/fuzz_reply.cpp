// fuzz_reply.cpp — the SMTP client's view of a hostile server: ReplyParser,
// and a ClientSession driven by the same bytes.
//
// The first input byte picks a split position and the session's settings;
// the rest is what the server sends. Invariants checked (a violation traps):
// ReplyParser
//  - the same replies, error and consumed length whether the input is fed
//    whole, in two pieces at the split, byte by byte, or 7 octets at a time;
//  - every reply: code 200..599; 1..100 lines of at most 512 octets, printable
//    ASCII only; enhanced code empty or "c.s.d" with c the code's first digit;
//  - describe() stays within its bound.
// ClientSession (the input split at the same point, then EOF; with the null
// sender the content ends only after the second piece, so server bytes that
// arrive during the content and EOF in the middle of it are exercised)
//  - every start_transaction() gets exactly one transaction_done(), with one
//    result per recipient whose reply class agrees with the outcome;
//  - at most one connection_failed(), with a 4xx reply when temporary and a
//    5xx one when not; close() exactly once; nothing sent after close();
//  - everything sent has CR and LF only as CRLF pairs;
//  - no AUTH and no credential is ever sent before TLS is up.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/auth/sasl.hpp"
#include "mta/client/client_session.hpp"
#include "mta/client/reply_parser.hpp"

using sluice::client::ClientConfig;
using sluice::client::ClientHost;
using sluice::client::ClientSession;
using sluice::client::ConnectionFailure;
using sluice::client::Outcome;
using sluice::client::ReplyError;
using sluice::client::ReplyParser;
using sluice::client::TlsPolicy;
using sluice::client::Transaction;
using sluice::client::TransactionResult;
using sluice::proto::Reply;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Run {
  std::vector<Reply> replies;
  std::optional<ReplyError> error;
  size_t consumed = 0;
  bool operator==(const Run& o) const {
    if (error != o.error || consumed != o.consumed || replies.size() != o.replies.size())
      return false;
    for (size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].code != o.replies[i].code || replies[i].enhanced != o.replies[i].enhanced ||
          replies[i].lines != o.replies[i].lines)
        return false;
    }
    return true;
  }
};

// Feeds `input` in pieces: first `first` octets, then `step` at a time
// (0 = the rest at once).
Run parse(std::string_view input, size_t first, size_t step) {
  ReplyParser p;
  Run res;
  size_t pos = 0;
  while (pos < input.size()) {
    size_t n = pos == 0 ? first : (step == 0 ? input.size() - pos : step);
    if (n == 0) n = input.size() - pos;
    n = std::min(n, input.size() - pos);
    std::string_view in = input.substr(pos, n);
    while (true) {
      const size_t before = in.size();
      auto r = p.next(in);
      res.consumed += before - in.size();
      if (!r) {
        res.error = r.error();
        check(p.failed());
        return res;
      }
      if (!r->has_value()) break;
      res.replies.push_back(std::move(**r));
    }
    check(in.empty());
    pos += n;
  }
  return res;
}

bool digit(char c) { return c >= '0' && c <= '9'; }

void check_reply(const Reply& r) {
  check(r.code >= 200 && r.code <= 599);
  check(!r.lines.empty() && r.lines.size() <= ReplyParser::max_lines);
  for (const auto& l : r.lines) {
    check(l.size() <= ReplyParser::max_kept_line);
    for (char c : l) check(c >= 0x20 && c <= 0x7e);
  }
  if (!r.enhanced.empty()) {
    const std::string& e = r.enhanced;
    check(e[0] == static_cast<char>('0' + r.code / 100));
    check(e.size() >= 5 && e.size() <= 9 && e[1] == '.');
    size_t dots = 0;
    for (size_t i = 2; i < e.size(); ++i) {
      if (e[i] == '.') ++dots;
      else check(digit(e[i]));
    }
    check(dots == 1);
  }
  check(sluice::client::describe(r, 300).size() <= 300);
}

void check_crlf(std::string_view b, bool& after_cr) {
  for (char c : b) {
    if (after_cr) check(c == '\n');
    else check(c != '\n');
    after_cr = c == '\r';
  }
}

struct Host : ClientHost {
  ClientSession* s = nullptr;
  uint8_t flags = 0;
  std::string secret_plain, secret_login;  // base64 forms of the credentials
  bool tls = false, tls_pending = false, body_pending = false, closed = false, after_cr = false;
  int started = 0, done = 0, failures = 0, closes = 0;

  Transaction make() {
    Transaction t;
    t.sender = (flags & 1) ? "" : "a@x.test";
    t.recipients.push_back({"b@y.test", "", 0});
    if (flags & 2) t.recipients.push_back({"c\xc3\xa9@y.test", "", 0});
    t.recipients.push_back({"d@y.test", "rfc822;d@y.test", 2});
    t.size = (flags & 4) ? 5'000'000 : 100;
    t.needs_8bitmime = flags & 8;
    return t;
  }
  void check_result(const TransactionResult& r) {
    check(r.recipients.size() == make().recipients.size());
    for (const auto& rr : r.recipients) {
      switch (rr.outcome) {
        case Outcome::sent: check(rr.reply.code / 100 == 2); break;
        case Outcome::temporary: check(rr.reply.code / 100 == 4); break;
        case Outcome::permanent: check(rr.reply.code / 100 == 5); break;
      }
    }
  }

  void send(std::string_view b) override {
    check(!closed);
    check_crlf(b, after_cr);
    // Never in plaintext; under `verify` never to an unverified server.
    const bool verify = ((flags >> 4) & 3) == static_cast<int>(TlsPolicy::verify);
    if (!tls || (verify && !(flags & 128))) {
      check(b.find("AUTH") == std::string_view::npos);
      check(b.find(secret_plain) == std::string_view::npos);
      check(b.find(secret_login) == std::string_view::npos);
    }
  }
  void start_tls() override {
    check(!closed);
    tls_pending = true;
  }
  void need_body() override {
    s->body("Subject: x\r\n\r\n.\r\nline\n.");
    // With the null sender, the content ends only after the next chunk of
    // server bytes (or never: EOF in the middle of it), as when the spool
    // read is asynchronous.
    if (flags & 1) body_pending = true;
    else s->body_end();
  }
  void transaction_done(TransactionResult r) override {
    ++done;
    check(done <= started);
    check_result(r);
  }
  void connection_failed(ConnectionFailure f) override {
    check(!closed);
    ++failures;
    check(failures == 1);
    check(f.temporary ? f.reply.code / 100 == 4 : f.reply.code / 100 == 5);
  }
  void idle() override {
    check(!closed);
    if (started < 2) {
      ++started;
      s->start_transaction(make());
    } else {
      s->quit();
    }
  }
  void close() override {
    check(!closed);
    closed = true;
    ++closes;
  }
};

void run_session(std::string_view input, size_t split, uint8_t flags) {
  Host h;
  h.flags = flags;
  ClientConfig cfg;
  cfg.helo_name = "client.test";
  cfg.tls = static_cast<TlsPolicy>((flags >> 4) & 3);
  cfg.tls_available = true;
  if (flags & 64) {
    sluice::auth::Credentials c;
    c.login = "fuzzuser";
    c.password = "fuzzpass";
    cfg.credentials = std::move(c);
  }
  h.secret_plain = sluice::auth::base64_encode(std::string("\0fuzzuser\0fuzzpass", 18));
  h.secret_login = sluice::auth::base64_encode("fuzzpass");
  ClientSession s(std::move(cfg), h);
  h.s = &s;
  s.on_connected();
  auto feed = [&](std::string_view part) {
    if (h.body_pending) {
      h.body_pending = false;
      s.body_end();
    }
    s.feed(part);
    if (h.tls_pending) {
      h.tls_pending = false;
      h.tls = true;
      h.after_cr = false;
      s.on_tls_ready(flags & 128);
    }
  };
  feed(input.substr(0, split));
  feed(input.substr(split));
  if (flags & 128) s.on_timeout();
  s.on_eof();
  check(s.closed());
  check(h.closes == 1);
  check(h.done == h.started);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = input.empty() ? 0 : (static_cast<size_t>(data[0]) * input.size()) / 255;

  const Run whole = parse(input, input.size(), 0);
  check(parse(input, split, 0) == whole);
  check(parse(input, 1, 1) == whole);
  check(parse(input, split, 7) == whole);
  check(whole.consumed <= input.size());
  check(whole.error || whole.consumed == input.size());
  for (const auto& r : whole.replies) check_reply(r);

  run_session(input, split, data[0]);
  return 0;
}
