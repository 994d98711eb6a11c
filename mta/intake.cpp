// intake.cpp — see intake.hpp.
#include "mta/intake.hpp"

namespace sluice::mta {

Intake::Intake(uv_loop_t* loop, queue::Spool& spool)
    : spool_(spool), inbox_(loop, [this](Committed c) { finish(std::move(c)); }) {}

Intake::~Intake() = default;

void Intake::Message::end_of_headers(const mail::Present& have, std::string_view sender) {
  if (!add_missing_) return;
  std::string add = mail::missing_fields(have, trace_, sender, &added_message_id_);
  if (!add.empty()) in_->append(add);
}

std::unique_ptr<Intake::Message> Intake::begin(Source source, mail::Trace trace) {
  auto in = spool_.begin();
  trace.id = in->id();
  if (source != Source::bounce) in->append(mail::received(trace));
  const bool add_missing = source == Source::submission ||
                           (source == Source::relay && relay_adds_missing_.load(std::memory_order_relaxed));
  return std::unique_ptr<Message>(new Message(add_missing, std::move(trace), std::move(in)));
}

void Intake::commit(std::unique_ptr<Message> message, queue::Envelope env, Done done) {
  if (env.message_id.empty()) env.message_id = message->added_message_id_;
  env.id = message->id();
  env.size = message->in_->size();
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
