// log.cpp — the log line writer behind log.hpp.
//
// Each line is formatted into one buffer and handed to a single write(2) on
// standard error, so lines from different threads never interleave. The
// minimum level starts at info, or at $SLUICE_LOG_LEVEL (debug, info,
// warning, error) when that is set; set_min_level() overrides it. Logging
// never fails loudly: a failed write to stderr is dropped.
#include "conf/log.hpp"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

namespace sluice::log {

namespace {

Level level_from_env() {
  const char* v = std::getenv("SLUICE_LOG_LEVEL");
  if (v == nullptr) return Level::info;
  std::string_view s(v);
  if (s == "debug") return Level::debug;
  if (s == "warning") return Level::warning;
  if (s == "error") return Level::error;
  return Level::info;
}

std::atomic<int>& min_level() {
  static std::atomic<int> level{static_cast<int>(level_from_env())};
  return level;
}

// getpid() is a system call each time; the daemon never forks.
pid_t own_pid() {
  static const pid_t pid = getpid();
  return pid;
}

std::mutex program_mutex;
std::string& program() {
  static std::string name = program_invocation_short_name;
  return name;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warning:
      return "warning";
    case Level::error:
      return "error";
  }
  return "?";
}

void append_hex(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t utf8_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return n;
}

std::atomic<uint64_t> alert_counts[kAlertKinds];

}  // namespace

std::string_view to_string(Alert kind) {
  switch (kind) {
    case Alert::relayhost_auth: return "relayhost_auth";
    case Alert::tls_verify: return "tls_verify";
    case Alert::config: return "config";
  }
  return "?";
}

void count_alert(Alert kind) {
  alert_counts[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t alerts(Alert kind) {
  return alert_counts[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

void set_program(std::string_view name) {
  std::lock_guard lock(program_mutex);
  program() = std::string(name);
}

void set_min_level(Level level) { min_level().store(static_cast<int>(level)); }

bool enabled(Level level) { return static_cast<int>(level) >= min_level().load(); }

namespace {
void write_line(const std::string& line);
std::atomic<int> log_format{static_cast<int>(Format::text)};
}  // namespace

void set_format(Format f) { log_format.store(static_cast<int>(f), std::memory_order_relaxed); }
Format format() { return static_cast<Format>(log_format.load(std::memory_order_relaxed)); }

std::string json_string(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t n = utf8_length(text, i);
    if (n == 0) {
      out += "\\ufffd";
      i += 1;
      continue;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  out += '"';
  return out;
}

void write(Level level, std::string_view text) {
  if (!enabled(level)) return;

  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  gmtime_r(&ts.tv_sec, &tm);

  std::string line;
  line.reserve(64 + text.size());
  if (format() == Format::json) {
    std::lock_guard lock(program_mutex);
    line = fmt::format(R"({{"time":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z","level":"{}","type":"log","program":{},"pid":{},"message":{}}})",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       ts.tv_nsec / 1000000, level_name(level), json_string(program()), own_pid(),
                       json_string(text));
    line += '\n';
    write_line(line);
    return;
  }
  {
    std::lock_guard lock(program_mutex);
    line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {}[{}]: {}: ", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       ts.tv_nsec / 1000000, program(), own_pid(), level_name(level));
  }
  // A line break inside the text would forge a second log line.
  for (char c : text) {
    if (c == '\n' || c == '\r')
      append_hex(line, static_cast<unsigned char>(c));
    else
      line += c;
  }
  line += '\n';
  write_line(line);
}

void write_object(Level level, std::string_view object) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(object.size() + 1);
  for (char c : object)  // a JSON object has no raw line breaks; never let one through
    if (c != '\n' && c != '\r') line += c;
  line += '\n';
  write_line(line);
}

namespace {

void write_line(const std::string& line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

std::string sanitize(std::string_view text, size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len) + 3);
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t n = utf8_length(text, i);
    // Never cut an escape or a multi-byte character in half.
    bool escape = n == 0 || c < 0x20 || c == 0x7f;
    size_t piece = escape ? 4 : n;
    if (out.size() + piece > max_len) {
      out += "...";
      return out;
    }
    if (escape) {
      append_hex(out, c);
      i += 1;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace sluice::log
