// dispatcher.hpp — one control request in, one response out: parses the
// line (protocol.hpp), calls the QueueAdmin (admin.hpp) and builds the answer.
//
// Pure apart from the QueueAdmin it is given: no sockets, clocks or logs;
// single-threaded like the admin (the daemon's loop thread). Never throws and
// never aborts on any input: every problem becomes an error response.
//
// Actions are all-or-nothing as to ids: every id of the request is looked up
// first, and if any is unknown the answer is an unknown_id error naming all of
// them and nothing is touched. Since the admin runs on the loop thread and
// nothing else runs in between, no message can vanish between the check and
// the action (if the admin still says no, the id is reported as "vanished").
//
// Responses (docs/control.md has the fields):
//   queue.list    {"ok":true,"messages":[summary...],"total":{messages,bytes,queued,deferred,held}}
//   queue.show    {"ok":true,"message":{detail..., "body_base64"?, "body_truncated"?}}
//   actions       {"ok":true,"action":"held","count":N,"ids":[...]}  (flush of all: no ids)
//   status        {"ok":true,"version":...,"time":...,"started":...,"uptime_seconds":...,
//                  "connections":{...},"queue":{...},"spool":{...}}
//   tls-reports.list {"ok":true,"enabled":B,"days":[{"day","domains":[{domain, rua, successful,
//                  failed, policies:[{type, ..., failures:[...]}]}]}]}
//   tls-reports.send {"ok":true,"action":"sent","count":N}
//   shaping       {"ok":true,"store":"local","sites":[{"site","source","domains","connections",
//                  "concurrency","max_concurrency","rate","tokens","automation":null or
//                  {"rate","connections","suspended","until","expires_in","reason"}}]}
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mta/control/admin.hpp"
#include "mta/control/protocol.hpp"

namespace sluice::control {

struct Outcome {
  std::string response;  // one JSON object, without the newline
  // One entry per change made, for the caller's log: "0123456789ABCDEF: held",
  // "flush of all messages: 12 messages".
  std::vector<std::string> changes;
};

Outcome handle_request(std::string_view line, QueueAdmin& admin);
// The same for a request already parsed (sluicectl's tests, the fuzzer).
Outcome dispatch(const Request& request, QueueAdmin& admin);

}  // namespace sluice::control
