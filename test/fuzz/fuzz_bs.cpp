// fuzz_bs — libFuzzer target for `sluice-sendmail -bs` (mta/sendmail/bs.hpp):
// whatever a local program writes on the pipe, in chunks cut where the input
// says, with end of input at the end. Invariants: no crash; every maildrop
// file the dialogue writes decodes (decode_maildrop, what the daemon
// trusts) to the same envelope it was built from, within the size limit;
// every message answered "250 ... queued as" is one file, and no file is
// written without that answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "mta/sendmail/bs.hpp"
#include "mta/sendmail/maildrop.hpp"

using namespace sluice;
using namespace sluice::sendmail;

namespace {

constexpr uint64_t kLimit = 4096;

class Io : public BsIo {
 public:
  std::string out;
  size_t files = 0;
  void write(std::string_view b) override { out.append(b); }
  std::expected<std::string, IoError> drop(std::string_view file) override {
    auto m = decode_maildrop(file);
    if (!m || m->message.size() > kLimit || m->recipients.empty()) std::abort();
    if (files % 7 == 6) return std::unexpected(IoError{75, "simulated"});  // the 451 path
    ++files;
    return "f" + std::to_string(files);
  }
  Stamp stamp() override {
    Stamp s;
    s.unix_us = 1'769'435'761'123'456;
    s.pid = 1;
    s.random = files;
    s.hostname = "mx.fuzz.test";
    return s;
  }
  int64_t now_us() override { return 1'769'435'761'000'000; }
  void report(std::string_view) override {}
};

size_t count(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Io io;
  Context c;
  c.login = "fuzz";
  c.max_message_size = kLimit;
  c.stamp = io.stamp();
  auto table = std::make_shared<const aliases::Table>(
      aliases::Table{{"root", {"admin@example.com"}}, {"*", {"all@example.com", "b@example.org"}}});
  BsDialogue d(bs_session_config("mx.fuzz.test", kLimit, 20, table), c, io);
  d.start();
  // The first byte picks the chunk size, so reads split anywhere.
  const size_t chunk = in.empty() ? 1 : 1 + static_cast<unsigned char>(in.front()) % 64;
  while (!in.empty() && !d.done()) {
    const size_t n = std::min(chunk, in.size());
    d.feed(in.substr(0, n));
    in.remove_prefix(n);
  }
  d.end_of_input();
  if (count(io.out, "\n250 2.0.0 Ok: queued as ") != io.files || d.queued() != io.files) std::abort();
  return 0;
}
