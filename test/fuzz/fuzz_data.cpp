// fuzz_data.cpp — DataReader.
//
// The first input byte picks a split position (and a size limit); the rest is
// the DATA stream. Invariants checked (a violation traps):
//  - the same output, result, error, size and header facts whether the input
//    is fed whole, in two pieces at the split, or byte by byte;
//  - size() == output size, and size() <= max_size;
//  - output is CRLF-clean: no bare CR, no LF without CR before it;
//  - when done, the bytes left in `in` are a suffix of the input; when not,
//    everything was consumed;
//  - mail::TlsRequiredScan (RFC 8689's "TLS-Required: No", what the intake
//    runs over the same stored content) gives the same answer fed whole,
//    byte by byte or in two pieces;
//  - when done without error: every output line ends in CRLF and is at most
//    998 octets, and dot-stuffing the output and appending "." CRLF (what the
//    outbound client sends) decodes back to exactly the same content — so
//    nothing accepted can end an outbound DATA early.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mail/headers.hpp"
#include "mta/proto/data_reader.hpp"

using sluice::proto::DataReader;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Run {
  std::string out;
  size_t consumed = 0;
  bool done = false;
  DataReader::Error error = DataReader::Error::none;
  uint64_t size = 0;
  std::string message_id;
  bool has_date = false, has_message_id = false, has_from = false, in_headers = false;
  bool operator==(const Run&) const = default;
};

// Feeds `input` in pieces: first `first` octets, then `step` at a time
// (0 = the rest at once).
Run run(std::string_view input, size_t first, size_t step, uint64_t max_size) {
  DataReader r(max_size);
  Run res;
  size_t pos = 0;
  bool done = false;
  while (!done && pos < input.size()) {
    size_t n = pos == 0 ? first : (step == 0 ? input.size() - pos : step);
    if (n == 0) n = input.size() - pos;
    n = std::min(n, input.size() - pos);
    std::string_view in = input.substr(pos, n);
    done = r.feed(in, res.out);
    check(done || in.empty());
    pos += n - in.size();
  }
  res.consumed = pos;
  res.done = r.done();
  check(res.done == done);
  res.error = r.error();
  res.size = r.size();
  res.message_id = r.message_id();
  res.has_date = r.has_date();
  res.has_message_id = r.has_message_id();
  res.has_from = r.has_from();
  res.in_headers = r.in_headers();
  check(res.size == res.out.size());
  check(res.size <= max_size);
  check(res.message_id.size() <= 998);
  check(res.done || res.consumed == input.size());
  return res;
}

bool tls_required_no(std::string_view content, size_t first, size_t step) {
  sluice::mail::TlsRequiredScan s;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t n = pos == 0 ? first : (step == 0 ? content.size() - pos : step);
    if (n == 0) n = content.size() - pos;
    n = std::min(n, content.size() - pos);
    s.feed(content.substr(pos, n));
    pos += n;
  }
  return s.tls_required_no();
}

void check_clean(const std::string& out) {
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\r') check(i + 1 < out.size() && out[i + 1] == '\n');
    if (out[i] == '\n') check(i > 0 && out[i - 1] == '\r');
  }
}

std::string dot_stuff(const std::string& content) {
  std::string s;
  bool bol = true;
  for (char c : content) {
    if (bol && c == '.') s.push_back('.');
    s.push_back(c);
    bol = c == '\n';
  }
  s += ".\r\n";
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = input.empty() ? 0 : (static_cast<size_t>(data[0]) * input.size()) / 255;

  for (uint64_t max_size : {UINT64_MAX, static_cast<uint64_t>(data[0])}) {
    const Run whole = run(input, input.size(), 0, max_size);
    check(run(input, split, 0, max_size) == whole);
    check(run(input, 1, 1, max_size) == whole);
    check(run(input, split, 3, max_size) == whole);
    check_clean(whole.out);
    const bool no = tls_required_no(whole.out, whole.out.size(), 0);
    check(tls_required_no(whole.out, 1, 1) == no);
    check(tls_required_no(whole.out, split, 0) == no);

    if (whole.done && whole.error == DataReader::Error::none) {
      check(whole.out.empty() || whole.out.ends_with("\r\n"));
      size_t line = 0;
      for (size_t i = 0; i < whole.out.size(); ++i) {
        if (whole.out[i] == '\r') {
          check(line <= DataReader::max_line);
          line = 0;
          ++i;  // the LF
        } else {
          ++line;
        }
      }
      // Outbound round trip. A content line can only start with '.' if it
      // came stuffed (so it is at most 997 octets) or is a lone ".", so the
      // re-stuffed lines still fit in 998.
      const std::string wire = dot_stuff(whole.out);
      const Run back = run(wire, wire.size(), 0, UINT64_MAX);
      check(back.done);
      check(back.consumed == wire.size());
      check(back.error == DataReader::Error::none);
      check(back.out == whole.out);
    }
  }
  return 0;
}
