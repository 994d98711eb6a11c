// format.hpp — sluicectl's output for people, rendered from the daemon's
// responses (protocol.hpp, docs/control.md has examples).
//
// Pure: strings in, strings out; no I/O apart from the ostreams render()
// is handed. Robust against any response shape (a daemon of another version,
// a field missing or of another type): missing values show as "-", nothing
// throws. Text from the network (addresses, replies) is printed with control
// characters escaped as \xNN, so a hostile reply cannot drive the terminal.
// Times are shown in UTC.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "mta/control/protocol.hpp"

namespace sluice::control {

// sluicectl's exit codes (docs/control.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;       // the daemon refused or failed the request (unknown id, ...)
inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitUnreachable = 3;  // no daemon, no socket, permission denied, busy, timeout

// queue.list: one row per message (id, state, size, arrival, next attempt,
// sender), its recipients below (with their status when not pending), the
// last error in parentheses, and a total line; "Mail queue is empty" when
// there is nothing (or "No held messages" when `state` filtered the list).
std::string format_list(const nlohmann::json& response, std::optional<std::string_view> state = {});
// queue.show: the envelope, per-recipient state, the attempt history, and the
// content when the response carries it (CRLF shown as LF).
std::string format_show(const nlohmann::json& response);
// status: version, uptime, connections, queue counts, spool counters.
std::string format_status(const nlohmann::json& response);
// Actions: one line per id ("0123456789ABCDEF: held"), or a count for a
// flush of every message.
std::string format_action(const nlohmann::json& response);
// tls-reports.list: one line per day and policy domain (sessions that
// succeeded and failed, where reports go), then one per kind of failure.
std::string format_tls_reports(const nlohmann::json& response);
// shaping: where the limits live ("this node only", "shared through redis
// ..."), then one block per active site: its name and source, the domains
// seen using it, connections and concurrency, the rate and tokens left, and
// the automation in force with its expiry; "no active sites" when none.
std::string format_shaping(const nlohmann::json& response);
// The message of an error response, one line.
std::string format_error(const nlohmann::json& response);

// Escapes control characters (C0, DEL, C1) as \xNN.
std::string printable(std::string_view s);

// What sluicectl prints for one response line to `request`: with `json` the
// line itself on `out`, else the rendering above. Errors go to `err` as
// "PROGRAM: message". Returns the exit code (kExit* above).
int render(const Request& request, std::string_view response_line, bool json, std::ostream& out,
           std::ostream& err, std::string_view program = "sluicectl");

}  // namespace sluice::control
