// dsn_test.cpp — bounce messages: MIME structure, required fields, line
// lengths, folding, boundary uniqueness, SMTPUTF8, header bounds.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "queue/dsn.hpp"

using namespace sluice::queue;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;  // Tue, 14 Nov 2023 22:13:20 +0000

Envelope original() {
  Envelope e;
  e.id = "00061234567890AB";
  e.arrival_us = kNow - 3'600'000'000;
  e.sender = "alice@origin.example";
  e.envid = "ENV42";
  Recipient r;
  r.address = "bob@dest.example";
  e.recipients.push_back(r);
  return e;
}

FailedRecipient failed(std::string addr, std::string diag, std::string mta = "mx1.dest.example[192.0.2.7]") {
  FailedRecipient f;
  f.address = std::move(addr);
  f.status = "5.1.1";
  f.diagnostic = std::move(diag);
  f.remote_mta = std::move(mta);
  f.last_attempt_us = kNow - 1'000'000;
  return f;
}

const std::string kHeaders =
    "Received: from client.example by mail.origin.example with ESMTPS id 00061234567890AB;\r\n"
    "\tTue, 14 Nov 2023 21:13:20 +0000\r\n"
    "From: Alice <alice@origin.example>\r\n"
    "To: bob@dest.example\r\n"
    "Subject: hello\r\n"
    "Message-ID: <m1@origin.example>\r\n";
const std::string kContent = kHeaders + "\r\nthe body, which must not appear in the bounce\r\n";

// Splits CRLF lines; fails the test on a bare CR or LF or an over-long line.
std::vector<std::string> lines_of(const std::string& msg) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < msg.size()) {
    size_t e = msg.find("\r\n", i);
    REQUIRE(e != std::string::npos);  // ends with CRLF
    std::string line = msg.substr(i, e - i);
    INFO("line " << out.size() << ": " << line.substr(0, 80));
    CHECK(line.find('\r') == std::string::npos);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.size() <= 998);
    out.push_back(line);
    i = e + 2;
  }
  return out;
}

// A header block (up to an empty line), unfolded, name (lower-case) -> values.
using Fields = std::multimap<std::string, std::string>;

Fields fields_of(const std::vector<std::string>& lines, size_t& i) {
  Fields f;
  std::string name, value;
  auto done = [&] {
    if (!name.empty()) f.emplace(name, value);
    name.clear();
  };
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    const std::string& l = lines[i];
    if (l[0] == ' ' || l[0] == '\t') {
      REQUIRE_FALSE(name.empty());
      value += l;  // unfolding removes only the CRLF
      continue;
    }
    done();
    size_t colon = l.find(':');
    REQUIRE(colon != std::string::npos);
    name = l.substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    value = l.substr(colon + 1);
    while (!value.empty() && value[0] == ' ') value.erase(0, 1);
  }
  done();
  if (i < lines.size()) ++i;  // the empty line
  return f;
}

std::string one(const Fields& f, const std::string& name) {
  INFO(name);
  REQUIRE(f.count(name) == 1);
  return f.find(name)->second;
}

struct Part {
  Fields headers;
  std::vector<std::string> body;
};

struct Parsed {
  Fields headers;
  std::string boundary;
  std::vector<Part> parts;
};

Parsed parse(const std::string& msg) {
  Parsed p;
  auto lines = lines_of(msg);
  size_t i = 0;
  p.headers = fields_of(lines, i);
  std::string ct = one(p.headers, "content-type");
  size_t b = ct.find("boundary=\"");
  REQUIRE(b != std::string::npos);
  p.boundary = ct.substr(b + 10, ct.find('"', b + 10) - (b + 10));
  REQUIRE_FALSE(p.boundary.empty());
  CHECK(p.boundary.size() <= 70);  // RFC 2046
  const std::string delim = "--" + p.boundary, close = delim + "--";
  // Preamble up to the first delimiter.
  while (i < lines.size() && lines[i] != delim) ++i;
  REQUIRE(i < lines.size());
  bool closed = false;
  while (i < lines.size()) {
    if (lines[i] == close) {
      closed = true;
      ++i;
      break;
    }
    REQUIRE(lines[i] == delim);
    ++i;
    Part part;
    part.headers = fields_of(lines, i);
    while (i < lines.size() && lines[i] != delim && lines[i] != close) part.body.push_back(lines[i++]);
    p.parts.push_back(std::move(part));
  }
  CHECK(closed);
  CHECK(i == lines.size());  // nothing after the close delimiter
  // The boundary occurs only in the delimiter lines and the Content-Type.
  size_t count = 0;
  for (size_t at = msg.find(p.boundary); at != std::string::npos; at = msg.find(p.boundary, at + 1)) ++count;
  CHECK(count == p.parts.size() + 2);
  return p;
}

// The delivery-status body as field blocks: [0] per message, then one per recipient.
std::vector<Fields> report_blocks(const Part& part) {
  std::vector<Fields> out;
  std::vector<std::string> lines = part.body;
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  size_t i = 0;
  while (i < lines.size()) out.push_back(fields_of(lines, i));
  return out;
}

std::string squeeze(std::string s) {  // runs of whitespace -> one space
  std::string out;
  for (char c : s) {
    bool ws = c == ' ' || c == '\t';
    if (ws && (out.empty() || out.back() == ' ')) continue;
    out.push_back(ws ? ' ' : c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

TEST_CASE("header_section") {
  CHECK(header_section(kContent) == kHeaders);
  CHECK(header_section(kHeaders) == kHeaders);  // no body at all
  CHECK(header_section("\r\nbody\r\n").empty());
  std::string big;
  while (big.size() < 100 * 1024) big += "X-Filler: " + std::string(60, 'x') + "\r\n";
  big += "\r\nbody";
  std::string_view h = header_section(big);  // a view into `big`, which must outlive it
  CHECK(h.size() <= kMaxDsnHeaderBytes);
  CHECK(h.size() > kMaxDsnHeaderBytes - 100);
  CHECK(h.ends_with("\r\n"));
}

TEST_CASE("a DSN has the RFC 3464 structure and every required field") {
  Envelope env = original();
  std::vector<FailedRecipient> f = {
      failed("bob@dest.example", "550 5.1.1 <bob@dest.example>: Recipient address rejected: User unknown"),
      failed("carol@nx.example", "550 5.1.2 nx.example: domain does not exist (NXDOMAIN)", ""),
  };
  f[1].status = "5.1.2";
  f[1].last_attempt_us = 0;
  f[0].orcpt = "rfc822;bob+2Bfilter@dest.example";
  std::string msg = make_dsn(env, f, "mail.origin.example", kContent, kNow, "BOUNCE01@mail.origin.example");
  Parsed p = parse(msg);

  CHECK(one(p.headers, "from") == "MAILER-DAEMON@mail.origin.example (Mail Delivery System)");
  CHECK(one(p.headers, "to") == "<alice@origin.example>");
  CHECK(one(p.headers, "subject") == "Undelivered Mail Returned to Sender");
  CHECK(one(p.headers, "date") == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(one(p.headers, "message-id") == "<BOUNCE01@mail.origin.example>");
  CHECK(one(p.headers, "auto-submitted") == "auto-replied");
  CHECK(one(p.headers, "mime-version") == "1.0");
  CHECK(one(p.headers, "content-type").starts_with("multipart/report; report-type=delivery-status;"));
  CHECK(p.headers.count("content-transfer-encoding") == 0);  // all ASCII

  REQUIRE(p.parts.size() == 3);
  CHECK(one(p.parts[0].headers, "content-type") == "text/plain; charset=utf-8");
  CHECK(one(p.parts[1].headers, "content-type") == "message/delivery-status");
  CHECK(one(p.parts[2].headers, "content-type") == "text/rfc822-headers");

  std::string text;
  for (auto& l : p.parts[0].body) text += l + "\n";
  CHECK(text.find("<bob@dest.example>:") != std::string::npos);
  CHECK(text.find("host mx1.dest.example[192.0.2.7] said:") != std::string::npos);
  CHECK(text.find("<carol@nx.example>:") != std::string::npos);
  CHECK(squeeze(text).find("nx.example: domain does not exist") != std::string::npos);

  auto blocks = report_blocks(p.parts[1]);
  REQUIRE(blocks.size() == 3);
  CHECK(one(blocks[0], "reporting-mta") == "dns; mail.origin.example");
  CHECK(one(blocks[0], "arrival-date") == "Tue, 14 Nov 2023 21:13:20 +0000");
  CHECK(one(blocks[0], "original-envelope-id") == "ENV42");
  CHECK(one(blocks[0], "x-sluice-queue-id") == "00061234567890AB");

  CHECK(one(blocks[1], "final-recipient") == "rfc822; bob@dest.example");
  CHECK(one(blocks[1], "original-recipient") == "rfc822; bob+filter@dest.example");
  CHECK(one(blocks[1], "action") == "failed");
  CHECK(one(blocks[1], "status") == "5.1.1");
  CHECK(one(blocks[1], "remote-mta") == "dns; mx1.dest.example");
  CHECK(squeeze(one(blocks[1], "diagnostic-code")) ==
        "smtp; 550 5.1.1 <bob@dest.example>: Recipient address rejected: User unknown");
  CHECK(one(blocks[1], "last-attempt-date") == "Tue, 14 Nov 2023 22:13:19 +0000");

  CHECK(one(blocks[2], "final-recipient") == "rfc822; carol@nx.example");
  CHECK(one(blocks[2], "status") == "5.1.2");
  CHECK(blocks[2].count("remote-mta") == 0);  // Sluice's own reason
  CHECK(blocks[2].count("last-attempt-date") == 0);
  CHECK(blocks[2].count("original-recipient") == 0);
  CHECK(squeeze(one(blocks[2], "diagnostic-code")) ==
        "X-Sluice; 550 5.1.2 nx.example: domain does not exist (NXDOMAIN)");

  // The original headers, and nothing of the body.
  std::string hdrs;
  for (auto& l : p.parts[2].body) hdrs += l + "\r\n";
  CHECK(hdrs == kHeaders + "\r\n");
  CHECK(msg.find("the body, which must not appear") == std::string::npos);

  SECTION("the same input gives the same bytes") {
    CHECK(make_dsn(env, f, "mail.origin.example", kContent, kNow, "BOUNCE01@mail.origin.example") == msg);
  }
}

TEST_CASE("long diagnostics are folded, no line exceeds 998 octets") {
  Envelope env = original();
  std::string words;
  for (int i = 0; i < 300; ++i) words += "word" + std::to_string(i) + " ";
  std::vector<FailedRecipient> f = {
      failed("a@d.example", "550 5.7.1 " + words),
      failed("b@d.example", "550 5.7.1 " + std::string(5000, 'z')),  // one huge token
      failed("c@d.example", "550 5.7.1 line one\r\n550 5.7.1 line\ttwo\x01"),  // control characters
  };
  std::string long_header = "X-Long: " + std::string(2500, 'h') + "\r\n";
  std::string msg = make_dsn(env, f, "mail.origin.example", kHeaders + long_header + "\r\nbody", kNow, "b@x");
  Parsed p = parse(msg);  // checks every line
  auto blocks = report_blocks(p.parts[1]);
  REQUIRE(blocks.size() == 4);
  CHECK(squeeze(one(blocks[1], "diagnostic-code")) == squeeze("smtp; 550 5.7.1 " + words));
  // The huge token is cut into pieces; together they are all there.
  std::string huge = one(blocks[2], "diagnostic-code");
  huge.erase(std::remove(huge.begin(), huge.end(), ' '), huge.end());
  CHECK(huge == "smtp;5505.7.1" + std::string(5000, 'z'));
  CHECK(squeeze(one(blocks[3], "diagnostic-code")) == "smtp; 550 5.7.1 line one 550 5.7.1 line two");
  // Folded lines are short where the words allow.
  for (const auto& l : p.parts[1].body)
    if (l.find("word") != std::string::npos) CHECK(l.size() <= 78);
  // The long original header is split into continuation lines, not lost.
  std::string hdrs;
  for (auto& l : p.parts[2].body) hdrs += l;
  std::string hs;
  for (char c : hdrs)
    if (c == 'h') hs += c;
  CHECK(hs.size() >= 2500);
}

TEST_CASE("the boundary never occurs in the content") {
  Envelope env = original();
  std::vector<FailedRecipient> f = {failed("bob@dest.example", "550 5.1.1 unknown")};
  std::string first = make_dsn(env, f, "mail.origin.example", kContent, kNow, "b1@x");
  std::string boundary = parse(first).boundary;
  CHECK(boundary.find(env.id) != std::string::npos);
  // Put exactly that boundary into the original headers and the diagnostic.
  std::string headers = kHeaders + "X-Trap: --" + boundary + "\r\n";
  f[0].diagnostic = "550 5.1.1 " + boundary;
  std::string second = make_dsn(env, f, "mail.origin.example", headers, kNow, "b1@x");
  Parsed p = parse(second);  // counts the boundary's occurrences
  CHECK(p.boundary != boundary);
  CHECK(second.find("X-Trap: --" + boundary) != std::string::npos);
}

TEST_CASE("SMTPUTF8: global report types, utf-8 addresses, 8bit") {
  Envelope env = original();
  env.sender = "jöran@exämple.org";
  env.smtputf8 = true;
  std::vector<FailedRecipient> f = {failed("用户@例え.jp", "550 5.1.1 unknown"),
                                    failed("ascii@d.example", "550 5.1.1 unknown")};
  std::string headers = "Subject: grüße\r\nFrom: jöran@exämple.org\r\n";
  std::string msg = make_dsn(env, f, "mail.origin.example", headers, kNow, "b@x");
  Parsed p = parse(msg);
  CHECK(one(p.headers, "to") == "<jöran@exämple.org>");
  CHECK(one(p.headers, "content-transfer-encoding") == "8bit");
  CHECK(one(p.parts[1].headers, "content-type") == "message/global-delivery-status");
  CHECK(one(p.parts[2].headers, "content-type") == "message/global-headers");
  auto blocks = report_blocks(p.parts[1]);
  CHECK(one(blocks[1], "final-recipient") == "utf-8; 用户@例え.jp");
  CHECK(one(blocks[2], "final-recipient") == "rfc822; ascii@d.example");

  Envelope b = bounce_envelope(env, msg, "b@x", kNow);
  CHECK(b.sender.empty());
  REQUIRE(b.recipients.size() == 1);
  CHECK(b.recipients[0].address == "jöran@exämple.org");
  CHECK(b.smtputf8);
  CHECK(b.body == BodyType::eight_bit_mime);
  CHECK(b.message_id == "<b@x>");
  CHECK(b.arrival_us == kNow);
}

TEST_CASE("bounce_envelope of an ASCII bounce") {
  Envelope env = original();
  std::vector<FailedRecipient> f = {failed("bob@dest.example", "550 5.1.1 unknown")};
  std::string msg = make_dsn(env, f, "mail.origin.example", kContent, kNow, "<b@x>");
  CHECK(parse(msg).parts.size() == 3);
  Envelope b = bounce_envelope(env, msg, "<b@x>", kNow);
  CHECK(b.sender.empty());
  CHECK(b.recipients[0].address == "alice@origin.example");
  CHECK_FALSE(b.smtputf8);
  CHECK(b.body == BodyType::seven_bit);
  CHECK(b.message_id == "<b@x>");
}

TEST_CASE("expired and cancelled recipients explain themselves; bad status falls back") {
  Envelope env = original();
  FailedRecipient f = failed("bob@dest.example", "451 4.7.1 greylisted");
  f.status = "4.4.7";
  f.reason = "delivery time expired: the message could not be delivered within 5 days";
  FailedRecipient g = failed("eve@dest.example", "", "");
  g.status = "bogus";
  std::vector<FailedRecipient> all = {f, g};
  std::string msg = make_dsn(env, all, "mail.origin.example", "", kNow, "b@x");
  Parsed p = parse(msg);
  std::string text;
  for (auto& l : p.parts[0].body) text += l + " ";
  CHECK(squeeze(text).find("delivery time expired: the message could not be delivered within 5 days") !=
        std::string::npos);
  CHECK(squeeze(text).find("host mx1.dest.example[192.0.2.7] said: 451 4.7.1 greylisted") != std::string::npos);
  auto blocks = report_blocks(p.parts[1]);
  CHECK(one(blocks[1], "status") == "4.4.7");
  CHECK(one(blocks[1], "action") == "failed");
  CHECK(one(blocks[2], "status") == "5.0.0");
  CHECK(blocks[2].count("diagnostic-code") == 0);
  CHECK((p.parts[2].body.empty() || (p.parts[2].body.size() == 1 && p.parts[2].body[0].empty())));
}

TEST_CASE("REQUIRETLS: the bounce is redacted and itself sent with REQUIRETLS (RFC 8689 §5)") {
  Envelope env = original();
  env.requiretls = true;
  FailedRecipient f = failed("bob@dest.example",
                             "550 5.7.30 REQUIRETLS support required, not met by mx1.dest.example: "
                             "it does not offer REQUIRETLS",
                             "");
  f.status = "5.7.30";
  std::vector<FailedRecipient> fs = {f};
  std::string msg = make_dsn(env, fs, "mail.origin.example", kContent, kNow, "<b@x>");
  Parsed p = parse(msg);
  // Two parts: no text/rfc822-headers, nothing of the original's header
  // section or body anywhere.
  REQUIRE(p.parts.size() == 2);
  CHECK(one(p.parts[0].headers, "content-type") == "text/plain; charset=utf-8");
  CHECK(one(p.parts[1].headers, "content-type") == "message/delivery-status");
  CHECK(msg.find("Subject: hello") == std::string::npos);
  CHECK(msg.find("m1@origin.example") == std::string::npos);
  CHECK(msg.find("client.example") == std::string::npos);
  CHECK(msg.find("the body, which must not appear") == std::string::npos);
  std::string text;
  for (auto& l : p.parts[0].body) text += l + " ";
  CHECK(squeeze(text).find("sent with REQUIRETLS, so none of its content or headers is attached") !=
        std::string::npos);
  auto blocks = report_blocks(p.parts[1]);
  REQUIRE(blocks.size() == 2);
  CHECK(one(blocks[1], "status") == "5.7.30");
  CHECK(squeeze(one(blocks[1], "diagnostic-code")).starts_with("X-Sluice; 550 5.7.30 REQUIRETLS"));

  Envelope b = bounce_envelope(env, msg, "<b@x>", kNow);
  CHECK(b.requiretls);
  CHECK_FALSE(b.tls_optional);
  CHECK(b.sender.empty());

  // Without REQUIRETLS (also with TLS-Required: No) the bounce is as always.
  env.requiretls = false;
  env.tls_optional = true;
  msg = make_dsn(env, fs, "mail.origin.example", kContent, kNow, "<b@x>");
  CHECK(parse(msg).parts.size() == 3);
  CHECK_FALSE(bounce_envelope(env, msg, "<b@x>", kNow).requiretls);
  CHECK_FALSE(bounce_envelope(env, msg, "<b@x>", kNow).tls_optional);
}
