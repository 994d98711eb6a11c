// idempotency.cpp — see idempotency.hpp.
#include "api/idempotency.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <vector>

namespace sluice::api {

namespace {

constexpr std::string_view kHex = "0123456789abcdef";

std::string to_hex(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += kHex[u >> 4];
    out += kHex[u & 15];
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < s.size(); i += 2) {
    const size_t hi = kHex.find(s[i]), lo = kHex.find(s[i + 1]);
    if (hi == std::string_view::npos || lo == std::string_view::npos) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

template <class T>
std::optional<T> number(std::string_view s) {
  T v{};
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

bool valid_idempotency_key(std::string_view key) {
  return !key.empty() && key.size() <= 255 && std::all_of(key.begin(), key.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x21 && u <= 0x7e;
  });
}

IdempotencyStore::Found IdempotencyStore::begin(const std::string& key_name, const std::string& key,
                                                const std::string& request_hash, int64_t now_us) {
  auto [it, fresh] = entries_.try_emplace({key_name, key});
  if (!fresh && it->second.done && now_us - it->second.answer.time_us > kIdempotencyKeep_us) {
    it->second = Entry{};
    fresh = true;
  }
  if (fresh) {
    it->second.answer.request_hash = request_hash;
    return {Kind::fresh};
  }
  if (!it->second.done) return {Kind::in_progress};
  if (it->second.answer.request_hash != request_hash) return {Kind::mismatch};
  return {Kind::replay, &it->second.answer};
}

std::string IdempotencyStore::finish(const std::string& key_name, const std::string& key, Answer answer) {
  Entry& e = entries_[{key_name, key}];
  e.done = true;
  e.answer = std::move(answer);
  return line(key_name, key, e.answer);
}

void IdempotencyStore::forget(const std::string& key_name, const std::string& key) {
  auto it = entries_.find({key_name, key});
  if (it != entries_.end() && !it->second.done) entries_.erase(it);
}

std::string IdempotencyStore::line(const std::string& key_name, const std::string& key, const Answer& a) {
  std::string body = a.body;
  std::replace(body.begin(), body.end(), '\n', ' ');  // JSON answers have none; never split a line
  return fmt::format("v1 {} {} {} {} {} {}\n", a.time_us, a.status, to_hex(key_name), to_hex(key),
                     a.request_hash.empty() ? "-" : a.request_hash, body);
}

size_t IdempotencyStore::load(std::string_view text, int64_t now_us) {
  size_t taken = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;  // an unfinished last line: not kept
    std::string_view l = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    std::vector<std::string_view> f;
    for (int i = 0; i < 6 && !l.empty(); ++i) {
      const size_t sp = l.find(' ');
      if (sp == std::string_view::npos) break;
      f.push_back(l.substr(0, sp));
      l.remove_prefix(sp + 1);
    }
    if (f.size() != 6 || f[0] != "v1") continue;
    const auto time = number<int64_t>(f[1]);
    const auto status = number<int>(f[2]);
    const auto name = from_hex(f[3]);
    const auto key = from_hex(f[4]);
    if (!time || !status || !name || !key || *status < 100 || *status > 599) continue;
    if (now_us - *time > kIdempotencyKeep_us) continue;
    Entry e;
    e.done = true;
    e.answer = Answer{*status, std::string(l), *time, f[5] == "-" ? "" : std::string(f[5])};
    entries_[{*name, *key}] = std::move(e);
    ++taken;
  }
  return taken;
}

void IdempotencyStore::expire(int64_t now_us) {
  std::erase_if(entries_, [now_us](const auto& kv) {
    return kv.second.done && now_us - kv.second.answer.time_us > kIdempotencyKeep_us;
  });
}

std::string IdempotencyStore::dump() const {
  std::string out;
  for (const auto& [k, e] : entries_)
    if (e.done) out += line(k.first, k.second, e.answer);
  return out;
}

}  // namespace sluice::api
