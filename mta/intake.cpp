// intake.cpp — see intake.hpp.
#include "mta/intake.hpp"

#include <ctime>

#include "conf/log.hpp"

namespace sluice::mta {

// A message being signed on the thread pool; freed in the after-work
// callback, on the loop.
struct Intake::SignJob {
  uv_work_t req{};
  Intake* intake = nullptr;
  std::unique_ptr<Message> message;
  queue::Envelope env;
  Done done;
  SignPlan plan;
  Signatures result;
};

Intake::Intake(uv_loop_t* loop, queue::Spool& spool)
    : loop_(loop),
      loop_thread_(std::this_thread::get_id()),
      spool_(spool),
      inbox_(loop, [this](Committed c) { finish(std::move(c)); }) {}

Intake::~Intake() = default;

void Intake::Message::end_of_headers(const mail::Present& have, std::string_view sender) {
  if (!add_missing_) return;
  std::string add = mail::missing_fields(have, trace_, sender, &added_message_id_);
  if (!add.empty()) append(add);
}

std::unique_ptr<Intake::Message> Intake::begin(Source source, mail::Trace trace) {
  auto in = spool_.begin();
  trace.id = in->id();
  if (source != Source::bounce) in->append(mail::received(trace));
  const bool add_missing = source == Source::submission ||
                           (source == Source::relay && relay_adds_missing_.load(std::memory_order_relaxed));
  std::unique_ptr<Message> m(new Message(add_missing, std::move(trace), std::move(in)));
  if (source != Source::bounce) m->tls_scan_.emplace();
  if (source != Source::bounce) {
    auto signing = signing_.load();
    if (signing && !signing->empty()) {
      m->signing_ = std::move(signing);
      m->scan_ = std::make_unique<dkim::Scan>();
    }
  }
  return m;
}

Signatures Intake::sign_now(Message& m, const SignPlan& plan) {
  Signatures s = sign(plan, *m.scan_, static_cast<int64_t>(std::time(nullptr)));
  if (!s.fields.empty()) m.in_->prepend(s.fields);
  return s;
}

void Intake::log_signed(const std::string& id, const Signatures& s) {
  for (const auto& f : s.failures) log::error("{}: dkim signing failed: {}", id, f);
  std::string what;
  for (const auto& w : s.signed_by) what += (what.empty() ? "" : ", ") + w;
  for (const auto& w : s.already) what += (what.empty() ? "" : ", ") + w + " (already signed)";
  if (!what.empty()) log::info("{}: dkim signed {}", id, what);
}

void Intake::commit(std::unique_ptr<Message> message, queue::Envelope env, Done done) {
  if (message->scan_) {
    SignPlan p = plan(std::move(message->signing_), *message->scan_, message->rule_);
    if (!p.why_not.empty()) log::info("{}: dkim not signed: {}", message->id(), log::sanitize(p.why_not));
    if (!p.signers.empty()) {
      if (std::this_thread::get_id() != loop_thread_) {
        log_signed(message->id(), sign_now(*message, p));  // on the pool already
      } else {
        auto* job = new SignJob{};
        job->req.data = job;
        job->intake = this;
        job->message = std::move(message);
        job->env = std::move(env);
        job->done = std::move(done);
        job->plan = std::move(p);
        ++jobs_;
        uv_queue_work(
            loop_, &job->req,
            [](uv_work_t* r) {
              auto* j = static_cast<SignJob*>(r->data);
              j->result = sign_now(*j->message, j->plan);
            },
            [](uv_work_t* r, int) {
              std::unique_ptr<SignJob> j(static_cast<SignJob*>(r->data));
              log_signed(j->message->id(), j->result);
              j->intake->commit_now(std::move(j->message), std::move(j->env), std::move(j->done));
              j->intake->job_done();
            });
        return;
      }
    }
  }
  commit_now(std::move(message), std::move(env), std::move(done));
}

void Intake::job_done() {
  if (--jobs_ > 0) return;
  auto waiting = std::move(drained_);
  drained_.clear();
  for (auto& f : waiting) f();
}

void Intake::drain(std::function<void()> done) {
  if (jobs_ == 0) {
    done();
    return;
  }
  drained_.push_back(std::move(done));
}

void Intake::commit_now(std::unique_ptr<Message> message, queue::Envelope env, Done done) {
  if (env.message_id.empty()) env.message_id = message->added_message_id_;
  env.id = message->id();
  env.size = message->in_->size();
  if (message->tls_scan_ && message->tls_scan_->tls_required_no()) {
    // RFC 8689 §4.1: MAIL's REQUIRETLS wins over the header field.
    if (env.requiretls) {
      log::info("{}: TLS-Required: No ignored: the message was sent with REQUIRETLS", env.id);
    } else {
      env.tls_optional = true;
      log::info("{}: TLS-Required: No: MTA-STS and DANE will not be enforced for this message",
                env.id);
    }
  } else if (env.requiretls) {
    log::info("{}: REQUIRETLS: delivery only over authenticated TLS to a REQUIRETLS server", env.id);
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  // The spool's writer thread runs this, once; it only posts (queue/spool.hpp).
  Committed c{false, env, std::move(done)};
  message->in_->commit(std::move(env), [this, c = std::move(c)](bool ok) mutable {
    c.ok = ok;
    inbox_.post(std::move(c));
  });
}

void Intake::finish(Committed c) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (c.ok && deliver_) deliver_(c.env);
  if (c.done) c.done(c.ok, c.env);
}

}  // namespace sluice::mta
