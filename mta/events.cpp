// events.cpp — the daemon's events (events.hpp).
#include "mta/events.hpp"

#include <sys/time.h>

#include <vector>

#include "conf/log.hpp"
#include "queue/tls_level.hpp"

namespace sluice::mta::events {

namespace {

int64_t now_us() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

bool digit(char c) { return c >= '0' && c <= '9'; }

bool enhanced_code(std::string_view s) {
  // class.subject.detail: "2.0.0", "5.7.30"
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  size_t dots = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (s[i - 1] == '.') return false;
      ++dots;
    } else if (!digit(s[i])) {
      return false;
    }
  }
  return dots == 1 && s.back() != '.';
}

}  // namespace

obs::Response parse_reply(std::string_view reply, std::string_view fallback_enhanced) {
  obs::Response r;
  if (reply.size() >= 3 && digit(reply[0]) && digit(reply[1]) && digit(reply[2]) &&
      (reply.size() == 3 || reply[3] == ' ' || reply[3] == '-')) {
    r.code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
    reply.remove_prefix(std::min<size_t>(4, reply.size()));
    const size_t sp = reply.find(' ');
    std::string_view first = reply.substr(0, sp);
    if (enhanced_code(first)) {
      r.enhanced_code = first;
      reply.remove_prefix(sp == std::string_view::npos ? reply.size() : sp + 1);
    }
  }
  if (r.enhanced_code.empty()) r.enhanced_code = fallback_enhanced;
  r.text = log::sanitize(reply, 400);
  return r;
}

void reception(const queue::Envelope& env, std::string_view source, std::string_view tls, std::string_view text) {
  std::vector<obs::Event> all;
  all.reserve(env.recipients.size());
  const int64_t now = now_us();
  for (const auto& rcpt : env.recipients) {
    obs::Event e;
    e.type = obs::EventType::reception;
    e.time_us = now;
    e.id = env.id;
    e.sender = env.sender;
    e.recipient = rcpt.address;
    e.response = {250, "2.0.0", "queued as " + env.id};
    e.peer_name = env.helo;
    e.peer_address = env.client_address;
    e.tls = tls.empty() ? "none" : std::string(tls);
    e.source = source;
    all.push_back(std::move(e));
  }
  obs::emit(all, text);
}

void rejection(std::string_view source, std::string_view peer_name, std::string_view peer_address, int code,
               std::string_view enhanced, std::string_view reply_text, bool warning, std::string_view text) {
  obs::Event e;
  e.type = obs::EventType::rejection;
  e.time_us = now_us();
  e.response = {code, std::string(enhanced), log::sanitize(reply_text, 400)};
  e.peer_name = peer_name;
  e.peer_address = peer_address;
  e.tls = "none";
  e.source = source;
  if (warning && log::format() == log::Format::text) {
    // The text line keeps its level; the event goes to the sinks.
    log::write(log::Level::warning, text);
    obs::emit(std::span<const obs::Event>(&e, 1), {});
    return;
  }
  obs::emit(e, text);
}

obs::Event verdict(const queue::Envelope& env, size_t recipient, std::string_view status, std::string_view dsn,
                   std::string_view reply, std::string_view relay, std::string_view tls, int64_t now) {
  obs::Event e;
  e.time_us = now;
  e.id = env.id;
  e.sender = env.sender;
  if (recipient < env.recipients.size()) {
    e.recipient = env.recipients[recipient].address;
    e.attempts = env.recipients[recipient].attempts;
  }
  if (status == "sent")
    e.type = obs::EventType::delivery;
  else if (status == "bounced")
    e.type = dsn.starts_with("4.") ? obs::EventType::expiry : obs::EventType::bounce;
  else
    e.type = obs::EventType::deferral;
  e.response = parse_reply(reply, dsn);
  // "mx.example.net[192.0.2.1]:25": the name, and the address in brackets.
  const size_t open = relay.find('[');
  const size_t close = relay.find(']', open == std::string_view::npos ? 0 : open);
  if (open != std::string_view::npos && close != std::string_view::npos) {
    e.peer_name = relay.substr(0, open);
    e.peer_address = relay.substr(open + 1, close - open - 1);
  } else if (relay != "none") {
    e.peer_name = relay;
  }
  e.tls = tls;
  e.delay = static_cast<double>(now - env.arrival_us) / 1e6;
  return e;
}

void admin(std::string_view change, std::string_view text) {
  obs::Event e;
  e.type = obs::EventType::admin;
  e.time_us = now_us();
  e.tls = "none";
  // "ID: verb" for one message; anything else ("all messages flushed (3)")
  // is an action on the whole queue.
  const size_t colon = change.find(": ");
  if (colon != std::string_view::npos && change.substr(0, colon).find(' ') == std::string_view::npos) {
    e.id = change.substr(0, colon);
    e.action = change.substr(colon + 2);
  } else {
    e.action = change;
  }
  obs::emit(e, text);
}

}  // namespace sluice::mta::events
