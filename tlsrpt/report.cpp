// report.cpp — see report.hpp.
#include "tlsrpt/report.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

namespace sluice::tlsrpt {

using json = nlohmann::json;

std::string rfc3339(int64_t unix_s) {
  int64_t day = day_of(unix_s);
  int64_t sec = unix_s - day * 86400;
  return fmt::format("{}T{:02}:{:02}:{:02}Z", day_name(day), sec / 3600, sec / 60 % 60, sec % 60);
}

std::string report_json(const ReportMeta& meta, std::string_view policy_domain, const DomainCounts& counts) {
  json policies = json::array();
  for (auto& [key, pc] : counts.policies) {
    json policy = {{"policy-type", policy_type_name(key.type)}};
    if (!key.strings.empty()) policy["policy-string"] = key.strings;
    policy["policy-domain"] = policy_domain;
    if (!key.mx.empty()) policy["mx-host"] = key.mx;
    json entry = {{"policy", std::move(policy)},
                  {"summary",
                   {{"total-successful-session-count", pc.success},
                    {"total-failure-session-count", pc.failure_total()}}}};
    if (!pc.failures.empty()) {
      json details = json::array();
      for (auto& [fk, n] : pc.failures) {
        json f = {{"result-type", result_type_name(fk.result)}};
        if (!fk.sending_ip.empty()) f["sending-mta-ip"] = fk.sending_ip;
        if (!fk.receiving_mx.empty()) f["receiving-mx-hostname"] = fk.receiving_mx;
        if (!fk.receiving_ip.empty()) f["receiving-ip"] = fk.receiving_ip;
        f["failed-session-count"] = n;
        if (!fk.reason.empty()) f["failure-reason-code"] = fk.reason;
        details.push_back(std::move(f));
      }
      entry["failure-details"] = std::move(details);
    }
    policies.push_back(std::move(entry));
  }
  json j = {{"organization-name", meta.organization},
            {"date-range", {{"start-datetime", rfc3339(meta.start_s)}, {"end-datetime", rfc3339(meta.end_s)}}},
            {"contact-info", meta.contact},
            {"report-id", meta.report_id},
            {"policies", std::move(policies)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::expected<std::string, std::string> gzip(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return std::unexpected(std::string("deflateInit2 failed"));
  std::string out;
  out.resize(deflateBound(&z, data.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  std::size_t n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::unexpected(std::string("deflate failed"));
  out.resize(n);
  return out;
}

std::expected<std::string, std::string> gunzip(std::string_view data) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return std::unexpected(std::string("inflateInit2 failed"));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > (64u << 20)) { rc = Z_MEM_ERROR; break; }
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return std::unexpected(std::string("not a complete gzip stream"));
  return out;
}

std::string base64_lines(std::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out, line;
  auto put = [&](char c) {
    line.push_back(c);
    if (line.size() == 76) {
      out += line;
      out += "\r\n";
      line.clear();
    }
  };
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    put(kAlphabet[v >> 18]);
    put(kAlphabet[(v >> 12) & 63]);
    put(kAlphabet[(v >> 6) & 63]);
    put(kAlphabet[v & 63]);
  }
  if (data.size() - i == 1) {
    uint32_t v = uint8_t(data[i]) << 16;
    put(kAlphabet[v >> 18]);
    put(kAlphabet[(v >> 12) & 63]);
    put('=');
    put('=');
  } else if (data.size() - i == 2) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    put(kAlphabet[v >> 18]);
    put(kAlphabet[(v >> 12) & 63]);
    put(kAlphabet[(v >> 6) & 63]);
    put('=');
  }
  if (!line.empty()) out += line + "\r\n";
  return out;
}

std::string report_message(const MessageParts& p) {
  std::string to;
  for (std::size_t i = 0; i < p.to.size(); ++i) {
    if (i) to += ",\r\n\t";
    to += "<" + p.to[i] + ">";
  }
  std::string file = fmt::format("{}!{}!{}!{}!{}.json.gz", p.submitter, p.policy_domain, p.start_s, p.end_s,
                                 p.message_id.size() > 2 ? p.message_id.substr(1, p.message_id.find('@') - 1) : "0");
  std::string m;
  m += fmt::format("From: <{}>\r\n", p.from);
  m += fmt::format("To: {}\r\n", to);
  m += fmt::format("Subject: Report Domain: {} Submitter: {}\r\n Report-ID: <{}>\r\n", p.policy_domain, p.submitter,
                   p.report_id);
  m += fmt::format("Date: {}\r\n", p.date);
  m += fmt::format("Message-ID: {}\r\n", p.message_id);
  m += fmt::format("TLS-Report-Domain: {}\r\n", p.policy_domain);
  m += fmt::format("TLS-Report-Submitter: {}\r\n", p.submitter);
  m += "MIME-Version: 1.0\r\n";
  m += fmt::format("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{}\"\r\n", p.boundary);
  m += "\r\n";
  m += "This is a multipart/report message: an SMTP TLS report (RFC 8460).\r\n";
  m += "\r\n";
  m += fmt::format("--{}\r\n", p.boundary);
  m += "Content-Type: text/plain; charset=us-ascii\r\n";
  m += "Content-Transfer-Encoding: 7bit\r\n";
  m += "\r\n";
  m += fmt::format("This is an aggregate TLS report from {}\r\n", p.organization);
  m += fmt::format("for the policy domain {}, submitted by {},\r\n", p.policy_domain, p.submitter);
  m += fmt::format("covering {} to {}.\r\n", rfc3339(p.start_s), rfc3339(p.end_s));
  m += "\r\n";
  m += fmt::format("--{}\r\n", p.boundary);
  m += "Content-Type: application/tlsrpt+gzip\r\n";
  m += "Content-Transfer-Encoding: base64\r\n";
  m += fmt::format("Content-Disposition: attachment;\r\n\tfilename=\"{}\"\r\n", file);
  m += "\r\n";
  m += base64_lines(p.gz);
  m += "\r\n";
  m += fmt::format("--{}--\r\n", p.boundary);
  return m;
}

}  // namespace sluice::tlsrpt
