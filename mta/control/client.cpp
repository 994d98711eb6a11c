// client.cpp — see client.hpp.
#include "mta/control/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "mta/control/format.hpp"

namespace sluice::control {

namespace {

using Clock = std::chrono::steady_clock;

ClientError unreachable(std::string message) {
  return ClientError{ClientError::Kind::unreachable, std::move(message)};
}
ClientError broken(std::string message) {
  return ClientError{ClientError::Kind::protocol, std::move(message)};
}

ClientError connect_error(const std::string& path, int err) {
  switch (err) {
    case ENOENT:
      return unreachable(fmt::format("no control socket at {}: is sluiced running?", path));
    case ECONNREFUSED:
      return unreachable(
          fmt::format("{}: sluiced is not running (nothing listens on the control socket)", path));
    case EACCES:
    case EPERM:
      return unreachable(fmt::format(
          "{}: permission denied (run as root, as sluiced's user, or as a member of its group)",
          path));
    default:
      return unreachable(fmt::format("{}: cannot connect: {}", path, std::strerror(err)));
  }
}

// Waits until `fd` is ready for `events` or the deadline passes. False on
// timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, int(std::min<int64_t>(left.count(), 60'000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the next call report the error
  }
}

std::string seconds(std::chrono::milliseconds t) {
  return fmt::format("{:g} s", double(t.count()) / 1000);
}

}  // namespace

std::expected<ControlClient, ClientError> ControlClient::connect(const std::string& path,
                                                                 std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return std::unexpected(unreachable(
        fmt::format("control socket path \"{}\" is empty or longer than {} bytes", path,
                    sizeof addr.sun_path - 1)));
  std::memcpy(addr.sun_path, path.data(), path.size());

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::unexpected(unreachable(fmt::format("socket: {}", std::strerror(errno))));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) {  // the daemon's backlog is full: it is busy; retry
      if (Clock::now() >= deadline) {
        ::close(fd);
        return std::unexpected(unreachable(
            fmt::format("{}: sluiced did not accept the connection within {}", path, seconds(timeout))));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (err == EINPROGRESS) {
      if (!wait_for(fd, POLLOUT, deadline)) {
        ::close(fd);
        return std::unexpected(unreachable(
            fmt::format("{}: sluiced did not accept the connection within {}", path, seconds(timeout))));
      }
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) break;
    }
    ::close(fd);
    return std::unexpected(connect_error(path, err));
  }
  return ControlClient(fd, path, timeout);
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

ControlClient::ControlClient(ControlClient&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      path_(std::move(o.path_)),
      timeout_(o.timeout_),
      buffer_(std::move(o.buffer_)) {}

ControlClient& ControlClient::operator=(ControlClient&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
    timeout_ = o.timeout_;
    buffer_ = std::move(o.buffer_);
  }
  return *this;
}

std::expected<std::string, ClientError> ControlClient::request(std::string_view line) {
  if (fd_ < 0) return std::unexpected(broken("not connected"));
  const auto deadline = Clock::now() + timeout_;
  auto timed_out = [&] {
    return unreachable(fmt::format("{}: no answer from sluiced within {}", path_, seconds(timeout_)));
  };

  std::string out;
  out.reserve(line.size() + 1);
  out.append(line);
  out += '\n';
  size_t sent = 0;
  bool write_failed = false;
  while (sent < out.size()) {
    ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      if (!wait_for(fd_, POLLOUT, deadline)) return std::unexpected(timed_out());
    } else {
      // The daemon may have answered and closed (a refused peer, too many
      // clients): read what it said before giving up.
      write_failed = true;
      break;
    }
  }

  char chunk[64 * 1024];
  for (;;) {
    if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string response = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return response;
    }
    if (buffer_.size() > kMaxResponse)
      return std::unexpected(broken(fmt::format("response from sluiced longer than {} bytes", kMaxResponse)));
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!wait_for(fd_, POLLIN, deadline)) return std::unexpected(timed_out());
      continue;
    }
    if (write_failed || n == 0)
      return std::unexpected(broken(fmt::format("{}: sluiced closed the connection without answering", path_)));
    return std::unexpected(broken(fmt::format("{}: reading the answer: {}", path_, std::strerror(errno))));
  }
}

int run_request(const std::string& socket_path, const Request& request, bool json,
                std::ostream& out, std::ostream& err, std::chrono::milliseconds timeout,
                std::string_view program) {
  auto client = ControlClient::connect(socket_path, timeout);
  if (!client) {
    err << program << ": " << client.error().message << '\n';
    return kExitUnreachable;
  }
  auto response = client->request(encode_request(request));
  if (!response) {
    err << program << ": " << response.error().message << '\n';
    return response.error().kind == ClientError::Kind::unreachable ? kExitUnreachable : kExitFailed;
  }
  return render(request, *response, json, out, err, program);
}

int list_queue(const std::string& socket_path, bool json, std::ostream& out, std::ostream& err,
               std::string_view program) {
  Request r;
  r.command = Command::list;
  return run_request(socket_path, r, json, out, err, kDefaultTimeout, program);
}

}  // namespace sluice::control
