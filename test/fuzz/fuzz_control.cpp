// fuzz_control — libFuzzer target for the control socket (mta/control):
// every input line is a request, parsed and dispatched against an in-memory
// queue (a real Scheduler holding a few messages, some held or deferred, with
// non-UTF-8 addresses and replies, and two shaping sites); then sluicectl's rendering runs over each
// response and over the raw input read as a response.
// Invariants: no crash, no exception; every response is one line of valid
// JSON, an object whose "ok" is a boolean, with an "error" string when false;
// the queue only changes through a request that answered ok.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string_view>

#include "mta/control/dispatcher.hpp"
#include "mta/control/format.hpp"
#include "mta/control/memory_admin.hpp"

using namespace sluice;
using namespace sluice::control;
using namespace sluice::control::testing;

namespace {

void seed(MemoryAdmin& admin) {
  admin.add(make_envelope("00000000000000A1", kT0 - 3'000'000, "alice@example.org",
                          {"bob@example.net", "carol@example.net"}, 120),
            "Subject: a\r\n\r\nhello\r\n");
  admin.add(make_envelope("00000000000000A2", kT0 - 2'000'000, "",
                          {"x\xff@example.com", "\xe2\x82@example.com"}, 80),
            std::string("\0\xff\r\n", 4));
  admin.add(make_envelope("00000000000000A3", kT0 - 1'000'000, "s\x1b[31m@example.org",
                          {"d@example.info"}, 40),
            "x");
  admin.complete_all(queue::Verdict{queue::Action::defer, "4.7.1",
                                    "451 4.7.1 \xc0\xaf try\n later", "mx\x01.example"});
  admin.hold("00000000000000A3");
  admin.sites = sample_sites();
  admin.sites[0].source = "providers.toml:\x1b]0;x\x07";
  admin.sites[1].automation->reason = "421 \xc0\xaf slow\n down";
}

void check_response(const std::string& line) {
  if (line.find('\n') != std::string::npos) std::abort();
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) std::abort();
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) std::abort();
  if (!ok->get<bool>()) {
    auto e = j.find("error");
    if (e == j.end() || !e->is_string()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  MemoryAdmin admin;
  seed(admin);
  std::ostringstream out, err;

  while (!in.empty()) {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);

    const size_t before = admin.ids().size();
    const size_t completions = admin.completions.size();
    Outcome o = handle_request(line, admin);
    check_response(o.response);
    auto parsed = parse_request(line);
    const bool ok = o.response.starts_with("{\"ok\":true");
    if (!ok && (admin.ids().size() != before || admin.completions.size() != completions)) std::abort();
    if (!o.changes.empty() && !ok) std::abort();
    if (parsed) {
      render(*parsed, o.response, false, out, err);
      render(*parsed, o.response, true, out, err);
    }
    // The raw line as if it were a response (a hostile or broken daemon).
    Request r;
    for (Command c : {Command::list, Command::show, Command::status, Command::hold, Command::shaping}) {
      r.command = c;
      render(r, line, false, out, err);
    }
    out.str("");
    err.str("");
  }
  return 0;
}
