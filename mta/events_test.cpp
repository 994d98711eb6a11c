#include <catch2/catch.hpp>

#include "mta/events.hpp"

using namespace sluice;
using namespace sluice::mta;

TEST_CASE("parse_reply splits code, enhanced code and text") {
  auto r = events::parse_reply("550 5.1.1 no such user");
  CHECK(r.code == 550);
  CHECK(r.enhanced_code == "5.1.1");
  CHECK(r.text == "no such user");
  r = events::parse_reply("421 try later", "4.4.2");
  CHECK(r.code == 421);
  CHECK(r.enhanced_code == "4.4.2");
  CHECK(r.text == "try later");
  r = events::parse_reply("connection refused", "4.4.1");
  CHECK(r.code == 0);
  CHECK(r.enhanced_code == "4.4.1");
  CHECK(r.text == "connection refused");
  r = events::parse_reply("250 2.0.0");
  CHECK(r.code == 250);
  CHECK(r.enhanced_code == "2.0.0");
  CHECK(r.text.empty());
  r = events::parse_reply("550 5.7.30. x");  // not an enhanced code
  CHECK(r.enhanced_code.empty());
  CHECK(r.text == "5.7.30. x");
}

TEST_CASE("a verdict becomes the event of its kind") {
  queue::Envelope env;
  env.id = "Q";
  env.sender = "a@x";
  env.arrival_us = 1'000'000;
  env.recipients.resize(2);
  env.recipients[0].address = "b@y";
  env.recipients[0].attempts = 3;
  env.recipients[1].address = "c@y";
  auto e = events::verdict(env, 0, "sent", "2.0.0", "250 2.0.0 ok", "mx.y[192.0.2.1]:25", "dane", 3'500'000);
  CHECK(e.type == obs::EventType::delivery);
  CHECK(e.recipient == "b@y");
  CHECK(e.attempts == 3);
  CHECK(e.peer_name == "mx.y");
  CHECK(e.peer_address == "192.0.2.1");
  CHECK(e.tls == "dane");
  CHECK(e.delay == Approx(2.5));
  CHECK(events::verdict(env, 1, "deferred", "4.4.1", "connection refused", "none", "none", 2'000'000).type ==
        obs::EventType::deferral);
  CHECK(events::verdict(env, 1, "bounced", "5.1.1", "550 5.1.1 x", "", "none", 2'000'000).type ==
        obs::EventType::bounce);
  // Given up after temporary failures: an expiry.
  auto x = events::verdict(env, 1, "bounced", "4.4.7", "451 4.3.0 later", "mx.y[192.0.2.1]:25", "none", 2'000'000);
  CHECK(x.type == obs::EventType::expiry);
  CHECK(x.response.code == 451);
}
