// fuzz_command.cpp — LineReader + parse_command (+ the grammar helpers).
//
// Invariants checked (a violation traps):
//  - LineReader: lines never hold a LF, respect the 512-octet limit, and are
//    the same whether the input comes whole or byte by byte.
//  - parse_command: every error reply has a code in 200..599, an enhanced
//    code of the same class, and renders as exactly one CRLF-ended line.
//  - A parsed MAIL/RCPT mailbox, written back as "<" + str() + ">", parses
//    again to the same mailbox; parameters are well-formed and unique.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mta/proto/command.hpp"
#include "mta/proto/line_reader.hpp"

using namespace sluice::proto;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_reply(const Reply& r) {
  check(r.code >= 200 && r.code <= 599);
  check(!r.enhanced.empty());
  check(r.enhanced[0] == static_cast<char>('0' + r.code / 100));
  const std::string w = r.wire();
  check(w.size() >= 5 && w.ends_with("\r\n"));
  check(w.find('\n') == w.size() - 1);
  check(w.find('\r') == w.size() - 2);
}

void check_command(const Command& c) {
  if (c.verb == Verb::mail || c.verb == Verb::rcpt) {
    const bool mail = c.verb == Verb::mail;
    check(mail || !c.path.empty());
    auto again = parse_path("<" + c.path.str() + ">", mail);
    check(again.has_value());
    check(again->local == c.path.local);
    check(again->domain == c.path.domain);
    check(c.path.domain.empty() || c.path.domain[0] == '[' || valid_domain(c.path.domain));
    for (size_t i = 0; i < c.params.size(); ++i) {
      const Param& p = c.params[i];
      check(!p.keyword.empty());
      for (char ch : p.keyword) check(!(ch >= 'a' && ch <= 'z'));
      check(!p.value || !p.value->empty());
      check(c.find(p.keyword) == &p);
    }
  } else {
    check(c.path.empty());
    check(c.params.empty());
  }
  if (c.verb == Verb::bdat) check(parse_bdat(c.arg).has_value());
  check(!to_string(c.verb).empty());
}

std::vector<std::string> lines_of(std::string_view input, bool bytewise) {
  LineReader reader(Limits::command_line);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < input.size()) {
    const size_t n = bytewise ? 1 : input.size() - pos;
    std::string_view in = input.substr(pos, n);
    while (auto line = reader.next(in)) {
      if (line->too_long) {
        check(line->text.empty());
        lines.emplace_back("\n");  // marker: cannot be a real line
      } else {
        check(line->text.size() + 2 <= Limits::command_line);
        check(line->text.find('\n') == std::string_view::npos);
        lines.emplace_back(line->text);
      }
    }
    check(in.empty());
    check(reader.buffered() < Limits::command_line);
    pos += n;
  }
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto lines = lines_of(input, false);
  check(lines == lines_of(input, true));
  for (const std::string& line : lines) {
    if (line == "\n") continue;
    auto cmd = parse_command(line);
    if (cmd) {
      check_command(*cmd);
    } else {
      check_reply(cmd.error());
    }
  }

  // The helpers on the raw input too.
  for (bool allow_null : {false, true}) {
    auto m = parse_path(input, allow_null);
    if (m) {
      auto again = parse_path("<" + m->str() + ">", allow_null);
      check(again && again->local == m->local && again->domain == m->domain);
    } else {
      check_reply(m.error());
    }
  }
  if (valid_domain(input)) check(input.size() <= Limits::domain);
  (void)valid_domain(input, false);
  (void)valid_address_literal(input);
  (void)parse_bdat(input);
  return 0;
}
