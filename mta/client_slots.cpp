// client_slots.cpp — see client_slots.hpp.
#include "mta/client_slots.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace sluice::mta {

namespace {
[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "sluice: ClientSlots: %s\n", what);
  std::abort();
}
}  // namespace

ClientSlots::ClientSlots(uint32_t per_client) : per_client_(per_client) {
  if (per_client_ == 0) broken("a cap of zero slots would never let anyone in");
}

bool ClientSlots::acquire(const std::string& client, uint64_t id) {
  Entry& e = clients_[client];
  if (e.held < per_client_ && e.waiting.empty()) {
    ++e.held;
    return true;
  }
  e.waiting.push_back(id);
  return false;
}

std::optional<uint64_t> ClientSlots::release(const std::string& client) {
  auto it = clients_.find(client);
  if (it == clients_.end() || it->second.held == 0) broken("release without a slot held");
  Entry& e = it->second;
  if (!e.waiting.empty()) {  // the slot passes straight to the next in line
    const uint64_t next = e.waiting.front();
    e.waiting.pop_front();
    return next;
  }
  --e.held;
  drop_if_idle(it);
  return std::nullopt;
}

void ClientSlots::leave(const std::string& client, uint64_t id) {
  auto it = clients_.find(client);
  if (it == clients_.end()) broken("leave without waiting");
  auto& w = it->second.waiting;
  auto pos = std::find(w.begin(), w.end(), id);
  if (pos == w.end()) broken("leave without waiting");
  w.erase(pos);
  drop_if_idle(it);
}

uint32_t ClientSlots::held(const std::string& client) const {
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : it->second.held;
}

size_t ClientSlots::waiting(const std::string& client) const {
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : it->second.waiting.size();
}

void ClientSlots::drop_if_idle(std::unordered_map<std::string, Entry>::iterator it) {
  if (it->second.held == 0 && it->second.waiting.empty()) clients_.erase(it);
}

}  // namespace sluice::mta
