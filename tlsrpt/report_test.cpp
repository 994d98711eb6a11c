#include "tlsrpt/report.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace sluice::tlsrpt;
using json = nlohmann::json;

TEST_CASE("tlsrpt report JSON has RFC 8460 §4.4's fields") {
  DomainCounts dc;
  dc.rua = {"r@example.net"};
  PolicyKey sts{PolicyType::sts, {"version: STSv1", "mode: testing"}, {"*.mail.example.net"}};
  dc.policies[sts].success = 5;
  dc.policies[sts].failures[{ResultType::certificate_expired, "192.0.2.1", "mx1.mail.example.net", "", ""}] = 2;
  dc.policies[sts].failures[{ResultType::validation_failure, "192.0.2.1", "mx2.mail.example.net", "198.51.100.7",
                             "X509_V_ERR"}] = 1;
  ReportMeta meta{"Example Ltd", "postmaster@example.com", "2025-12-05.example.net@example.com", 1764892800,
                  1764892800 + 86399};
  json j = json::parse(report_json(meta, "example.net", dc));
  CHECK(j["organization-name"] == "Example Ltd");
  CHECK(j["date-range"]["start-datetime"] == "2025-12-05T00:00:00Z");
  CHECK(j["date-range"]["end-datetime"] == "2025-12-05T23:59:59Z");
  CHECK(j["contact-info"] == "postmaster@example.com");
  CHECK(j["report-id"] == "2025-12-05.example.net@example.com");
  REQUIRE(j["policies"].size() == 1);
  auto& p = j["policies"][0];
  CHECK(p["policy"]["policy-type"] == "sts");
  CHECK(p["policy"]["policy-domain"] == "example.net");
  CHECK(p["policy"]["policy-string"].size() == 2);
  CHECK(p["policy"]["mx-host"][0] == "*.mail.example.net");
  CHECK(p["summary"]["total-successful-session-count"] == 5);
  CHECK(p["summary"]["total-failure-session-count"] == 3);
  REQUIRE(p["failure-details"].size() == 2);
  CHECK(p["failure-details"][0]["result-type"] == "certificate-expired");
  CHECK(!p["failure-details"][0].contains("receiving-ip"));
  CHECK(p["failure-details"][0]["failed-session-count"] == 2);
  CHECK(p["failure-details"][1]["failure-reason-code"] == "X509_V_ERR");
  CHECK(p["failure-details"][1]["receiving-ip"] == "198.51.100.7");
}

TEST_CASE("tlsrpt gzip round trip and base64") {
  std::string text(10000, 'x');
  auto gz = gzip(text);
  REQUIRE(gz);
  CHECK(static_cast<unsigned char>((*gz)[0]) == 0x1f);
  CHECK(static_cast<unsigned char>((*gz)[1]) == 0x8b);
  auto back = gunzip(*gz);
  REQUIRE(back);
  CHECK(*back == text);
  CHECK(!gunzip("nope"));
  CHECK(base64_lines("") == "");
  CHECK(base64_lines("f") == "Zg==\r\n");
  CHECK(base64_lines("fo") == "Zm8=\r\n");
  CHECK(base64_lines("foobar") == "Zm9vYmFy\r\n");
  CHECK(base64_lines(std::string(57, 'a')).size() == 78);
  CHECK(base64_lines(std::string(58, 'a')).size() == 78 + 6);
}

TEST_CASE("tlsrpt report message") {
  MessageParts p;
  p.from = "postmaster@example.com";
  p.to = {"a@example.net", "b@example.net"};
  p.submitter = "example.com";
  p.policy_domain = "example.net";
  p.report_id = "rid@example.com";
  p.date = "Sat, 05 Dec 2026 00:00:00 +0000";
  p.message_id = "<Q1@mail.example.com>";
  p.boundary = "tlsrpt-Q1";
  p.start_s = 0;
  p.end_s = 86399;
  p.organization = "Example Ltd";
  p.gz = "abc";
  std::string m = report_message(p);
  CHECK(m.starts_with("From: <postmaster@example.com>\r\nTo: <a@example.net>,\r\n\t<b@example.net>\r\n"));
  CHECK(m.find("Subject: Report Domain: example.net Submitter: example.com\r\n Report-ID: <rid@example.com>\r\n") !=
        std::string::npos);
  CHECK(m.find("TLS-Report-Domain: example.net\r\n") != std::string::npos);
  CHECK(m.find("TLS-Report-Submitter: example.com\r\n") != std::string::npos);
  CHECK(m.find("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"tlsrpt-Q1\"") !=
        std::string::npos);
  CHECK(m.find("Content-Type: application/tlsrpt+gzip\r\n") != std::string::npos);
  CHECK(m.find("filename=\"example.com!example.net!0!86399!Q1.json.gz\"") != std::string::npos);
  CHECK(m.find("\r\nYWJj\r\n") != std::string::npos);
  CHECK(m.ends_with("--tlsrpt-Q1--\r\n"));
  for (std::size_t i = 0; i < m.size(); ++i)
    if (m[i] == '\n') CHECK(m[i - 1] == '\r');
}
