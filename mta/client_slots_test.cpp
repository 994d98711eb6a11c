// client_slots_test.cpp — the per-client caps of mta/client_slots.hpp.
#include "mta/client_slots.hpp"

#include <catch2/catch.hpp>

using sluice::mta::ClientSlots;

TEST_CASE("client slots: one address holds at most its cap, the rest wait in order") {
  ClientSlots s(2);
  CHECK(s.acquire("192.0.2.1", 1));
  CHECK(s.acquire("192.0.2.1", 2));
  CHECK_FALSE(s.acquire("192.0.2.1", 3));
  CHECK_FALSE(s.acquire("192.0.2.1", 4));
  CHECK(s.held("192.0.2.1") == 2);
  CHECK(s.waiting("192.0.2.1") == 2);

  // Another address is not affected.
  CHECK(s.acquire("198.51.100.7", 10));
  CHECK(s.held("198.51.100.7") == 1);

  // A freed slot goes to the first in line, not back to the pool.
  CHECK(s.release("192.0.2.1") == 3u);
  CHECK(s.held("192.0.2.1") == 2);
  // Nobody jumps the line: a newcomer waits behind 4.
  CHECK_FALSE(s.acquire("192.0.2.1", 5));
  CHECK(s.release("192.0.2.1") == 4u);
  CHECK(s.release("192.0.2.1") == 5u);
  CHECK(s.release("192.0.2.1") == std::nullopt);
  CHECK(s.release("192.0.2.1") == std::nullopt);
  CHECK(s.held("192.0.2.1") == 0);
  CHECK(s.release("198.51.100.7") == std::nullopt);
  CHECK(s.clients() == 0);  // nothing left behind
}

TEST_CASE("client slots: a waiting connection that leaves is skipped") {
  ClientSlots s(1);
  CHECK(s.acquire("a", 1));
  CHECK_FALSE(s.acquire("a", 2));
  CHECK_FALSE(s.acquire("a", 3));
  s.leave("a", 2);
  CHECK(s.waiting("a") == 1);
  CHECK(s.release("a") == 3u);
  s.release("a");
  CHECK(s.clients() == 0);

  CHECK(s.acquire("b", 7));
  CHECK_FALSE(s.acquire("b", 8));
  s.leave("b", 8);
  CHECK(s.release("b") == std::nullopt);
  CHECK(s.clients() == 0);
}
