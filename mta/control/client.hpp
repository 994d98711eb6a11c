// client.hpp — the blocking client side of the control socket, for sluicectl
// and sluice-sendmail's mailq mode.
//
// ControlClient connects to the daemon's Unix socket (with a deadline),
// writes request lines and reads one response line per request. Every wait
// (connect, write, read) is bounded by the timeout given to connect(), which
// counts afresh for each request. Failures come back as a ClientError whose
// message says what to do ("is sluiced running?", "permission denied ...").
// Not thread-safe; one instance per thread. SIGPIPE is never raised (writes
// use MSG_NOSIGNAL).
#pragma once

#include <chrono>
#include <expected>
#include <ostream>
#include <string>
#include <string_view>

#include "mta/control/protocol.hpp"

namespace sluice::control {

inline constexpr std::chrono::milliseconds kDefaultTimeout{30'000};
// A response longer than this is refused (a list of 10,000 messages is a few
// MB).
inline constexpr size_t kMaxResponse = 1024ull * 1024 * 1024;

struct ClientError {
  enum class Kind {
    unreachable,  // no socket, nobody listening, permission denied, timeout
    protocol,     // the connection broke or the answer was not one line
  };
  Kind kind = Kind::unreachable;
  std::string message;
};

class ControlClient {
 public:
  static std::expected<ControlClient, ClientError> connect(
      const std::string& socket_path, std::chrono::milliseconds timeout = kDefaultTimeout);
  ~ControlClient();
  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&& other) noexcept;
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `line` (a newline is added) and returns the response line without
  // its newline.
  std::expected<std::string, ClientError> request(std::string_view line);

 private:
  ControlClient(int fd, std::string path, std::chrono::milliseconds timeout)
      : fd_(fd), path_(std::move(path)), timeout_(timeout) {}
  int fd_ = -1;
  std::string path_;
  std::chrono::milliseconds timeout_;
  std::string buffer_;  // bytes read past the last response
};

// Connects, sends `request`, and renders the answer (format.hpp render()).
// Returns the exit code (format.hpp kExit*): kExitUnreachable when the daemon
// cannot be reached, with the reason on `err`.
int run_request(const std::string& socket_path, const Request& request, bool json,
                std::ostream& out, std::ostream& err,
                std::chrono::milliseconds timeout = kDefaultTimeout,
                std::string_view program = "sluicectl");

// `mailq`: the queue listing of `sluicectl queue list` (with json, its JSON).
int list_queue(const std::string& socket_path, bool json, std::ostream& out, std::ostream& err,
               std::string_view program = "mailq");

}  // namespace sluice::control
