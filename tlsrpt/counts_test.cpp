#include "tlsrpt/counts.hpp"

#include <catch2/catch.hpp>

using namespace sluice::tlsrpt;

TEST_CASE("tlsrpt counts: add, merge, JSON round trip") {
  Day d;
  d.day = day_of(1764892800 + 3600);  // 2025-12-05 01:00Z
  CHECK(day_name(d.day) == "2025-12-05");
  CHECK(day_of(-1) == -1);
  CHECK(day_name(0) == "1970-01-01");
  Session ok{"example.net", {PolicyType::sts, {"version: STSv1", "mode: enforce"}, {"*.example.net"}}, std::nullopt};
  Session bad{"example.net", {PolicyType::no_policy_found, {}, {}},
              FailureKey{ResultType::starttls_not_supported, "127.0.0.1", "mx.example.net", "127.0.0.2", ""}};
  add(d, ok, {"r@example.net"});
  add(d, ok, {});
  add(d, bad, {"r@example.net"});
  add(d, bad, {"r@example.net"});
  const auto& dc = d.domains.at("example.net");
  CHECK(dc.rua == std::vector<std::string>{"r@example.net"});
  CHECK(dc.policies.at(ok.policy).success == 2);
  CHECK(dc.policies.at(bad.policy).failure_total() == 2);
  CHECK(dc.policies.at(bad.policy).success == 0);

  auto back = decode_day(encode_day(d));
  REQUIRE(back);
  CHECK(*back == d);
  Day twice = d;
  merge(twice, d);
  CHECK(twice.domains.at("example.net").policies.at(ok.policy).success == 4);
  CHECK(twice.domains.at("example.net").policies.at(bad.policy).failure_total() == 4);

  CHECK(!decode_day("{"));
  CHECK(!decode_day("[]"));
  CHECK(!decode_day(R"({"version":1,"day":1,"domains":{"a":{"rua":[],"policies":[{"type":"x"}]}}})"));
  CHECK(!decode_day(R"({"version":2,"day":1,"domains":{}})"));
  // Found by fuzz_tlsrpt: a version of another JSON type threw from json::value().
  CHECK(!decode_day(R"({"version":{},"day":1,"domains":{}})"));
  CHECK(!decode_day(R"({"version":"1","day":1,"domains":{}})"));
  CHECK(!decode_day(R"({"version":1.0,"day":1,"domains":{}})"));
  CHECK(decode_day(R"({"version":1,"day":1,"domains":{}})"));
}

TEST_CASE("tlsrpt names") {
  CHECK(result_type_name(ResultType::certificate_host_mismatch) == "certificate-host-mismatch");
  CHECK(result_type_from("sts-webpki-invalid") == ResultType::sts_webpki_invalid);
  CHECK(!result_type_from("nope"));
  CHECK(policy_type_name(PolicyType::no_policy_found) == "no-policy-found");
  CHECK(policy_type_from("tlsa") == PolicyType::tlsa);
}
