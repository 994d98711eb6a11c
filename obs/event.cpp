// event.cpp — rendering and handing out the events of event.hpp.
#include "obs/event.hpp"

#include <time.h>

#include <nlohmann/json.hpp>
#include <vector>

#include <fmt/format.h>

#include "conf/log.hpp"

namespace sluice::obs {

namespace {

constexpr std::string_view kNames[kEventTypes] = {"reception", "delivery", "deferral", "bounce",
                                                  "expiry",    "rejection", "admin"};

// Loop thread only (event.hpp).
std::vector<Sink>& sinks() {
  static std::vector<Sink> s;
  return s;
}

std::string rfc3339(int64_t time_us) {
  time_t secs = static_cast<time_t>(time_us / 1000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (time_us % 1000000) / 1000);
}

}  // namespace

std::string_view to_string(EventType type) { return kNames[static_cast<size_t>(type)]; }

std::optional<EventType> event_type_from(std::string_view name) {
  for (size_t i = 0; i < kEventTypes; ++i)
    if (kNames[i] == name) return static_cast<EventType>(i);
  return std::nullopt;
}

std::string to_json(const Event& e) {
  nlohmann::ordered_json j;
  j["type"] = to_string(e.type);
  j["time"] = rfc3339(e.time_us);
  j["id"] = e.id;
  j["sender"] = e.sender;
  j["recipient"] = e.recipient;
  if (e.response.code != 0)
    j["response"] = {{"code", e.response.code}, {"enhanced_code", e.response.enhanced_code}, {"text", e.response.text}};
  else
    j["response"] = nullptr;
  j["peer"] = {{"name", e.peer_name}, {"address", e.peer_address}};
  j["tls"] = e.tls;
  j["delay"] = e.delay;
  j["attempts"] = e.attempts;
  if (!e.source.empty()) j["source"] = e.source;
  if (!e.action.empty()) j["action"] = e.action;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void add_sink(Sink sink) { sinks().push_back(std::move(sink)); }
void clear_sinks() { sinks().clear(); }

void emit(std::span<const Event> events, std::string_view text) {
  if (log::format() == log::Format::json) {
    if (log::enabled(log::Level::info))
      for (const auto& e : events) log::write_object(log::Level::info, to_json(e));
  } else if (!text.empty()) {
    log::write(log::Level::info, text);
  }
  for (const auto& sink : sinks())
    for (const auto& e : events) sink(e);
}

}  // namespace sluice::obs
