// log.hpp — one line per event, written atomically to standard error.
//
// Each line: "2026-11-26T13:56:01.123Z sluiced[PID]: LEVEL: TEXT". Callers put
// the queue or session id first and key=value fields after, e.g.
//   log::info("{}: accept from=<{}> size={} nrcpt={}", qid, from, size, n);
// Thread-safe (one write(2) per line). Never pass passwords or AUTH payloads.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace sluice::log {

enum class Level { debug, info, warning, error };

void set_program(std::string_view name);
void set_min_level(Level level);
bool enabled(Level level);
void write(Level level, std::string_view text);

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

// Makes text safe for one log line: control characters and non-UTF-8 become \xNN.
std::string sanitize(std::string_view text, size_t max_len = 200);

}  // namespace sluice::log
