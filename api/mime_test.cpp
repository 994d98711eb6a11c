// mime_test.cpp — build_message: the structure, the encodings and the line
// rules, checked by decoding what was built.
#include <catch2/catch.hpp>

#include <regex>
#include <string>
#include <vector>

#include "api/mime.hpp"

using namespace sluice::api;

namespace {

MessageRequest decoded(std::string_view body) {
  auto r = decode_request(body, {});
  REQUIRE(r);
  return std::move(*r);
}

BuildContext ctx() { return BuildContext{1'700'000'000'000'000, "<1.ID@host.test>", nullptr}; }

std::vector<std::string> lines(const std::string& m) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = m.find("\r\n", start)) != std::string::npos; start = nl + 2)
    out.push_back(m.substr(start, nl - start));
  CHECK(start == m.size());  // ends with CRLF
  return out;
}

void check_lines(const std::string& m) {
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') REQUIRE((i + 1 < m.size() && m[i + 1] == '\n'));
    if (m[i] == '\n') REQUIRE((i > 0 && m[i - 1] == '\r'));
  }
  for (const auto& l : lines(m)) CHECK(l.size() <= 998);
}

std::string qp_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=' && i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
      i += 2;
    } else if (s[i] == '=') {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string b64_decode(std::string s) {
  std::erase(s, '\r');
  std::erase(s, '\n');
  return base64_decode_lenient(s).value();
}

// The concatenated text of the encoded words of a (folded) field value.
std::string words_decoded(std::string value) {
  std::string out;
  std::regex w(R"(=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=)");
  for (std::sregex_iterator it(value.begin(), value.end(), w), end; it != end; ++it) {
    CHECK(it->str().size() <= 75);
    out += b64_decode((*it)[1]);
  }
  return out;
}

std::string field(const std::string& m, std::string_view name) {
  const size_t end = m.find("\r\n\r\n");
  const std::string head = m.substr(0, end + 2);
  const size_t at = head.find(std::string(name) + ":");
  REQUIRE(at != std::string::npos);
  size_t stop = at;
  while (true) {
    stop = head.find("\r\n", stop);
    if (stop + 2 >= head.size() || (head[stop + 2] != ' ' && head[stop + 2] != '\t')) break;
    stop += 2;
  }
  return head.substr(at + name.size() + 1, stop - at - name.size() - 1);
}

}  // namespace

TEST_CASE("text only: text/plain, quoted-printable, the fields") {
  const auto r = decoded(R"({"from":"Shop <shop@x.test>","to":["b@y.test"],"subject":"Hello","text":"Grüße\nline two = three\n.dot\nFrom me","headers":{"X-Tag":"t1"}})");
  const std::string m = build_message(r, ctx());
  check_lines(m);
  CHECK(m.starts_with("From: Shop <shop@x.test>\r\nTo: b@y.test\r\nSubject: Hello\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <1.ID@host.test>\r\nX-Tag: t1\r\nMIME-Version: 1.0\r\n"));
  CHECK(m.find("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") != std::string::npos);
  const std::string body = m.substr(m.find("\r\n\r\n") + 4);
  CHECK(qp_decode(body) == "Grüße\r\nline two = three\r\n.dot\r\nFrom me\r\n");
  CHECK(body.find("\r\n.") == std::string::npos);
  CHECK(body.find("\r\nFrom ") == std::string::npos);
}

TEST_CASE("quoted-printable: long lines, trailing spaces, every octet") {
  std::string all;
  for (int i = 1; i < 256; ++i)
    if (i != '\r' && i != '\n') all += static_cast<char>(i);
  const std::string in = std::string(300, 'x') + " \r\n" + all + "\t\r\n";
  const std::string q = quoted_printable(in);
  for (const auto& l : lines(q)) {
    CHECK(l.size() <= 76);
    CHECK((l.empty() || (l.back() != ' ' && l.back() != '\t')));
    for (char c : l) CHECK((c == '\t' || (static_cast<unsigned char>(c) >= 32 && static_cast<unsigned char>(c) < 127)));
  }
  CHECK(qp_decode(q) == in);
}

TEST_CASE("text + html + attachments: mixed around alternative") {
  const auto r = decoded(R"({"from":"a@x.test","to":["b@y.test"],"cc":["c@y.test"],"bcc":["secret@y.test"],"text":"t","html":"<p>h</p>",
    "attachments":[{"filename":"r.pdf","content_type":"application/pdf","content":"AAEC/w=="},
                   {"filename":"Übersicht März.txt","content":"aGk="}]})");
  uint64_t n = 0;
  BuildContext c = ctx();
  c.random = [&n] { return 0x1234 + n++; };
  const std::string m = build_message(r, c);
  check_lines(m);
  CHECK(m.find("Cc: c@y.test\r\n") != std::string::npos);
  CHECK(m.find("secret") == std::string::npos);
  std::smatch mixed, alt;
  REQUIRE(std::regex_search(m, mixed, std::regex("multipart/mixed;\r\n boundary=\"([^\"]+)\"")));
  REQUIRE(std::regex_search(m, alt, std::regex("multipart/alternative;\r\n boundary=\"([^\"]+)\"")));
  CHECK(mixed[1] != alt[1]);
  CHECK(mixed[1].str().starts_with("=_sluice_"));
  CHECK(m.ends_with("\r\n\r\n--" + mixed[1].str() + "--\r\n"));
  CHECK(m.find("--" + alt[1].str() + "--\r\n") != std::string::npos);
  // alternative sits inside mixed, before the attachments
  CHECK(m.find("multipart/alternative") > m.find("--" + mixed[1].str() + "\r\n"));
  CHECK(m.find("text/html") < m.find("application/pdf"));
  CHECK(m.find("Content-Type: application/pdf;\r\n name=\"r.pdf\"\r\nContent-Disposition: attachment;\r\n filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n\r\n--") != std::string::npos);
  // RFC 2231 for the non-ASCII name
  CHECK(m.find("filename*0*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.txt") != std::string::npos);
}

TEST_CASE("RFC 2047 subject and names: words <= 75, folded, decoding to the text") {
  std::string subject;
  for (int i = 0; i < 40; ++i) subject += "Grüße € 😀 ";
  const auto r = decoded(R"({"from":"Jörg Müller <j@x.test>","to":["Ünïcödé Nämé <b@y.test>", "Plain, Name <c@y.test>"],"subject":")" + subject + R"(","text":"t"})");
  const std::string m = build_message(r, ctx());
  check_lines(m);
  for (const auto& l : lines(m.substr(0, m.find("\r\n\r\n") + 2))) CHECK(l.size() <= 78);
  CHECK(words_decoded(field(m, "Subject")) == subject);
  CHECK(words_decoded(field(m, "From")) == "Jörg Müller");
  CHECK(field(m, "To").find("\"Plain, Name\" <c@y.test>") != std::string::npos);
}

TEST_CASE("ASCII header values fold at their own spaces") {
  std::string v;
  for (int i = 0; i < 60; ++i) v += "word" + std::to_string(i) + " ";
  v += "end";
  const std::string f = header_field("X-Long", v);
  for (const auto& l : lines(f)) CHECK(l.size() <= 78);
  std::string unfolded = f.substr(8, f.size() - 10);
  std::string out;
  for (size_t i = 0; i < unfolded.size(); ++i) {
    if (unfolded.compare(i, 2, "\r\n") == 0) { ++i; continue; }
    out += unfolded[i];
  }
  CHECK(out == v);
}

TEST_CASE("raw content is returned as decoded; scan_headers") {
  const auto r = decoded(R"({"from":"a@x.test","to":["b@y.test"],"content":"From: a@x.test\nMessage-ID:\n <m1@x.test>\nSubject: s\n\nbody"})");
  const std::string m = build_message(r, ctx());
  CHECK(m == "From: a@x.test\r\nMessage-ID:\r\n <m1@x.test>\r\nSubject: s\r\n\r\nbody\r\n");
  const HeaderScan s = scan_headers(m);
  CHECK(s.from);
  CHECK_FALSE(s.date);
  CHECK(s.message_id);
  CHECK(s.message_id_value == "<m1@x.test>");
  CHECK(m.substr(s.header_end, 4) == "\r\nbo");
  const HeaderScan none = scan_headers("\r\nbody only\r\n");
  CHECK(none.header_end == 0);
  CHECK(scan_headers("X: y\r\n").header_end == 6);
}

TEST_CASE("Date and Message-ID from headers win") {
  const auto r = decoded(R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":{"Message-ID":"<mine@x.test>","date":"Mon, 1 Jan 2024 00:00:00 +0000"}})");
  const std::string m = build_message(r, ctx());
  CHECK(m.find("<1.ID@host.test>") == std::string::npos);
  CHECK(m.find("Date: Tue") == std::string::npos);
  CHECK(m.find("Message-ID: <mine@x.test>\r\n") != std::string::npos);
}
