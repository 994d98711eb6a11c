// protocol.hpp — the control socket's wire protocol, shared by the daemon
// (dispatcher.hpp) and sluicectl (client.hpp, format.hpp). docs/control.md
// describes it for people.
//
// Newline-delimited JSON over a Unix stream socket: the client writes one
// request object per line, the daemon answers each with one response object
// on one line, in order; a connection may carry any number of requests.
//
//   request   {"command":"queue.hold","ids":["0123456789ABCDEF"]}
//   response  {"ok":true,"action":"held","count":1,"ids":["0123456789ABCDEF"]}
//   error     {"ok":false,"error":"unknown_id","message":"...","ids":[...]}
//
// Pure: no I/O, no clock, no logs. parse_request() never throws and accepts
// any bytes: malformed JSON, wrong types, unknown commands or fields, too many
// ids and too deep nesting all come back as an Error. Strings we send may hold
// bytes that are not UTF-8 (SMTPUTF8 addresses, remote replies): they are
// serialised with invalid sequences replaced by U+FFFD, so a response is always
// valid JSON; message content travels as base64, unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/envelope.hpp"
#include "queue/scheduler.hpp"

namespace sluice::control {

// Building responses keeps the field order below (ordered_json); reading them
// back does not need it.
using Json = nlohmann::ordered_json;

// Limits (docs/control.md "Limits").
inline constexpr size_t kMaxRequestLine = 1024 * 1024;  // bytes, without the newline
inline constexpr size_t kMaxIds = 50'000;               // ids in one request
inline constexpr int kMaxDepth = 8;                     // nesting of arrays and objects
inline constexpr uint64_t kMaxBodyBytes = 64ull * 1024 * 1024;  // content sent by queue.show

enum class Command : uint8_t {
  list, show, remove, hold, release, flush, bounce, status, tls_reports, tls_reports_send, shaping
};
// The wire name: "queue.list", "queue.show", "queue.delete", "queue.hold",
// "queue.release", "queue.flush", "queue.bounce", "status", "tls-reports.list",
// "tls-reports.send", "shaping".
std::string_view to_string(Command c);
std::optional<Command> parse_command_name(std::string_view name);

struct Request {
  Command command = Command::status;
  std::optional<queue::MessageState> state;  // queue.list: only this state
  std::string id;                            // queue.show
  bool body = false;                         // queue.show: add the content
  // Actions: the ids, upper-cased, duplicates dropped, in the order given.
  // queue.flush with none flushes every message.
  std::vector<std::string> ids;
  bool all = false;                          // queue.delete: every message
  bool include_today = false;                // tls-reports.send: the current UTC day too
};

enum class ErrorCode : uint8_t {
  bad_json,           // the line is not one JSON object
  bad_request,        // a field is missing, of the wrong type, or not allowed
  unknown_command,
  unknown_id,         // ids: every id that is not in the queue; nothing was done
  too_many_ids,       // more than kMaxIds
  line_too_long,      // more than kMaxRequestLine bytes without a newline
  permission_denied,  // the peer may not use the socket (docs/control.md)
  busy,               // too many control clients at once
  io_error,           // the daemon could not read a message's content
  internal,           // a bug; the request may or may not have been applied
};
std::string_view to_string(ErrorCode c);

struct Error {
  ErrorCode code = ErrorCode::bad_request;
  std::string message;
  std::vector<std::string> ids;  // unknown_id only
};

// Never throws.
std::expected<Request, Error> parse_request(std::string_view line);
// The line a client sends for `r` (without the newline).
std::string encode_request(const Request& r);

// A response object as one line (no newline), any invalid UTF-8 replaced.
std::string dump(const Json& j);
std::string error_response(const Error& e);

// RFC 3339 in UTC with whole seconds, "2026-12-03T06:02:23Z".
std::string rfc3339(int64_t us);

// A message as queue.list shows it: id, state, size, arrival_time,
// next_attempt (null when held; the arrival time when due at once), attempts,
// sender, recipients [{address, status, last_reply}], last_error (the newest
// reply of a deferred recipient, or null). append_summary() writes the JSON
// text straight into `out` (a list of 10,000 messages is built this way, with
// no JSON tree in between); message_summary() is the same as a value.
void append_summary(std::string& out, const queue::Envelope& env);
Json message_summary(const queue::Envelope& env);
// queue.show: the summary plus every envelope field, per-recipient delivery
// state and the attempt history (docs/control.md).
Json message_detail(const queue::Envelope& env);

// `s` as a JSON string literal (quoted, escaped), each invalid UTF-8 byte
// replaced by U+FFFD as dump() does.
void append_json_string(std::string& out, std::string_view s);

// The newest last_reply among deferred recipients; "" when none is deferred.
std::string last_error(const queue::Envelope& env);

}  // namespace sluice::control
