// sasl.cpp — base64 and the PLAIN/LOGIN server exchange. Pure.
//
// RFC 4954 §4 (SMTP AUTH):
//   auth-command    = "AUTH" SP sasl-mech [SP initial-response] *(CRLF [base64]) [CRLF cancel-response] CRLF
//   initial-response= base64 / "="      ; "=" is an empty initial response
//   cancel-response = "*"
//   continue-req    = "334" SP [base64] CRLF
//   "If the client wishes to cancel the authentication exchange, it issues a
//    line with a single "*". If the server receives such a response, it MUST
//    reject the AUTH command by sending a 501 reply."
//   "If the server cannot BASE64 decode any client response, it MUST reject
//    the AUTH command with a 501 reply."
//   "If the requested authentication mechanism is invalid ... the server
//    rejects the AUTH command with a 504 reply."
// RFC 4616 §2 (PLAIN):
//   message = [authzid] UTF8NUL authcid UTF8NUL passwd
//   authcid = 1*SAFE ; MUST accept up to 255 octets
//   passwd  = 1*SAFE ; MUST accept up to 255 octets
//   SAFE    = any UTF-8 character but NUL
// draft-murchison-sasl-login: the server sends "User Name" and "Password"
// challenges (in practice "Username:" and "Password:", base64
// "VXNlcm5hbWU6" and "UGFzc3dvcmQ6", which is what clients have seen from
// every server for decades) and takes one response to each.
#include "mta/proto/ascii.hpp"
#include "mta/auth/sasl.hpp"

#include <array>
#include <cstdint>
#include <utility>

#include "mta/auth/secret.hpp"

namespace sluice::auth {

using proto::Reply;

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return t;
}
constexpr std::array<int8_t, 256> kDecode = make_decode_table();

constexpr std::string_view kUsernameChallenge = "VXNlcm5hbWU6";  // "Username:"
constexpr std::string_view kPasswordChallenge = "UGFzc3dvcmQ6";  // "Password:"

using ascii::iequals;

using ascii::is_wsp;

Reply cancelled() { return Reply(501, "5.7.0", "Authentication cancelled"); }
Reply bad_base64() { return Reply(501, "5.5.2", "Invalid base64 data"); }
Reply malformed() { return Reply(501, "5.5.2", "Malformed authentication data"); }
Reply unknown_mechanism() { return Reply(504, "5.5.4", "Unrecognized authentication mechanism"); }
Reply authzid_refused() {
  return Reply(535, "5.7.8",
               "Authentication credentials invalid (authorization identity not permitted)");
}

// The decoded form of one client response. Too long (500 5.5.6) is checked on
// the base64 text, before anything is decoded.
std::expected<std::string, Reply> decode_response(std::string_view text) {
  if (text.size() > kMaxResponse) return std::unexpected(reply_line_too_long());
  auto decoded = base64_decode(text);
  if (!decoded) return std::unexpected(bad_base64());
  return std::move(*decoded);
}

// RFC 4954: "=" as the initial response means an empty one.
std::expected<std::string, Reply> decode_initial(std::string_view text) {
  if (text == "=") return std::string();
  return decode_response(text);
}

}  // namespace

// ---- base64 ----

std::string_view to_string(Base64Error e) {
  switch (e) {
    case Base64Error::bad_length: return "length is not a multiple of 4";
    case Base64Error::bad_character: return "invalid character";
    case Base64Error::bad_padding: return "invalid padding";
  }
  return "invalid";
}

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8 |
                       static_cast<uint32_t>(static_cast<unsigned char>(data[i + 2]));
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[v >> 12 & 63]);
    out.push_back(kAlphabet[v >> 6 & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[v >> 12 & 63]);
    out.push_back(rest == 2 ? kAlphabet[v >> 6 & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::expected<std::string, Base64Error> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::unexpected(Base64Error::bad_length);
  std::string out;
  // Sized once and on the heap, so the (possibly secret) bytes are never left
  // behind by a reallocation or a move.
  reserve_secret(out, text.size() / 4 * 3);
  auto fail = [&out](Base64Error e) {
    wipe(out);
    return std::unexpected(e);
  };
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        // Padding: only in the last quantum, only in its last two places,
        // and nothing but more padding after it.
        if (!last || j < 2) return fail(Base64Error::bad_padding);
        ++pad;
        v <<= 6;
        continue;
      }
      const int8_t d = kDecode[static_cast<unsigned char>(c)];
      if (d < 0) return fail(Base64Error::bad_character);
      if (pad > 0) return fail(Base64Error::bad_padding);  // "ab=c"
      v = v << 6 | static_cast<uint32_t>(d);
    }
    // Canonical encodings only: the bits under the padding are zero.
    if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0)) {
      return fail(Base64Error::bad_padding);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>(v >> 8 & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

// ---- Credentials, Challenge ----

Credentials::Credentials(Credentials&& o) noexcept
    : authzid(std::move(o.authzid)),
      login(std::move(o.login)),
      password(std::move(o.password)),
      mechanism(o.mechanism) {
  wipe(o.password);
}

Credentials& Credentials::operator=(Credentials&& o) noexcept {
  if (this != &o) {
    wipe(password);
    authzid = std::move(o.authzid);
    login = std::move(o.login);
    password = std::move(o.password);
    mechanism = o.mechanism;
    wipe(o.password);
  }
  return *this;
}

Credentials::~Credentials() { wipe(password); }

std::string Challenge::wire() const {
  std::string out = "334 ";
  out += text;
  out += "\r\n";
  return out;
}

// ---- mechanisms ----

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  if (iequals(name, "PLAIN")) return Mechanism::plain;
  if (iequals(name, "LOGIN")) return Mechanism::login;
  return std::nullopt;
}

std::string_view to_string(Mechanism m) {
  switch (m) {
    case Mechanism::plain: return "PLAIN";
    case Mechanism::login: return "LOGIN";
  }
  return "?";
}

// ---- SaslServer ----

void SaslServer::reset() {
  stage_ = Stage::idle;
  wipe(username_);
}

Step SaslServer::start(std::string_view mechanism,
                       std::optional<std::string_view> initial_response) {
  reset();
  const auto mech = parse_mechanism(mechanism);
  if (!mech) return unknown_mechanism();
  if (*mech == Mechanism::plain) {
    if (!initial_response) {
      stage_ = Stage::plain_response;
      return Challenge{};
    }
    auto decoded = decode_initial(*initial_response);
    if (!decoded) return std::move(decoded.error());
    Step s = finish_plain(*decoded);
    wipe(*decoded);
    return s;
  }
  if (!initial_response) {
    stage_ = Stage::login_username;
    return Challenge{std::string(kUsernameChallenge)};
  }
  auto decoded = decode_initial(*initial_response);
  if (!decoded) return std::move(decoded.error());
  Step s = take_username(*decoded);
  wipe(*decoded);
  return s;
}

Step SaslServer::start_command(std::string_view arg) {
  size_t i = 0;
  while (i < arg.size() && is_wsp(arg[i])) ++i;
  size_t j = i;
  while (j < arg.size() && !is_wsp(arg[j])) ++j;
  const std::string_view mech = arg.substr(i, j - i);
  while (j < arg.size() && is_wsp(arg[j])) ++j;
  size_t k = j;
  while (k < arg.size() && !is_wsp(arg[k])) ++k;
  const std::string_view initial = arg.substr(j, k - j);
  while (k < arg.size() && is_wsp(arg[k])) ++k;
  if (mech.empty() || k != arg.size()) {
    reset();
    return Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
  }
  if (initial.empty()) return start(mech, std::nullopt);
  return start(mech, initial);
}

Step SaslServer::step(std::string_view line) {
  if (stage_ == Stage::idle) return Reply(503, "5.5.1", "Error: no authentication in progress");
  if (line == "*") {
    reset();
    return cancelled();
  }
  auto decoded = decode_response(line);
  if (!decoded) {
    reset();
    return std::move(decoded.error());
  }
  Step s = stage_ == Stage::plain_response   ? finish_plain(*decoded)
           : stage_ == Stage::login_username ? take_username(*decoded)
                                             : take_password(*decoded);
  wipe(*decoded);
  return s;
}

// PLAIN: authzid NUL authcid NUL passwd, all in one response.
Step SaslServer::finish_plain(std::string_view message) {
  reset();
  const size_t nul1 = message.find('\0');
  const size_t nul2 = nul1 == std::string_view::npos ? nul1 : message.find('\0', nul1 + 1);
  if (nul2 == std::string_view::npos || message.find('\0', nul2 + 1) != std::string_view::npos) {
    return malformed();
  }
  const std::string_view authzid = message.substr(0, nul1);
  const std::string_view login = message.substr(nul1 + 1, nul2 - nul1 - 1);
  const std::string_view password = message.substr(nul2 + 1);
  if (login.empty() || password.empty()) return malformed();
  if (authzid.size() > kMaxAuthzid || login.size() > kMaxLogin || password.size() > kMaxPassword) {
    return reply_line_too_long();
  }
  // Acting as someone else (proxy authorization) is not offered: an authzid
  // is allowed only when it names the login itself (byte for byte).
  if (!authzid.empty() && authzid != login) return authzid_refused();
  Credentials c;
  c.mechanism = Mechanism::plain;
  c.authzid = std::string(authzid);
  c.login = std::string(login);
  reserve_secret(c.password, password.size());
  c.password.assign(password);
  return c;
}

Step SaslServer::take_username(std::string_view username) {
  reset();
  if (username.empty() || username.find('\0') != std::string_view::npos) return malformed();
  if (username.size() > kMaxLogin) return reply_line_too_long();
  username_.assign(username);
  stage_ = Stage::login_password;
  return Challenge{std::string(kPasswordChallenge)};
}

Step SaslServer::take_password(std::string_view password) {
  if (password.empty() || password.find('\0') != std::string_view::npos) {
    reset();
    return malformed();
  }
  if (password.size() > kMaxPassword) {
    reset();
    return reply_line_too_long();
  }
  Credentials c;
  c.mechanism = Mechanism::login;
  c.login = std::move(username_);
  reserve_secret(c.password, password.size());
  c.password.assign(password);
  reset();
  return c;
}

// ---- replies around the exchange ----

Reply reply_success() { return Reply(235, "2.7.0", "Authentication successful"); }
Reply reply_failed() { return Reply(535, "5.7.8", "Authentication credentials invalid"); }
Reply reply_temporary() { return Reply(454, "4.7.0", "Temporary authentication failure"); }
Reply reply_line_too_long() {
  return Reply(500, "5.5.6", "Authentication exchange line is too long");
}

}  // namespace sluice::auth
