// verifier.cpp — UserDb::verify on libuv's thread pool.
//
// One heap Job per check, owned by libuv from uv_queue_work until after_work,
// which always runs on the loop thread (status UV_ECANCELED when uv_cancel
// took the job out of the queue before a worker picked it up) and frees it.
// A Pending reaches its job through a Token whose job pointer after_work
// clears, so a handle outliving its job finds nothing to cancel.
//
// Which thread touches what:
//   worker:  db, login, password, ok, user   (between uv_queue_work and after_work;
//            libuv orders the worker's writes before after_work's reads)
//   loop:    done, token, counter, and everything in after_work
// Exceptions: none crosses a C callback. The worker catches everything (a
// failed check); an exception escaping done aborts through uv::guard, as
// one escaping any loop callback does.
#include "mta/auth/verifier.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "mta/auth/secret.hpp"
#include "mta/uv/guard.hpp"

namespace sluice::auth {

class Verifier::Token {
 public:
  Job* job = nullptr;  // null once after_work has run
};

struct Verifier::Job {
  uv_work_t req{};
  // Worker side.
  std::shared_ptr<const UserDb> db;
  std::string login;
  std::string password;
  bool ok = false;
  const User* user = nullptr;
  // Loop side.
  Done done;
  std::shared_ptr<Token> token;
  std::shared_ptr<size_t> counter;
  bool cancelled = false;

  ~Job() { wipe(password); }
};

Verifier::Verifier(uv_loop_t* loop, size_t max_in_flight)
    : loop_(loop), max_in_flight_(max_in_flight), in_flight_(std::make_shared<size_t>(0)) {}

std::optional<Verifier::Pending> Verifier::verify(std::shared_ptr<const UserDb> db,
                                                  std::string login, std::string password,
                                                  Done done) {
  if (*in_flight_ >= max_in_flight_) {
    wipe(password);
    return std::nullopt;
  }
  auto job = std::make_unique<Job>();
  job->req.data = job.get();
  job->db = std::move(db);
  job->login = std::move(login);
  job->password = std::move(password);
  wipe(password);  // a short string is copied by a move, and the copy stays here
  job->done = std::move(done);
  job->counter = in_flight_;
  auto token = std::make_shared<Token>();
  token->job = job.get();
  job->token = token;

  const int rc = uv_queue_work(loop_, &job->req, &Verifier::work, &Verifier::after_work);
  if (rc != 0) {
    // Only possible with a null work callback: a broken invariant.
    std::fprintf(stderr, "sluice: uv_queue_work failed: %s\n", uv_strerror(rc));
    std::abort();
  }
  ++*in_flight_;
  job.release();  // libuv's until after_work
  return Pending(std::move(token));
}

void Verifier::work(uv_work_t* req) {
  Job* job = static_cast<Job*>(req->data);
  try {
    if (job->db) {
      job->user = job->db->find(job->login);
      job->ok = job->db->verify(job->user, job->password);
    }
  } catch (...) {
    job->ok = false;
  }
  if (!job->ok) job->user = nullptr;
  wipe(job->password);
}

void Verifier::after_work(uv_work_t* req, int status) {
  std::unique_ptr<Job> job(static_cast<Job*>(req->data));
  --*job->counter;
  wipe(job->password);  // not yet wiped if the job never ran
  job->token->job = nullptr;
  if (status != 0 || job->cancelled || !job->done) return;

  Result result;
  result.ok = job->ok;
  if (job->ok && job->user != nullptr) {
    result.login = job->user->login;
    result.user = std::shared_ptr<const User>(job->db, job->user);
  } else {
    result.ok = false;
    result.login = std::move(job->login);
  }
  Done done = std::move(job->done);
  job.reset();
  uv::guard("password check callback", [&] { done(std::move(result)); });
}

Verifier::Pending& Verifier::Pending::operator=(Pending&& o) noexcept {
  if (this != &o) {
    cancel();
    token_ = std::move(o.token_);
  }
  return *this;
}

void Verifier::Pending::cancel() {
  if (!token_) return;
  if (Job* job = token_->job) {
    job->cancelled = true;
    // Out of the queue if no worker has it yet (then after_work sees
    // UV_ECANCELED and the password is wiped without being hashed); UV_EBUSY
    // when it is running or done, and then its result is simply dropped.
    (void)uv_cancel(reinterpret_cast<uv_req_t*>(&job->req));
    job->done = nullptr;
  }
  token_.reset();
}

bool Verifier::Pending::active() const { return token_ && token_->job != nullptr; }

}  // namespace sluice::auth
