// aimd_test.cpp — adaptive concurrency: start, growth, halving, reload.
#include <catch2/catch.hpp>

#include "shaping/aimd.hpp"

using namespace sluice::shaping;

TEST_CASE("Aimd starts low, grows by one per full window of successes, halves on congestion") {
  Aimd a(10, true);
  CHECK(a.current() == kInitialConcurrency);
  a.success();
  CHECK(a.current() == 2);
  a.success();  // two in a row at 2
  CHECK(a.current() == 3);
  a.success();
  a.success();
  CHECK(a.current() == 3);
  a.success();
  CHECK(a.current() == 4);
  for (int i = 0; i < 100; ++i) a.success();
  CHECK(a.current() == 10);  // never beyond max
  a.congestion();
  CHECK(a.current() == 5);
  a.success();
  a.success();
  a.success();
  a.success();
  a.congestion();  // resets the run: four successes did not count
  CHECK(a.current() == 2);
  a.success();
  CHECK(a.current() == 2);
  a.congestion();
  a.congestion();
  a.congestion();
  CHECK(a.current() == 1);  // never below 1
  a.success();
  CHECK(a.current() == 2);
}

TEST_CASE("Aimd with a small max, without adaptation, and on reload") {
  CHECK(Aimd(1, true).current() == 1);
  CHECK(Aimd(0, true).current() == 1);
  Aimd fixed(7, false);
  CHECK(fixed.current() == 7);
  fixed.congestion();
  fixed.success();
  CHECK(fixed.current() == 7);
  fixed.set_max(3);
  CHECK(fixed.current() == 3);
  fixed.set_max(9);
  CHECK(fixed.current() == 9);

  Aimd a(20, true);
  for (int i = 0; i < 200; ++i) a.success();
  CHECK(a.current() == 20);
  a.set_max(5);
  CHECK(a.current() == 5);
  CHECK(a.max() == 5);
  a.set_max(8);  // a higher ceiling: current grows to it again through successes
  CHECK(a.current() == 5);
  for (int i = 0; i < 5; ++i) a.success();
  CHECK(a.current() == 6);
}
