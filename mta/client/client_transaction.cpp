// client_transaction.cpp — ClientSession's transactions (see
// client_session.hpp): MAIL, RCPT, DATA, the content, the final dot, RSET,
// and the local refusals before anything is sent. The connection phases
// (greeting, EHLO, STARTTLS, AUTH) and the failures are in client_session.cpp.
// Pure.
//
// References, as applied here:
// RFC 5321 §3.3, §4.1.1.2-4: MAIL, RCPT per recipient, DATA; 354; the reply
//   to the final dot covers every accepted recipient.
// RFC 5321 §4.1.1.5: RSET aborts a transaction; we use it only after a failed
//   one. After the final dot's reply "the SMTP server MUST clear all buffers
//   and state tables", so the next MAIL follows without RSET.
// RFC 2920 §3.1: "the last command in a group ... DATA"; the client matches
//   replies to commands in order; if no RCPT succeeded and the server still
//   answers DATA with 354, the client sends "." alone (§3.1: "the client MUST
//   ... send ... the terminating dot" — we send it and ignore the reply).
// RFC 1870 (SIZE): "SIZE=" the message size when the server offers SIZE; a
//   message larger than the server's declared maximum is not sent (§6:
//   "the client ... SHOULD NOT transmit" it) — every recipient gets a local
//   552 5.3.4 and TransactionResult::too_big says so (the message is too big
//   for this server, not refused by it).
// RFC 6152 (8BITMIME): a server without 8BITMIME must not get 8-bit content;
//   the client "MUST either ... return a non-delivery notification ... or
//   convert" — Sluice does not convert: 554 5.6.3.
// RFC 6531 §3.2 (SMTPUTF8): a message that needs SMTPUTF8 cannot go to a
//   server without it: 553 5.6.7.
// RFC 3461 (DSN): RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT, only when the
//   server offers DSN.
// RFC 8689 §4.2.1 (REQUIRETLS): a REQUIRETLS message goes only to a server
//   that offers REQUIRETLS, with the MAIL parameter; otherwise nothing is
//   sent and every recipient gets Stage::requiretls with a local
//   451 4.7.30 "REQUIRETLS support required" (policy tries the next host).
//   Checked before everything else: the message may not go to this server
//   at all, so no other refusal of it here is final.
#include "mta/client/client_session.hpp"

#include <fmt/format.h>

#include <utility>

namespace sluice::client {

using proto::Reply;

namespace {

bool has_control(std::string_view s) {
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0') return true;
  return false;
}

bool non_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  return false;
}

// RFC 3461 §4: xtext = *( xchar / hexchar ); xchar is "!".."~" except "+"
// and "="; hexchar is "+" 2HEXDIGIT. Values come from our own spool, so this
// only keeps anything odd off the wire.
bool valid_xtext(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s)
    if (c < '!' || c > '~' || c == '=') return false;
  return true;
}

// "SUCCESS,FAILURE,DELAY" or "NEVER" from queue::Recipient::notify bits.
std::string notify_value(uint8_t bits) {
  if (bits & 8) return "NEVER";
  std::string v;
  for (auto [bit, name] : {std::pair<uint8_t, const char*>{1, "SUCCESS"}, {2, "FAILURE"},
                           {4, "DELAY"}}) {
    if (bits & bit) {
      if (!v.empty()) v += ',';
      v += name;
    }
  }
  return v;
}

}  // namespace

void ClientSession::start_transaction(Transaction t) {
  if (state_ != State::ready) {
    settle_local(std::move(t), Outcome::temporary,
                 Reply(451, "4.3.0",
                       fmt::format("Delivery not started: connection is {}",
                                   state_ == State::closed ? "closed" : "not ready")));
    return;
  }
  begin(std::move(t));
}

void ClientSession::settle_local(Transaction t, Outcome o, const Reply& r) {
  TransactionResult res;
  res.recipients.reserve(t.recipients.size());
  for (auto& rcpt : t.recipients) {
    res.recipients.push_back(RecipientResult{std::move(rcpt.address), o, Stage::local, r, false});
  }
  host_.transaction_done(std::move(res));
}

void ClientSession::decide(size_t idx, Outcome o, Stage s, const Reply& r, bool remote) {
  if (decided_[idx]) return;
  decided_[idx] = 1;
  RecipientResult& rr = result_.recipients[idx];
  rr.outcome = o;
  rr.stage = s;
  rr.reply = r;
  rr.remote = remote;
}

void ClientSession::decide_reply(size_t idx, Stage s, const Reply& r) {
  const Outcome o = r.permanent() ? Outcome::permanent
                    : r.transient() ? Outcome::temporary
                                    : Outcome::sent;
  decide(idx, o, s, r, true);
}

void ClientSession::begin(Transaction t) {
  ++seq_;
  tx_ = std::move(t);
  tx_active_ = true;
  const size_t n = tx_.recipients.size();
  result_ = TransactionResult{};
  result_.recipients.resize(n);
  for (size_t i = 0; i < n; ++i) result_.recipients[i].address = tx_.recipients[i].address;
  decided_.assign(n, 0);
  accepted_flags_.assign(n, 0);
  sendable_.clear();
  step_ = 0;
  mail_ok_ = false;
  accepted_ = 0;
  discard_final_ = false;
  held_.clear();

  auto refuse_all = [&](const Reply& r) {
    for (size_t i = 0; i < n; ++i) decide(i, Outcome::permanent, Stage::local, r, false);
    end_transaction(false);
  };
  if (n == 0) {
    end_transaction(false);
    return;
  }
  if (tx_.requiretls && !caps_.requiretls) {
    for (size_t i = 0; i < n; ++i)
      decide(i, Outcome::temporary, Stage::requiretls,
             Reply(451, "4.7.30",
                   "REQUIRETLS support required, but the server does not offer REQUIRETLS"),
             false);
    end_transaction(false);
    return;
  }
  if (has_control(tx_.sender)) {
    refuse_all(Reply(501, "5.1.7", "Invalid sender address"));
    return;
  }
  bool utf8 = tx_.needs_smtputf8 || non_ascii(tx_.sender);
  for (const auto& rc : tx_.recipients) utf8 = utf8 || non_ascii(rc.address);
  if (utf8 && !caps_.smtputf8) {
    refuse_all(Reply(553, "5.6.7",
                     "Message needs SMTPUTF8, but the server does not support it"));
    return;
  }
  if (tx_.needs_8bitmime && !caps_.eightbitmime) {
    refuse_all(Reply(554, "5.6.3",
                     "Message has 8-bit content, but the server does not support 8BITMIME"));
    return;
  }
  if (caps_.size && *caps_.size > 0 && tx_.size > *caps_.size) {
    result_.too_big = TransactionResult::TooBig{tx_.size, *caps_.size};
    refuse_all(Reply(552, "5.3.4",
                     fmt::format("Message size {} exceeds fixed limit of server ({})", tx_.size,
                                 *caps_.size)));
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string& a = tx_.recipients[i].address;
    if (a.empty() || has_control(a)) {
      decide(i, Outcome::permanent, Stage::local, Reply(501, "5.1.3", "Invalid recipient address"),
             false);
    } else {
      sendable_.push_back(i);
    }
  }
  if (sendable_.empty()) {
    end_transaction(false);
    return;
  }

  std::string mail = fmt::format("MAIL FROM:<{}>", tx_.sender);
  if (caps_.size) mail += fmt::format(" SIZE={}", tx_.size);
  if (tx_.needs_8bitmime) mail += " BODY=8BITMIME";
  if (utf8) mail += " SMTPUTF8";
  if (caps_.dsn) {
    if (tx_.ret == 1) mail += " RET=FULL";
    if (tx_.ret == 2) mail += " RET=HDRS";
    if (valid_xtext(tx_.envid, 100)) mail += " ENVID=" + tx_.envid;
  }
  if (tx_.requiretls) mail += " REQUIRETLS";
  mail += "\r\n";
  state_ = State::mail;
  if (caps_.pipelining) {
    for (size_t k = 0; k < sendable_.size(); ++k) mail += rcpt_line(k);
    mail += "DATA\r\n";
  }
  host_.send(mail);
}

std::string ClientSession::rcpt_line(size_t k) const {
  const Recipient& rc = tx_.recipients[sendable_[k]];
  std::string line = fmt::format("RCPT TO:<{}>", rc.address);
  if (caps_.dsn) {
    if (rc.notify) line += " NOTIFY=" + notify_value(rc.notify);
    if (valid_xtext(rc.orcpt, 500)) line += " ORCPT=" + rc.orcpt;
  }
  line += "\r\n";
  return line;
}

void ClientSession::send_rcpt(size_t k) {
  state_ = State::rcpt;
  host_.send(rcpt_line(k));
}

void ClientSession::on_tx_reply(const Reply& r) {
  const size_t m = sendable_.size();
  const bool refusal = r.transient() || r.permanent();
  if (step_ == 0) {  // MAIL FROM
    if (r.code / 100 == 2) {
      mail_ok_ = true;
    } else if (refusal) {
      for (size_t idx : sendable_) decide_reply(idx, Stage::mail, r);
    } else {
      protocol_error(fmt::format("unexpected reply to MAIL FROM: {}", describe(r, 200)));
      return;
    }
    step_ = 1;
    if (!caps_.pipelining) {
      if (!mail_ok_) {
        end_transaction(true);
        return;
      }
      send_rcpt(0);
      return;
    }
    state_ = State::rcpt;
    return;
  }
  if (step_ <= m) {  // RCPT TO
    const size_t idx = sendable_[step_ - 1];
    if (mail_ok_) {  // after a refused MAIL, the RCPT replies mean nothing
      if (r.code / 100 == 2) {
        accepted_flags_[idx] = 1;
        ++accepted_;
      } else if (refusal) {
        decide_reply(idx, Stage::rcpt, r);
      } else {
        protocol_error(fmt::format("unexpected reply to RCPT TO: {}", describe(r, 200)));
        return;
      }
    }
    ++step_;
    if (!caps_.pipelining) {
      if (step_ <= m) {
        send_rcpt(step_ - 1);
        return;
      }
      if (accepted_ == 0) {
        end_transaction(true);
        return;
      }
      state_ = State::data;
      host_.send("DATA\r\n");
      return;
    }
    if (step_ > m) state_ = State::data;
    return;
  }
  // DATA
  if (r.code / 100 == 3) {
    if (mail_ok_ && accepted_ > 0) {
      state_ = State::body;
      stuffer_.reset();
      host_.need_body();
      return;
    }
    // Pipelined, nobody accepted, and the server still wants the content:
    // an empty message ends it; its reply is ignored.
    discard_final_ = true;
    state_ = State::data_done;
    host_.send(".\r\n");
    return;
  }
  if (refusal) {
    for (size_t i = 0; i < accepted_flags_.size(); ++i)
      if (accepted_flags_[i]) decide_reply(i, Stage::data, r);
    end_transaction(true);
    return;
  }
  protocol_error(fmt::format("unexpected reply to DATA: {}", describe(r, 200)));
}

void ClientSession::body(std::string_view chunk) {
  if (state_ != State::body) return;
  out_.clear();
  stuffer_.feed(chunk, out_);
  if (!out_.empty()) host_.send(out_);
}

void ClientSession::body_end() {
  if (state_ != State::body) return;
  out_.clear();
  stuffer_.finish(out_);
  state_ = State::data_done;
  host_.send(out_);
  if (!held_.empty() && state_ == State::data_done) {
    std::string held = std::move(held_);
    held_.clear();
    feed(held);
  }
}

void ClientSession::on_final(const Reply& r) {
  const bool refusal = r.transient() || r.permanent();
  if (r.code / 100 != 2 && !refusal) {
    protocol_error(fmt::format("unexpected reply to end of data: {}", describe(r, 200)));
    return;
  }
  if (!discard_final_) {
    for (size_t i = 0; i < accepted_flags_.size(); ++i)
      if (accepted_flags_[i]) decide_reply(i, Stage::end_of_data, r);
  }
  end_transaction(false);
}

void ClientSession::end_transaction(bool rset) {
  TransactionResult res = std::move(result_);
  result_ = TransactionResult{};
  tx_active_ = false;
  tx_ = Transaction{};
  held_.clear();
  ++transactions_;
  const uint64_t seq = seq_;
  if (rset) {
    state_ = State::rset;
    host_.send("RSET\r\n");
  } else {
    state_ = State::ready;
  }
  host_.transaction_done(std::move(res));
  if (!rset && state_ == State::ready && seq_ == seq) notify_idle();
}

void ClientSession::on_rset(const Reply& r) {
  if (r.code / 100 == 2) {
    become_ready();
    return;
  }
  protocol_error(fmt::format("RSET refused: {}", describe(r, 200)));
}

}  // namespace sluice::client
