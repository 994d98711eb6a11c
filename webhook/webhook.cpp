// webhook.cpp — see webhook.hpp.
#include "webhook/webhook.hpp"

#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace sluice::webhook {

namespace {

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string rfc3339(int64_t time_us) {
  if (time_us < 0) time_us = 0;
  const time_t secs = static_cast<time_t>(time_us / 1000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (time_us % 1000000) / 1000);
}

}  // namespace

std::optional<std::string_view> event_name(obs::EventType type) {
  switch (type) {
    case obs::EventType::delivery: return "delivered";
    case obs::EventType::deferral: return "deferred";
    case obs::EventType::bounce: return "bounced";
    case obs::EventType::expiry: return "expired";
    case obs::EventType::reception: return "accepted";
    case obs::EventType::rejection:
    case obs::EventType::admin: return std::nullopt;
  }
  return std::nullopt;
}

std::string event_id(std::span<const uint8_t, 16> random) { return hex(random); }

std::string payload(const obs::Event& e, std::string_view id) {
  nlohmann::ordered_json j;
  j["event_id"] = id;
  j["event"] = event_name(e.type).value_or("");
  j["id"] = e.id;
  j["recipient"] = e.recipient;
  j["sender"] = e.sender;
  j["time"] = rfc3339(e.time_us);
  j["response"] = {{"code", e.response.code}, {"enhanced_code", e.response.enhanced_code},
                   {"text", e.response.text}};
  j["attempts"] = e.attempts;
  j["delay"] = e.delay;
  if (e.type == obs::EventType::reception) {
    j["source"] = e.source;
  } else {
    j["mx"] = e.peer_name;
    j["mx_address"] = e.peer_address;
  }
  j["tls"] = e.tls;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Batch build_batch(std::span<const std::string> payloads, size_t max_events, size_t max_bytes) {
  Batch b;
  b.body = "[";
  for (const auto& p : payloads) {
    if (b.count >= max_events) break;
    // "[" + payloads joined by "," + "]"
    if (b.count > 0 && b.body.size() + 1 + p.size() + 1 > max_bytes) break;
    if (b.count > 0) b.body += ',';
    b.body += p;
    ++b.count;
  }
  b.body += ']';
  return b;
}

std::string signature(std::string_view secret, int64_t t, std::string_view body) {
  const std::string ts = std::to_string(t);
  std::array<uint8_t, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC_CTX ctx;
  HMAC_CTX_init(&ctx);
  const bool ok = HMAC_Init_ex(&ctx, secret.data(), secret.size(), EVP_sha256(), nullptr) &&
                  HMAC_Update(&ctx, reinterpret_cast<const uint8_t*>(ts.data()), ts.size()) &&
                  HMAC_Update(&ctx, reinterpret_cast<const uint8_t*>("."), 1) &&
                  HMAC_Update(&ctx, reinterpret_cast<const uint8_t*>(body.data()), body.size()) &&
                  HMAC_Final(&ctx, mac.data(), &len);
  HMAC_CTX_cleanup(&ctx);
  if (!ok) std::abort();  // only on allocation failure inside BoringSSL
  return fmt::format("t={},v1={}", ts, hex(std::span<const uint8_t>(mac.data(), len)));
}

std::string post_request(const http::Url& url, std::string_view body, std::string_view sig) {
  const bool v6 = url.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + url.host + "]" : url.host;
  if (url.port != (url.tls ? 443 : 80)) host += fmt::format(":{}", url.port);
  std::string r = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Sluice\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\nConnection: close\r\n",
      url.target, host, body.size());
  if (!sig.empty()) r += fmt::format("X-Sluice-Signature: {}\r\n", sig);
  r += "\r\n";
  r += body;
  return r;
}

std::chrono::milliseconds retry_delay(uint32_t failures, double jitter) {
  static constexpr int64_t kSteps[] = {10, 30, 60, 300, 900};
  const int64_t base_s = failures == 0 ? kSteps[0]
                         : failures <= std::size(kSteps) ? kSteps[failures - 1]
                                                         : 3600;
  jitter = std::clamp(jitter, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(base_s * 1000 * (0.9 + 0.2 * jitter)));
}

std::string queue_name(std::string_view url) {
  std::array<uint8_t, SHA256_DIGEST_LENGTH> d{};
  SHA256(reinterpret_cast<const uint8_t*>(url.data()), url.size(), d.data());
  return hex(std::span<const uint8_t>(d.data(), 16));
}

std::string url_for_log(std::string_view url) {
  std::string_view u = url.substr(0, url.find_first_of("?#"));
  std::string out;
  for (char c : u.substr(0, 300)) out += (c > 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace sluice::webhook
