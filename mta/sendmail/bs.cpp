// bs.cpp — see bs.hpp. Pure.
#include "mta/sendmail/bs.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::sendmail {

mta::SessionConfig bs_session_config(std::string hostname, uint64_t max_message_size,
                                     uint32_t max_recipients,
                                     std::shared_ptr<const aliases::Table> table) {
  mta::SessionConfig sc;
  sc.hostname = std::move(hostname);
  sc.mode = mta::Mode::relay;
  sc.trusted = true;  // a local user, as with any sendmail submission
  sc.client_address = "local";
  sc.max_message_size =
      max_message_size > 2 * kHeaderReserve ? max_message_size - kHeaderReserve : max_message_size / 2;
  sc.max_recipients = std::min<uint32_t>(max_recipients, static_cast<uint32_t>(kMaxRecipients));
  sc.tls_offered = false;
  sc.auth_offered = false;
  sc.min_free_space = 0;  // the maildrop write says so itself (EX_TEMPFAIL -> 451)
  sc.aliases = std::move(table);
  return sc;
}

BsDialogue::BsDialogue(mta::SessionConfig cfg, Context context, BsIo& io)
    : context_(std::move(context)), io_(io), session_(std::move(cfg), *this) {}

void BsDialogue::start() { session_.start(); }

void BsDialogue::feed(std::string_view bytes) {
  if (done_) return;
  session_.feed(bytes);
  run_commits();
}

void BsDialogue::on_timeout() {
  if (done_) return;
  session_.on_timeout();
  done_ = true;
}

void BsDialogue::end_of_input() {
  if (session_.state() == mta::Session::State::data) {
    io_.report("standard input ended in the middle of DATA; that message was not queued");
    content_.clear();
  }
  done_ = true;
}

std::string BsDialogue::begin_message(const mail::Trace&) {
  // The daemon writes the Received field (naming the uid) at pickup.
  content_.clear();
  return {};
}

void BsDialogue::run_commits() {
  // on_commit() may resume pipelined input and so finish another message.
  while (pending_) {
    queue::Envelope env = std::move(*pending_);
    pending_.reset();
    std::vector<std::string> recipients;
    recipients.reserve(env.recipients.size());
    for (const auto& r : env.recipients) recipients.push_back(r.address);
    Context c = context_;
    c.stamp = io_.stamp();
    const std::string content = std::move(content_);
    content_.clear();

    bool ok = false;
    auto drop = smtp_maildrop(env.sender, recipients, content, c);
    if (!drop) {
      io_.report(drop.error().message);
    } else if (auto file = encode_maildrop(*drop); !file) {
      io_.report("internal error: " + file.error());
    } else if (auto name = io_.drop(*file); !name) {
      io_.report(name.error().message);
    } else {
      env.id = *name;
      env.size = drop->message.size();
      ok = true;
    }
    session_.on_commit(ok, env);
  }
}

}  // namespace sluice::sendmail
