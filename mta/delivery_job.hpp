// delivery_job.hpp — what mta/delivery.cpp and mta/delivery_security.cpp
// share inside Delivery: one job in flight, and the TLS-RPT report of a
// connection. Not for other users.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mta/client/client_session.hpp"
#include "mta/outbound.hpp"
#include "queue/attempt.hpp"
#include "queue/policy.hpp"
#include "queue/scheduler.hpp"
#include "sts/policy.hpp"

namespace sluice::mta {

class TlsReports;

// One job in flight: the job, the transaction to send (every recipient of
// the job; each transaction offers those the attempt still has undecided),
// and the attempt that decides.
struct JobRun {
  JobRun(queue::Job j, queue::policy::Context ctx, std::shared_ptr<const queue::Myself> myself,
         uint16_t port)
      : job(std::move(j)), attempt(job.recipients.size(), ctx, std::move(myself), port) {}
  queue::Job job;
  client::Transaction tx;
  queue::DeliveryAttempt attempt;
  // The destination's MTA-STS policy for this attempt (enforce or testing).
  std::shared_ptr<const sts::Policy> sts;
  bool mx_secure = false;   // the MX answer was DNSSEC-secure (REQUIRETLS's name check)
  bool requiretls = false;  // MAIL FROM ... REQUIRETLS (RFC 8689)
  // No MTA-STS or DANE enforcement: `TLS-Required: No` (RFC 8689 §5), or a
  // TLS-RPT report (RFC 8460 §5.3.1).
  bool relaxed = false;
  std::string sts_domain;      // the policy domain of `sts`
  bool sts_rechecked = false;  // §5.1's check before a bounce was made

  // Shaping (mta/delivery_shaping.cpp).
  std::string site;            // the destination's site, from the MX answer or the connection reused
  bool token = false;          // the site's rate admitted this attempt's message
  uint64_t lease = 0;          // a connection lease granted and not yet given to a connection
  std::optional<queue::Target> target;  // the new connection waiting for the site ...
  Protection protection;       // ... and how it must be protected
  uint64_t conn = 0;           // or: the open connection (id) waiting to carry the message
  uint64_t wait = 0;           // counts the waits: a wake-up for an older one is stale
  bool waiting = false;        // waiting for the site now (a lease, a token)
};

// TLS-RPT: counts one outgoing session's TLS outcome (mta/tls_reports.hpp)
// when it is ready (`failure` null) or failed. Only MX delivery.
void record_tls(TlsReports* reports, const OutboundShared& shared, const Outbound& o,
                const queue::policy::SessionEvent* failure);

}  // namespace sluice::mta
