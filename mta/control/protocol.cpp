// protocol.cpp — see protocol.hpp.
#include "mta/control/protocol.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <unordered_set>

namespace sluice::control {

namespace {

constexpr std::array<std::string_view, 11> kCommandNames = {
    "queue.list",    "queue.show",   "queue.delete", "queue.hold",       "queue.release",
    "queue.flush",   "queue.bounce", "status",       "tls-reports.list", "tls-reports.send",
    "shaping"};

// The deepest nesting of arrays and objects outside strings. A cheap scan
// before parsing, so that hostile input like 100,000 '[' never reaches the
// parser (or the recursive destruction of what it built).
int nesting_depth(std::string_view s) {
  int depth = 0, max = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max = std::max(max, ++depth);
      if (max > kMaxDepth) return max;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max;
}

Error bad(std::string message) { return Error{ErrorCode::bad_request, std::move(message), {}}; }

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Queue ids are upper-case hex; accept them typed in lower case too.
std::string normalize_id(std::string id) {
  if (id.size() == 16 && std::all_of(id.begin(), id.end(), is_hex))
    for (char& c : id)
      if (c >= 'a' && c <= 'f') c = char(c - 'a' + 'A');
  return id;
}

// Fields each command allows besides "command".
bool field_allowed(Command c, std::string_view key) {
  switch (c) {
    case Command::list: return key == "state";
    case Command::show: return key == "id" || key == "body";
    case Command::remove: return key == "ids" || key == "all";
    case Command::hold:
    case Command::release:
    case Command::flush:
    case Command::bounce: return key == "ids";
    case Command::status: return false;
    case Command::tls_reports: return false;
    case Command::shaping: return false;
    case Command::tls_reports_send: return key == "include_today";
  }
  return false;
}

std::expected<std::vector<std::string>, Error> parse_ids(const nlohmann::json& v) {
  if (!v.is_array()) return std::unexpected(bad("\"ids\" must be an array of queue ids"));
  if (v.size() > kMaxIds)
    return std::unexpected(Error{ErrorCode::too_many_ids,
                                 fmt::format("{} ids in one request; at most {}", v.size(), kMaxIds),
                                 {}});
  std::vector<std::string> ids;
  ids.reserve(v.size());
  std::unordered_set<std::string> seen;
  seen.reserve(v.size());
  for (const auto& e : v) {
    if (!e.is_string()) return std::unexpected(bad("\"ids\" must be an array of queue ids"));
    std::string id = normalize_id(e.get<std::string>());
    if (seen.insert(id).second) ids.push_back(std::move(id));
  }
  return ids;
}

std::expected<Request, Error> parse_object(const nlohmann::json& j) {
  if (!j.is_object()) return std::unexpected(bad("a request is one JSON object"));
  auto cmd = j.find("command");
  if (cmd == j.end() || !cmd->is_string())
    return std::unexpected(bad("\"command\" (a string) is missing"));
  const auto& name = cmd->get_ref<const std::string&>();
  auto c = parse_command_name(name);
  if (!c)
    return std::unexpected(Error{ErrorCode::unknown_command,
                                 fmt::format("unknown command \"{}\"", name.substr(0, 64)),
                                 {}});
  Request r;
  r.command = *c;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "command" && !field_allowed(*c, it.key()))
      return std::unexpected(bad(fmt::format("field \"{}\" is not allowed in {}",
                                             it.key().substr(0, 64), to_string(*c))));

  if (auto s = j.find("state"); s != j.end()) {
    if (!s->is_string()) return std::unexpected(bad("\"state\" must be queued, deferred or held"));
    const auto& v = s->get_ref<const std::string&>();
    if (v == "queued") r.state = queue::MessageState::queued;
    else if (v == "deferred") r.state = queue::MessageState::deferred;
    else if (v == "held") r.state = queue::MessageState::held;
    else return std::unexpected(bad("\"state\" must be queued, deferred or held"));
  }
  if (r.command == Command::show) {
    auto id = j.find("id");
    if (id == j.end() || !id->is_string())
      return std::unexpected(bad("queue.show needs \"id\" (a string)"));
    r.id = normalize_id(id->get<std::string>());
    if (auto b = j.find("body"); b != j.end()) {
      if (!b->is_boolean()) return std::unexpected(bad("\"body\" must be true or false"));
      r.body = b->get<bool>();
    }
  }
  if (auto t = j.find("include_today"); t != j.end()) {
    if (!t->is_boolean()) return std::unexpected(bad("\"include_today\" must be true or false"));
    r.include_today = t->get<bool>();
  }
  if (auto a = j.find("all"); a != j.end()) {
    if (!a->is_boolean()) return std::unexpected(bad("\"all\" must be true or false"));
    r.all = a->get<bool>();
  }
  if (auto v = j.find("ids"); v != j.end()) {
    auto ids = parse_ids(*v);
    if (!ids) return std::unexpected(std::move(ids.error()));
    r.ids = std::move(*ids);
  }
  switch (r.command) {
    case Command::remove:
      // Both fields present is a contradiction whatever their values
      // ({"ids":[],"all":true} too): nothing is touched.
      if (j.contains("all") && j.contains("ids"))
        return std::unexpected(bad("queue.delete takes \"ids\" or \"all\", not both"));
      if (!r.all && r.ids.empty())
        return std::unexpected(bad("queue.delete needs \"ids\" or \"all\": true"));
      break;
    case Command::hold:
    case Command::release:
    case Command::bounce:
      if (r.ids.empty())
        return std::unexpected(bad(fmt::format("{} needs \"ids\"", to_string(r.command))));
      break;
    default: break;
  }
  return r;
}

const char* body_type_name(queue::BodyType b) {
  switch (b) {
    case queue::BodyType::seven_bit: return "7BIT";
    case queue::BodyType::eight_bit_mime: return "8BITMIME";
    case queue::BodyType::unspecified: break;
  }
  return nullptr;
}

Json or_null(const char* s) { return s ? Json(s) : Json(nullptr); }

Json optional_time(int64_t us) { return us > 0 ? Json(rfc3339(us)) : Json(nullptr); }

Json notify_flags(uint8_t n) {
  Json a = Json::array();
  if (n & 1) a.push_back("success");
  if (n & 2) a.push_back("failure");
  if (n & 4) a.push_back("delay");
  if (n & 8) a.push_back("never");
  return a;
}

// The length of the valid UTF-8 sequence starting at s[i] (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF); 0 when invalid.
size_t utf8_length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (i + n > s.size()) return 0;
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (c1 < lo || c1 > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    const auto ck = static_cast<unsigned char>(s[i + k]);
    if (ck < 0x80 || ck > 0xBF) return 0;
  }
  return n;
}

// RFC 3339 in UTC, whole seconds. A list formats two times per message and
// most fall on a few days, so the date part is cached per day (gmtime_r
// takes a lock and is slow by comparison).
void append_rfc3339(std::string& out, int64_t us) {
  constexpr int64_t kMaxSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z
  int64_t secs = us / 1'000'000;
  if (us % 1'000'000 < 0) --secs;
  secs = std::clamp<int64_t>(secs, 0, kMaxSeconds);
  const int64_t day = secs / 86'400;
  const auto sod = static_cast<unsigned>(secs % 86'400);
  struct DateCache {
    int64_t day = -1;
    char text[10];
  };
  thread_local std::array<DateCache, 8> cache;
  DateCache& slot = cache[static_cast<size_t>(day) & 7];
  if (slot.day != day) {
    time_t t = static_cast<time_t>(day * 86'400);
    struct tm tm {};
    gmtime_r(&t, &tm);
    fmt::format_to_n(slot.text, sizeof slot.text, "{:04}-{:02}-{:02}", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday);
    slot.day = day;
  }
  char buf[20];
  std::memcpy(buf, slot.text, 10);
  const unsigned h = sod / 3600, m = sod / 60 % 60, s = sod % 60;
  buf[10] = 'T';
  buf[11] = char('0' + h / 10), buf[12] = char('0' + h % 10), buf[13] = ':';
  buf[14] = char('0' + m / 10), buf[15] = char('0' + m % 10), buf[16] = ':';
  buf[17] = char('0' + s / 10), buf[18] = char('0' + s % 10), buf[19] = 'Z';
  out.append(buf, sizeof buf);
}

void append_time(std::string& out, int64_t us) {
  out += '"';
  append_rfc3339(out, us);
  out += '"';
}

}  // namespace

std::string_view to_string(Command c) { return kCommandNames[static_cast<size_t>(c)]; }

std::optional<Command> parse_command_name(std::string_view name) {
  for (size_t i = 0; i < kCommandNames.size(); ++i)
    if (kCommandNames[i] == name) return static_cast<Command>(i);
  return std::nullopt;
}

std::string_view to_string(ErrorCode c) {
  switch (c) {
    case ErrorCode::bad_json: return "bad_json";
    case ErrorCode::bad_request: return "bad_request";
    case ErrorCode::unknown_command: return "unknown_command";
    case ErrorCode::unknown_id: return "unknown_id";
    case ErrorCode::too_many_ids: return "too_many_ids";
    case ErrorCode::line_too_long: return "line_too_long";
    case ErrorCode::permission_denied: return "permission_denied";
    case ErrorCode::busy: return "busy";
    case ErrorCode::io_error: return "io_error";
    case ErrorCode::internal: return "internal";
  }
  return "internal";
}

std::expected<Request, Error> parse_request(std::string_view line) {
  if (line.size() > kMaxRequestLine)
    return std::unexpected(Error{ErrorCode::line_too_long,
                                 fmt::format("request longer than {} bytes", kMaxRequestLine),
                                 {}});
  if (nesting_depth(line) > kMaxDepth)
    return std::unexpected(Error{ErrorCode::bad_json,
                                 fmt::format("JSON nested deeper than {} levels", kMaxDepth), {}});
  try {
    // A key given twice in one object is refused, not "last one wins":
    // {"command":"status","command":"queue.delete","all":true} must not
    // delete anything. The parser reports every key; one set per open object.
    std::vector<std::unordered_set<std::string>> open_objects;
    std::string duplicate;
    nlohmann::json::parser_callback_t on_event =
        [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          using E = nlohmann::json::parse_event_t;
          if (event == E::object_start) {
            open_objects.emplace_back();
          } else if (event == E::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
          } else if (event == E::key && !open_objects.empty() && duplicate.empty()) {
            const auto& k = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(k).second) duplicate = k;
          }
          return true;
        };
    auto j = nlohmann::json::parse(line, on_event, /*allow_exceptions=*/false);
    if (j.is_discarded())
      return std::unexpected(Error{ErrorCode::bad_json, "not valid JSON", {}});
    if (!duplicate.empty())
      return std::unexpected(Error{
          ErrorCode::bad_request,
          fmt::format("field \"{}\" is given more than once", duplicate.substr(0, 64)), {}});
    return parse_object(j);
  } catch (const std::exception&) {  // not expected; never let one out
    return std::unexpected(Error{ErrorCode::bad_json, "not a valid request", {}});
  }
}

std::string encode_request(const Request& r) {
  Json j;
  j["command"] = to_string(r.command);
  switch (r.command) {
    case Command::list:
      if (r.state) j["state"] = queue::to_string(*r.state);
      break;
    case Command::show:
      j["id"] = r.id;
      if (r.body) j["body"] = true;
      break;
    case Command::remove:
      if (r.all) j["all"] = true;
      else j["ids"] = r.ids;
      break;
    case Command::hold:
    case Command::release:
    case Command::bounce:
    case Command::flush:
      if (!r.ids.empty() || r.command != Command::flush) j["ids"] = r.ids;
      break;
    case Command::status: break;
    case Command::tls_reports: break;
    case Command::shaping: break;
    case Command::tls_reports_send:
      if (r.include_today) j["include_today"] = true;
      break;
  }
  return dump(j);
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string error_response(const Error& e) {
  Json j;
  j["ok"] = false;
  j["error"] = to_string(e.code);
  j["message"] = e.message;
  if (e.code == ErrorCode::unknown_id) j["ids"] = e.ids;
  return dump(j);
}

std::string rfc3339(int64_t us) {
  std::string out;
  append_rfc3339(out, us);
  return out;
}

std::string last_error(const queue::Envelope& env) {
  const queue::Recipient* newest = nullptr;
  for (const auto& r : env.recipients)
    if (r.status == queue::RcptStatus::deferred && !r.last_reply.empty() &&
        (!newest || r.last_attempt_us >= newest->last_attempt_us))
      newest = &r;
  return newest ? newest->last_reply : std::string();
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0;  // s[run, i) is waiting to be copied as is
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    size_t n = c >= 0x80 ? utf8_length(s, i) : 0;
    if (n > 0) {
      i += n;
      continue;
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is not UTF-8
        }
    }
    run = ++i;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_summary(std::string& out, const queue::Envelope& env) {
  const auto state = queue::state_of(env);
  out += "{\"id\":";
  append_json_string(out, env.id);
  out += ",\"state\":\"";
  out += queue::to_string(state);
  out += "\",\"size\":";
  out += std::to_string(env.size);
  out += ",\"arrival_time\":";
  append_time(out, env.arrival_us);
  out += ",\"next_attempt\":";
  if (state == queue::MessageState::held)
    out += "null";
  else
    append_time(out, env.next_attempt_us == 0 ? env.arrival_us : env.next_attempt_us);
  out += ",\"attempts\":";
  out += std::to_string(env.attempts);
  out += ",\"sender\":";
  append_json_string(out, env.sender);
  out += ",\"recipients\":[";
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    const auto& r = env.recipients[i];
    out += i ? ",{\"address\":" : "{\"address\":";
    append_json_string(out, r.address);
    out += ",\"status\":\"";
    out += queue::to_string(r.status);
    out += "\",\"last_reply\":";
    append_json_string(out, r.last_reply);
    out += '}';
  }
  out += "],\"last_error\":";
  std::string err = last_error(env);
  if (err.empty())
    out += "null";
  else
    append_json_string(out, err);
  out += '}';
}

Json message_summary(const queue::Envelope& env) {
  std::string text;
  append_summary(text, env);
  return Json::parse(text);
}

Json message_detail(const queue::Envelope& env) {
  // The summary's fields come from the one place that writes them
  // (append_summary); the rest is added here.
  Json j = message_summary(env);
  j["held"] = env.held;
  j["message_id"] = env.message_id;
  j["client_address"] = env.client_address;
  j["helo"] = env.helo;
  j["auth_user"] = env.auth_user;
  j["body_type"] = or_null(body_type_name(env.body));
  j["smtputf8"] = env.smtputf8;
  j["requiretls"] = env.requiretls;
  j["tls_optional"] = env.tls_optional;
  j["envid"] = env.envid;
  j["ret"] = or_null(env.ret == 1 ? "FULL" : env.ret == 2 ? "HDRS" : nullptr);
  Json& rs = j["recipients"];
  for (size_t i = 0; i < env.recipients.size() && i < rs.size(); ++i) {
    const auto& r = env.recipients[i];
    Json& x = rs[i];
    x["attempts"] = r.attempts;
    x["last_attempt"] = optional_time(r.last_attempt_us);
    x["dsn_status"] = r.dsn_status;
    x["remote_host"] = r.remote_host;
    x["tls"] = queue::to_string(r.tls);
    x["orcpt"] = r.orcpt;
    x["notify"] = notify_flags(r.notify);
  }
  Json hs = Json::array();
  for (const auto& a : env.history) {
    Json x;
    x["time"] = rfc3339(a.time_us);
    if (a.recipient >= 0 && size_t(a.recipient) < env.recipients.size())
      x["recipient"] = env.recipients[size_t(a.recipient)].address;
    else
      x["recipient"] = nullptr;
    x["host"] = a.host;
    x["reply"] = a.reply;
    hs.push_back(std::move(x));
  }
  j["history"] = std::move(hs);
  return j;
}

}  // namespace sluice::control
