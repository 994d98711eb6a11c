#include "tlsrpt/record.hpp"

#include <catch2/catch.hpp>

using namespace sluice::tlsrpt;

namespace {
std::expected<Record, TxtProblem> one(std::string r) {
  std::vector<std::string> v{std::move(r)};
  return parse_txt(v);
}
}  // namespace

TEST_CASE("tlsrpt TXT: the RFC's examples") {
  auto r = one("v=TLSRPTv1;rua=mailto:reports@example.com");
  REQUIRE(r);
  CHECK(r->mailto == std::vector<std::string>{"reports@example.com"});
  r = one("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt");
  REQUIRE(!r);
  CHECK(r.error().error == TxtError::no_mailto);
  r = one("v=TLSRPTv1; rua=mailto:reports@example.com,https://reporting.example.com/v1/tlsrpt");
  REQUIRE(r);
  CHECK(r->mailto == std::vector<std::string>{"reports@example.com"});
}

TEST_CASE("tlsrpt TXT: several addresses, WSP, escapes, query, case") {
  auto r = one("v=TLSRPTv1 ; rua = x ;");
  CHECK(!r);
  r = one("v=TLSRPTv1 ; rua=MAILTO:a@x.example , mailto:b%40c@y.example?subject=x ;ext=1;");
  REQUIRE(r);
  CHECK(r->mailto == std::vector<std::string>{"a@x.example", "b@c@y.example"});
  r = one("v=TLSRPTv1; rua=mailto:a@x.example,mailto:a@x.example");
  REQUIRE(r);
  CHECK(r->mailto.size() == 1);
}

TEST_CASE("tlsrpt TXT: not one record, syntax errors") {
  std::vector<std::string> none{"v=spf1 -all", "v=TLSRPTv10; rua=mailto:a@b"};
  CHECK(parse_txt(none).error().error == TxtError::none_published);
  std::vector<std::string> two{"v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1;rua=mailto:c@d"};
  CHECK(parse_txt(two).error().error == TxtError::several);
  CHECK(one("v=TLSRPTv1").error().error == TxtError::syntax);
  CHECK(one("v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d").error().error == TxtError::syntax);
  CHECK(one("v=TLSRPTv1; rua=mailto:a@b; =x").error().error == TxtError::syntax);
  CHECK(one("v=TLSRPTv1 x; rua=mailto:a@b").error().error == TxtError::syntax);
  CHECK(one("v=TLSRPTv1; rua=mailto:<a@b>").error().error == TxtError::no_mailto);
  CHECK(one("v=TLSRPTv1; rua=mailto:a@b%2").error().error == TxtError::no_mailto);
  CHECK(one("v=TLSRPTv1; rua=mailto:@b").error().error == TxtError::no_mailto);
  CHECK(one("v=TLSRPTv1; rua=").error().error == TxtError::syntax);
}
