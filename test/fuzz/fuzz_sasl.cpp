// fuzz_sasl — libFuzzer target for AUTH payloads (mta/auth/sasl.hpp): base64
// decoding and the SASL PLAIN/LOGIN server exchange, driven by lines taken
// from the input. Invariants: no crash; decode(encode(x)) == x; whatever the
// client sends, every step gives a challenge, credentials within the
// documented bounds, or a reply with a 3xx-5xx code.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "mta/auth/sasl.hpp"

using namespace sluice::auth;

namespace {
void check(const Step& s) {
  if (const auto* c = std::get_if<Credentials>(&s)) {
    if (c->login.empty() || c->login.size() > kMaxLogin || c->password.size() > kMaxPassword)
      std::abort();
  } else if (const auto* r = std::get_if<sluice::proto::Reply>(&s)) {
    if (r->code < 300 || r->code > 599) std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  auto decoded = base64_decode(in);
  if (decoded && base64_decode(base64_encode(*decoded)) != decoded) std::abort();
  if (base64_decode(base64_encode(in)) != std::string(in)) std::abort();

  // First line: the AUTH argument; later lines: responses.
  SaslServer sasl;
  size_t nl = in.find('\n');
  check(sasl.start_command(in.substr(0, nl)));
  while (nl != std::string_view::npos && sasl.active()) {
    in.remove_prefix(nl + 1);
    nl = in.find('\n');
    check(sasl.step(in.substr(0, nl)));
  }
  return 0;
}
