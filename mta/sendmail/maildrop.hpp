// maildrop.hpp — the maildrop file: how sluice-sendmail hands a message to
// sluiced through <spool_dir>/maildrop (docs/sendmail.md). Pure: no I/O;
// safe from any thread.
//
// Format, version 1 (envelope lines end with LF, the message with CRLF):
//
//   SLUICE-MAILDROP 1\n
//   sender alice@example.com\n      "sender" alone for the null sender <>
//   rcpt bob@example.net\n          one per recipient, at least one
//   rcpt carol@example.org\n
//   size 1234\n                     octets of the message that follows
//   \n
//   <message: header and body, every line ending in CRLF>
//
// The lines come in exactly this order; there is nothing else. Addresses
// are in their SMTP form without angle brackets (valid_address in
// addresses.hpp: dot-string or quoted-string local part, host name or IP
// literal domain, at most 254 octets). A later format change raises the
// version number; a decoder refuses versions it does not know.
//
// decode_maildrop() reads files written by unprivileged users, so it
// trusts nothing: it never crashes, never allocates beyond the input's size
// (plus per-recipient overhead), and refuses (with one line saying why)
//   - a missing or unknown "SLUICE-MAILDROP N" line;
//   - an envelope line over kMaxEnvelopeLine octets, or one holding CR or
//     NUL, or an unknown or misplaced keyword;
//   - an invalid sender or recipient address, no recipient, or more than
//     kMaxRecipients of them (duplicates — same_address — are dropped
//     silently and do not count);
//   - a size that is not a decimal number or does not match what follows;
//   - a message with a NUL, a CR not followed by LF, a LF not preceded by
//     CR, a line over 998 octets, or a last line without CRLF.
// So what it returns satisfies the same invariants as content received
// over SMTP. encode_maildrop() applies the same checks before writing (and
// refuses duplicate recipients rather than dropping them), so
// decode_maildrop(encode_maildrop(m)) == m for every m it accepts.
//
// Who submitted the file is not in it: the daemon takes the submitting
// user from the file's owner (st_uid), which the kernel sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sendmail {

inline constexpr std::string_view kMaildropMagic = "SLUICE-MAILDROP";
inline constexpr int kMaildropVersion = 1;
inline constexpr size_t kMaxRecipients = 10'000;
inline constexpr size_t kMaxEnvelopeLine = 1024;  // octets, LF excluded
inline constexpr size_t kMaxMessageLine = 998;    // octets, CRLF excluded

struct Maildrop {
  std::string sender;                   // "" is the null sender <>
  std::vector<std::string> recipients;  // at least one
  std::string message;                  // CRLF lines
  friend bool operator==(const Maildrop&, const Maildrop&) = default;
};

std::expected<std::string, std::string> encode_maildrop(const Maildrop& m);
std::expected<Maildrop, std::string> decode_maildrop(std::string_view file);

// Why `message` could not be stored as it is (see above), or nullopt.
std::optional<std::string> check_message(std::string_view message);

// A fresh maildrop file name: the time in microseconds (13 hex digits, so
// names sort by submission time), the process id (8) and 64 random bits (16):
// 37 characters of [0-9a-f]. The file is written as NAME.tmp and renamed to
// NAME when complete; readers skip names ending in ".tmp".
std::string maildrop_file_name(int64_t unix_us, uint32_t pid, uint64_t random);
// 1..64 characters of [0-9A-Za-z]: a complete maildrop file's name.
bool valid_maildrop_file_name(std::string_view name);

}  // namespace sluice::sendmail
