// verifier.hpp — password checks off the loop thread.
//
// A crypt(3) hash takes milliseconds to hundreds of milliseconds of CPU on
// purpose; on the loop thread it would stall every connection. Verifier runs
// UserDb::find + UserDb::verify on libuv's thread pool (uv_queue_work) and
// delivers the result on the loop thread.
//
// Threads: construct, call verify(), and destroy Verifier and Pending on the
// loop thread only. The worker thread touches only the job's own copy of the
// login, the password and the shared immutable UserDb.
//
// Lifetime rules:
// - done runs on the loop thread, exactly once, after verify() has returned
//   (never from inside it) — unless the Pending handle was cancelled or
//   destroyed first, in which case done never runs and is destroyed at once
//   (whatever it captured is released in cancel()). So a Connection keeps the
//   Pending as a member: deleting the connection cancels, and done may then
//   capture the raw connection pointer. Capturing only a connection id (looked
//   up when done runs, like the spool completions) is equally fine.
// - The Verifier itself may be destroyed while checks are in flight; their
//   done callbacks still arrive. The loop must keep running until they have
//   (uv_run does: the work requests keep the loop alive). A job that started
//   hashing cannot be stopped; cancel() just drops its result.
// - The password moved into verify() is wiped on the worker thread as soon as
//   it has been hashed (or on the loop thread if the job is cancelled before
//   it ran), along with every copy made on the way.
//
// The thread pool is libuv's (UV_THREADPOOL_SIZE, default 4, shared with
// uv_fs_* and uv_getaddrinfo). max_in_flight bounds the queue: past it,
// verify() refuses at once (nullopt) and the session answers
// reply_temporary() (454 4.7.0) instead of letting a flood of AUTH attempts
// queue up without end.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <uv.h>

#include "mta/auth/users.hpp"

namespace sluice::auth {

class Verifier {
 public:
  struct Result {
    bool ok = false;
    // The file's spelling of the login when ok (logins match ignoring case),
    // else the login as the client sent it (for the log).
    std::string login;
    // When ok: the account. It shares ownership of its UserDb, so it stays
    // valid for the session even after a reload replaced the database.
    std::shared_ptr<const User> user;
  };
  using Done = std::function<void(Result)>;

  class Token;
  // The cancellation handle of one check (move-only). Destroying it cancels.
  class Pending {
   public:
    Pending() = default;
    Pending(Pending&& o) noexcept = default;
    Pending& operator=(Pending&& o) noexcept;
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    ~Pending() { cancel(); }

    // done will not run. Idempotent; harmless after done has run.
    void cancel();
    // The result is still to come (not delivered, not cancelled).
    bool active() const;

   private:
    friend class Verifier;
    explicit Pending(std::shared_ptr<Token> t) : token_(std::move(t)) {}
    std::shared_ptr<Token> token_;
  };

  static constexpr size_t kDefaultMaxInFlight = 256;
  explicit Verifier(uv_loop_t* loop, size_t max_in_flight = kDefaultMaxInFlight);
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  // Check login/password against db on the thread pool; see the rules above.
  // nullopt: max_in_flight checks are already waiting; done will not run and
  // the password has been wiped. A null db fails every check.
  std::optional<Pending> verify(std::shared_ptr<const UserDb> db, std::string login,
                                std::string password, Done done);

  // Checks queued or running whose after-work step has not run yet.
  size_t in_flight() const { return *in_flight_; }

 private:
  struct Job;
  static void work(uv_work_t* req);
  static void after_work(uv_work_t* req, int status);

  uv_loop_t* loop_;
  size_t max_in_flight_;
  std::shared_ptr<size_t> in_flight_;  // shared with the jobs, which may outlive us
};

}  // namespace sluice::auth
