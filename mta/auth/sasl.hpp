// sasl.hpp — the server side of SMTP AUTH (RFC 4954) for the PLAIN
// (RFC 4616) and LOGIN (draft-murchison-sasl-login) mechanisms, and the
// strict base64 (RFC 4648 §4) it is carried in. Pure: no I/O, no clocks, no
// logs, no password checking (that is UserDb::verify, run off the loop by
// Verifier).
//
// A SaslServer runs one exchange at a time:
//   start(mechanism, initial_response) or start_command(AUTH argument)
//     -> Challenge   send challenge.wire() ("334 <base64>"); every following
//                    client line goes to step() until it returns something
//                    other than a Challenge (active() tells the session);
//     -> Credentials the client has said who it is; check them (Verifier),
//                    then answer reply_success() or reply_failed();
//     -> Reply       the exchange failed; send it (every such reply is a
//                    failed AUTH attempt for the session's counters).
// After Credentials or a Reply the server is idle again and can be reused.
//
// Replies produced here:
//   504 5.5.4  unknown mechanism
//   501 5.7.0  the client sent "*" (cancel)
//   501 5.5.2  a response is not valid base64, or decodes to something the
//              mechanism does not allow (PLAIN without exactly two NULs, an
//              empty login or password, a NUL in a LOGIN field)
//   501 5.5.4  AUTH argument syntax (more than mechanism + initial response)
//   503 5.5.1  step() with no exchange active (a session bug)
//   500 5.5.6  a response longer than the bounds below
//   535 5.7.8  PLAIN with an authorization identity different from the login:
//              Sluice lets nobody act for another user, so this is an
//              authentication failure rather than a syntax error (what Cyrus
//              SASL and Dovecot do when proxy authorization is refused)
// and, for the session to send after verification: reply_success()
// (235 2.7.0), reply_failed() (535 5.7.8), reply_temporary() (454 4.7.0),
// reply_line_too_long() (500 5.5.6, when the LineReader cuts an AUTH line).
// No reply ever contains anything the client sent in the exchange.
//
// Secrets: Credentials::password is wiped by Credentials' destructor; code
// that moves it on (into Verifier::verify) leaves nothing behind because a
// moved-from string is wiped too. Intermediate decoded buffers are wiped here.
// The base64 text of the responses lives in the caller's buffers (the read
// buffer, LineReader, proto::Command::arg); the session wipes those once
// start()/step() have returned.
#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "mta/proto/reply.hpp"

namespace sluice::auth {

// ---- base64, RFC 4648 §4 (standard alphabet, '=' padding) ----

enum class Base64Error {
  bad_length,     // not a multiple of 4 characters
  bad_character,  // outside A-Z a-z 0-9 + / = (whitespace included)
  bad_padding,    // '=' other than one or two at the very end, or non-zero
                  // bits left over under the padding
};
std::string_view to_string(Base64Error e);

std::string base64_encode(std::string_view data);
// Strict: the canonical encoding only, so that every byte string has exactly
// one accepted text. "" decodes to "". On error nothing decoded is kept.
std::expected<std::string, Base64Error> base64_decode(std::string_view text);

// ---- SASL ----

enum class Mechanism { plain, login };
// Case-insensitive ("plain" is PLAIN), as mechanism names are (RFC 4422 §3.1).
std::optional<Mechanism> parse_mechanism(std::string_view name);
std::string_view to_string(Mechanism m);
// For the EHLO keyword line: "AUTH " + kMechanisms.
inline constexpr std::string_view kMechanisms = "PLAIN LOGIN";

// Bounds on decoded fields. RFC 4616 asks servers to accept at least 255
// octets of authcid and of passwd; passwords get more room for passphrases.
inline constexpr size_t kMaxLogin = 255;
inline constexpr size_t kMaxAuthzid = 255;
inline constexpr size_t kMaxPassword = 1024;
// The longest response that can carry fields within those bounds (PLAIN:
// authzid NUL login NUL password), in base64 characters. Longer responses are
// refused before they are decoded.
inline constexpr size_t kMaxResponse = (kMaxAuthzid + kMaxLogin + kMaxPassword + 2 + 2) / 3 * 4;

struct Credentials {
  std::string authzid;   // PLAIN's authorization identity; empty if not sent
                         // (and always for LOGIN). When non-empty it equals login.
  std::string login;     // authentication identity, 1..kMaxLogin octets, no NUL
  std::string password;  // 1..kMaxPassword octets, no NUL. Wiped on destruction.
  Mechanism mechanism = Mechanism::plain;  // for the log (sasl_method=)

  Credentials() = default;
  Credentials(Credentials&& o) noexcept;
  Credentials& operator=(Credentials&& o) noexcept;
  Credentials(const Credentials&) = delete;  // no stray copies of a password
  Credentials& operator=(const Credentials&) = delete;
  ~Credentials();
};

struct Challenge {
  std::string text;  // base64; empty for PLAIN's empty challenge
  // "334 " text CRLF. The space is kept even when text is empty
  // (RFC 4954: continue-req = "334" SP [base64] CRLF); proto::Reply would
  // drop it, which is why a challenge is not a Reply.
  std::string wire() const;
};

using Step = std::variant<Challenge, Credentials, proto::Reply>;

class SaslServer {
 public:
  SaslServer() = default;
  SaslServer(const SaslServer&) = delete;
  SaslServer& operator=(const SaslServer&) = delete;
  ~SaslServer() { reset(); }

  // Begin an exchange. initial_response is the AUTH command's second word as
  // sent (base64, or "=" for an empty response); nullopt when there was none.
  // LOGIN accepts an initial response as the user name (as Postfix, Dovecot
  // and Exchange do) and then asks only for the password. Starting while an
  // exchange is active abandons the old one.
  Step start(std::string_view mechanism, std::optional<std::string_view> initial_response);
  // Same, from the AUTH command's argument "MECHANISM [initial-response]"
  // (proto::Command::arg). More words: 501 5.5.4.
  Step start_command(std::string_view arg);
  // One client line (without CRLF) while active(). "*" cancels. Called while
  // not active it returns 503 5.5.1 (a session bug, never a client's doing).
  Step step(std::string_view line);

  // An exchange is waiting for a client line.
  bool active() const { return stage_ != Stage::idle; }
  // Abandon any exchange (connection closed, timeout) and wipe its state.
  void reset();

 private:
  enum class Stage { idle, plain_response, login_username, login_password };
  Step finish_plain(std::string_view response);
  Step take_username(std::string_view response);
  Step take_password(std::string_view response);

  Stage stage_ = Stage::idle;
  std::string username_;  // LOGIN: the user name while waiting for the password
};

// Replies for the session around the exchange.
proto::Reply reply_success();        // 235 2.7.0 Authentication successful
proto::Reply reply_failed();         // 535 5.7.8 Authentication credentials invalid
proto::Reply reply_temporary();      // 454 4.7.0 Temporary authentication failure
proto::Reply reply_line_too_long();  // 500 5.5.6 Authentication exchange line is too long

}  // namespace sluice::auth
