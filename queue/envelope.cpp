// envelope.cpp — the binary form of an Envelope (format in docs/spool.md).
//
// Version 3, all integers little-endian, strings as u32 length + bytes:
//   u8 version=3 | str id | i64 arrival_us | str sender
//   | u32 count, count x (str address, str orcpt, u8 notify, u8 status, str last_reply,
//                         u32 attempts, i64 last_attempt_us, str dsn_status, str remote_host,
//                         u8 tls)
//   | u64 size | u8 body | u8 smtputf8 | str envid | u8 ret
//   | str client_address | str helo | str auth_user | str message_id
//   | u32 attempts | i64 next_attempt_us | u8 held
//   | u32 history count, count x (i64 time_us, i32 recipient, str host, str reply)
//   | u8 requiretls | u8 tls_optional
// Version 2 is the same without the recipients' tls and the last two bytes.
// Version 1 is version 2 without the per-recipient fields after last_reply and
// without everything after message_id. Both are still read (never written).
// decode_envelope() checks every length against the bytes left, so hostile
// input can neither crash it nor make it allocate more than its own size.
#include "queue/envelope.hpp"

#include <cstddef>

namespace sluice::queue {
namespace {

constexpr uint8_t kVersion = 3;
// Version 1: address, orcpt and last_reply lengths, notify, status.
constexpr size_t kMinRecipientBytesV1 = 4 + 4 + 4 + 1 + 1;
// Version 2 adds attempts, last_attempt_us, dsn_status and remote_host lengths.
constexpr size_t kMinRecipientBytesV2 = kMinRecipientBytesV1 + 4 + 8 + 4 + 4;
// Version 3 adds tls.
constexpr size_t kMinRecipientBytesV3 = kMinRecipientBytesV2 + 1;
// time_us, recipient, host and reply lengths.
constexpr size_t kMinAttemptBytes = 8 + 4 + 4 + 4;

void put_u8(std::string& out, uint8_t v) { out.push_back(char(v)); }

void put_u32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = char((v >> (8 * i)) & 0xFF);
  out.append(b, 4);
}

void put_u64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = char((v >> (8 * i)) & 0xFF);
  out.append(b, 8);
}

void put_str(std::string& out, std::string_view s) {
  put_u32(out, uint32_t(s.size()));
  out.append(s);
}

// Reads fields front to back; the first failure sticks and names its field.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t left() const { return in_.size(); }

  uint8_t u8(const char* field) {
    if (!take(1, field)) return 0;
    return static_cast<unsigned char>(last_[0]);
  }
  uint32_t u32(const char* field) {
    if (!take(4, field)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(last_[i])) << (8 * i);
    return v;
  }
  uint64_t u64(const char* field) {
    if (!take(8, field)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<unsigned char>(last_[i])) << (8 * i);
    return v;
  }
  void str(std::string& out, const char* field) {
    uint32_t n = u32(field);
    if (ok() && take(n, field)) out.assign(last_);
  }
  void fail(std::string why) {
    if (ok()) error_ = std::move(why);
  }

 private:
  bool take(size_t n, const char* field) {
    if (!ok()) return false;
    if (n > in_.size()) {
      error_ = std::string("envelope truncated in ") + field;
      return false;
    }
    last_ = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }

  std::string_view in_;
  std::string_view last_;
  std::string error_;
};

}  // namespace

std::string_view to_string(RcptStatus s) {
  switch (s) {
    case RcptStatus::pending: return "pending";
    case RcptStatus::sent: return "sent";
    case RcptStatus::deferred: return "deferred";
    case RcptStatus::bounced: return "bounced";
  }
  return "unknown";
}

void add_history(Envelope& env, Attempt a) {
  env.history.push_back(std::move(a));
  if (env.history.size() > kMaxHistory)
    env.history.erase(env.history.begin(),
                      env.history.begin() + std::ptrdiff_t(env.history.size() - kMaxHistory));
}

void encode_append(const Envelope& env, std::string& out) {
  put_u8(out, kVersion);
  put_str(out, env.id);
  put_u64(out, uint64_t(env.arrival_us));
  put_str(out, env.sender);
  put_u32(out, uint32_t(env.recipients.size()));
  for (const Recipient& r : env.recipients) {
    put_str(out, r.address);
    put_str(out, r.orcpt);
    put_u8(out, r.notify);
    put_u8(out, uint8_t(r.status));
    put_str(out, r.last_reply);
    put_u32(out, r.attempts);
    put_u64(out, uint64_t(r.last_attempt_us));
    put_str(out, r.dsn_status);
    put_str(out, r.remote_host);
    put_u8(out, uint8_t(r.tls));
  }
  put_u64(out, env.size);
  put_u8(out, uint8_t(env.body));
  put_u8(out, env.smtputf8 ? 1 : 0);
  put_str(out, env.envid);
  put_u8(out, env.ret);
  put_str(out, env.client_address);
  put_str(out, env.helo);
  put_str(out, env.auth_user);
  put_str(out, env.message_id);
  put_u32(out, env.attempts);
  put_u64(out, uint64_t(env.next_attempt_us));
  put_u8(out, env.held ? 1 : 0);
  put_u32(out, uint32_t(env.history.size()));
  for (const Attempt& a : env.history) {
    put_u64(out, uint64_t(a.time_us));
    put_u32(out, uint32_t(a.recipient));
    put_str(out, a.host);
    put_str(out, a.reply);
  }
  put_u8(out, env.requiretls ? 1 : 0);
  put_u8(out, env.tls_optional ? 1 : 0);
}

std::string encode(const Envelope& env) {
  std::string out;
  encode_append(env, out);
  return out;
}

std::expected<Envelope, std::string> decode_envelope(std::string_view bytes) {
  Reader in(bytes);
  Envelope env;
  uint8_t version = in.u8("version");
  if (in.ok() && (version < 1 || version > kVersion))
    return std::unexpected("unknown envelope version " + std::to_string(version));
  const bool v2 = version >= 2, v3 = version >= 3;
  const size_t min_recipient =
      v3 ? kMinRecipientBytesV3 : v2 ? kMinRecipientBytesV2 : kMinRecipientBytesV1;
  // A flag byte that must be 0 or 1.
  auto flag = [&in](const char* field) {
    uint8_t b = in.u8(field);
    if (in.ok() && b > 1) in.fail(std::string("bad ") + field + " flag " + std::to_string(b));
    return b == 1;
  };
  in.str(env.id, "id");
  env.arrival_us = int64_t(in.u64("arrival_us"));
  in.str(env.sender, "sender");
  uint32_t count = in.u32("recipient count");
  if (in.ok() && count > in.left() / min_recipient)
    in.fail("recipient count " + std::to_string(count) + " exceeds the envelope");
  if (in.ok()) env.recipients.reserve(count);
  for (uint32_t i = 0; i < count && in.ok(); ++i) {
    Recipient& r = env.recipients.emplace_back();
    in.str(r.address, "recipient address");
    in.str(r.orcpt, "recipient orcpt");
    r.notify = in.u8("recipient notify");
    uint8_t status = in.u8("recipient status");
    if (in.ok() && status > uint8_t(RcptStatus::bounced))
      in.fail("bad recipient status " + std::to_string(status));
    r.status = RcptStatus(status);
    in.str(r.last_reply, "recipient last_reply");
    if (!v2) continue;
    r.attempts = in.u32("recipient attempts");
    r.last_attempt_us = int64_t(in.u64("recipient last_attempt_us"));
    in.str(r.dsn_status, "recipient dsn_status");
    in.str(r.remote_host, "recipient remote_host");
    if (!v3) continue;
    uint8_t tls = in.u8("recipient tls");
    if (in.ok() && tls > uint8_t(TlsLevel::dane))
      in.fail("bad recipient tls level " + std::to_string(tls));
    r.tls = TlsLevel(tls);
  }
  env.size = in.u64("size");
  uint8_t body = in.u8("body");
  if (in.ok() && body > uint8_t(BodyType::eight_bit_mime))
    in.fail("bad body type " + std::to_string(body));
  env.body = BodyType(body);
  uint8_t utf8 = in.u8("smtputf8");
  if (in.ok() && utf8 > 1) in.fail("bad smtputf8 flag " + std::to_string(utf8));
  env.smtputf8 = utf8 == 1;
  in.str(env.envid, "envid");
  env.ret = in.u8("ret");
  if (in.ok() && env.ret > 2) in.fail("bad ret " + std::to_string(env.ret));
  in.str(env.client_address, "client_address");
  in.str(env.helo, "helo");
  in.str(env.auth_user, "auth_user");
  in.str(env.message_id, "message_id");
  if (v2) {
    env.attempts = in.u32("attempts");
    env.next_attempt_us = int64_t(in.u64("next_attempt_us"));
    uint8_t held = in.u8("held");
    if (in.ok() && held > 1) in.fail("bad held flag " + std::to_string(held));
    env.held = held == 1;
    uint32_t n = in.u32("history count");
    if (in.ok() && n > in.left() / kMinAttemptBytes)
      in.fail("history count " + std::to_string(n) + " exceeds the envelope");
    if (in.ok()) env.history.reserve(n);
    for (uint32_t i = 0; i < n && in.ok(); ++i) {
      Attempt& a = env.history.emplace_back();
      a.time_us = int64_t(in.u64("history time"));
      a.recipient = int32_t(in.u32("history recipient"));
      if (in.ok() && (a.recipient < -1 || int64_t(a.recipient) >= int64_t(env.recipients.size())))
        in.fail("bad history recipient index " + std::to_string(a.recipient));
      in.str(a.host, "history host");
      in.str(a.reply, "history reply");
    }
  }
  if (v3) {
    env.requiretls = flag("requiretls");
    env.tls_optional = flag("tls_optional");
  }
  if (in.ok() && in.left() != 0)
    in.fail(std::to_string(in.left()) + " trailing bytes after the envelope");
  if (!in.ok()) return std::unexpected(in.error());
  return env;
}

}  // namespace sluice::queue
