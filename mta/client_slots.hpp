// client_slots.hpp — per-client-address caps on expensive work. Pure
// bookkeeping: no I/O, no clock.
//
// The SMTP server (mta/server.cpp) keeps two of these: one for TLS
// handshakes in progress, one for password checks (queued, running, or
// waiting out limits.auth_failure_delay). A connection asks for a slot of
// its client address; if the address already holds `per_client` slots, the
// connection joins that address's waiting line (FIFO) and is handed the
// slot of the next connection of the same address that gives one back. So
// one address can never hold more than `per_client` slots, however many
// connections it opens, and other addresses never wait for it.
// docs/architecture.md ("Fairness") explains the policy.
//
// Calling protocol (ids are the caller's connection ids, unique while in use):
//   acquire(client, id)  -> true: id holds a slot; false: id waits in line.
//   release(client)      -> a slot holder is done; returns the waiting id
//                           that now holds the slot, if any (the caller
//                           must start its work).
//   leave(client, id)    -> a waiting id gives up (its connection closed).
// Releasing a slot that is not held, or leaving a line one is not in, is a
// broken invariant and aborts. Single-threaded (the loop's).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

namespace sluice::mta {

class ClientSlots {
 public:
  explicit ClientSlots(uint32_t per_client);

  bool acquire(const std::string& client, uint64_t id);
  std::optional<uint64_t> release(const std::string& client);
  void leave(const std::string& client, uint64_t id);

  uint32_t per_client() const { return per_client_; }
  uint32_t held(const std::string& client) const;
  size_t waiting(const std::string& client) const;
  // Addresses with a slot held or a connection waiting (for tests: entries
  // are dropped when both are back to zero, so this never grows for good).
  size_t clients() const { return clients_.size(); }

 private:
  struct Entry {
    uint32_t held = 0;
    std::deque<uint64_t> waiting;
  };
  void drop_if_idle(std::unordered_map<std::string, Entry>::iterator it);

  uint32_t per_client_;
  std::unordered_map<std::string, Entry> clients_;
};

}  // namespace sluice::mta
