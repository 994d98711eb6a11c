// queue_id_test.cpp — queue ids: format, ordering across threads, observe().
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "queue/queue_id.hpp"

using namespace sluice::queue;

TEST_CASE("queue ids are 16 upper-case hex digits carrying the time") {
  QueueIdGenerator gen;
  auto before = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::string id = gen.next();
  auto after = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  CHECK(id.size() == 16);
  CHECK(valid_queue_id(id));
  CHECK(queue_id_micros(id) >= before);
  CHECK(queue_id_micros(id) <= after);
}

TEST_CASE("valid_queue_id") {
  CHECK(valid_queue_id("0123456789ABCDEF"));
  CHECK_FALSE(valid_queue_id("0123456789abcdef"));  // lower case
  CHECK_FALSE(valid_queue_id("0123456789ABCDE"));
  CHECK_FALSE(valid_queue_id("0123456789ABCDEF0"));
  CHECK_FALSE(valid_queue_id("0123456789ABCDEG"));
  CHECK_FALSE(valid_queue_id(""));
  CHECK_FALSE(valid_queue_id(std::string_view("0123456789ABCDE\0", 16)));
  CHECK(queue_id_micros("garbage") == 0);
}

TEST_CASE("queue ids are strictly increasing and sortable from many threads") {
  QueueIdGenerator gen;
  constexpr int kThreads = 8, kEach = 20000;
  std::vector<std::vector<std::string>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      got[size_t(t)].reserve(kEach);
      for (int i = 0; i < kEach; ++i) got[size_t(t)].push_back(gen.next());
    });
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& v : got) {
    // Within one thread, each id sorts after the previous one.
    CHECK(std::is_sorted(v.begin(), v.end()));
    CHECK(std::adjacent_find(v.begin(), v.end()) == v.end());
    all.insert(v.begin(), v.end());
  }
  CHECK(all.size() == size_t(kThreads) * kEach);  // unique
}

TEST_CASE("observe() makes later ids sort after a far-future id") {
  QueueIdGenerator gen;
  std::string future = "7FFFFFFFFFFFF000";
  gen.observe(future);
  std::string a = gen.next();
  std::string b = gen.next();
  CHECK(a > future);
  CHECK(b > a);
  gen.observe("0000000000000001");  // older ids change nothing
  CHECK(gen.next() > b);
  gen.observe("not an id");
  CHECK(gen.next() > b);
}
