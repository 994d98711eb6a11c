// log.hpp — one line per event, written atomically to standard error.
//
// Each line: "2026-11-26T13:56:01.123Z sluiced[PID]: LEVEL: TEXT". Callers put
// the queue or session id first and key=value fields after, e.g.
//   log::info("{}: accept from=<{}> size={} nrcpt={}", qid, from, size, n);
// Thread-safe (one write(2) per line). Never pass passwords or AUTH payloads.
//
// With set_format(Format::json) (`[log] format = "json"`) every line is one
// JSON object instead: {"time", "level", "type": "log", "program", "pid",
// "message"} for these lines, and the events of obs/event.hpp (deliveries,
// receptions, ...) as their own objects through write_object().
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::log {

enum class Level { debug, info, warning, error };

void set_program(std::string_view name);
void set_min_level(Level level);
enum class Format { text, json };
void set_format(Format format);
Format format();
bool enabled(Level level);
void write(Level level, std::string_view text);
// Json format only: writes `object` (one JSON object, no line break) as one
// line, if `level` is enabled.
void write_object(Level level, std::string_view object);
// `text` as a JSON string literal, quotes included; control characters as
// \u00XX, invalid UTF-8 as U+FFFD.
std::string json_string(std::string_view text);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::warning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

// Failures an administrator has to fix (docs/operations.md, "Warnings"):
// logged at warning level like any warning, and also counted by kind since
// the start, for `sluicectl status`. Thread-safe (atomic counters).
enum class Alert {
  relayhost_auth,  // the relayhost refused our login (or offers no AUTH)
  tls_verify,      // a next hop's certificate did not verify where it must
  config,          // a local configuration problem found while running (reload)
};
inline constexpr size_t kAlertKinds = 3;
std::string_view to_string(Alert kind);  // "relayhost_auth", "tls_verify", "config"
void count_alert(Alert kind);
uint64_t alerts(Alert kind);  // counted since the start

template <typename... Args>
void alert(Alert kind, fmt::format_string<Args...> f, Args&&... args) {
  count_alert(kind);
  write(Level::warning, fmt::format(f, std::forward<Args>(args)...));
}

// Makes text safe for one log line: control characters and non-UTF-8 become \xNN.
std::string sanitize(std::string_view text, size_t max_len = 200);

}  // namespace sluice::log
