// request.hpp — the JSON body of POST /api/v1/messages (docs/http-api.md,
// "Sending mail"), decoded and checked. Pure: no I/O, no clock, no logs;
// never throws (nlohmann is used with allow_exceptions=false and every field
// is type-checked before it is read).
//
// Two forms, exclusive:
//   raw         {"from", "to": [...], "content"}: content is a whole RFC 5322
//               message; its line ends become CRLF (normalise_content).
//   structured  {"from", "to", "cc", "bcc", "subject", "text", "html",
//               "headers": {name: value}, "attachments": [{"filename",
//               "content_type", "content" (base64)}]}: built into MIME by
//               build_message (api/mime.hpp). "cc" is written as a Cc field
//               and "bcc" is envelope only; both are optional extras beyond
//               SPEC's list.
// "from" and every recipient is an address as MAIL FROM / RCPT TO take it
// (proto::parse_path, without the brackets; a domain is required); in the
// structured form a display name may come first: "Name <a@b.example>".
//
// Failure is a FieldError naming the field as a JSON path ("to[2]",
// "attachments[0].content", "headers.X-Tag") and saying what is wrong, for
// the 400 answer. Nothing the caller sent is echoed back except field names
// of "headers" (checked to be printable ASCII first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::api {

struct FieldError {
  std::string field;    // "" when the body as a whole is wrong (not JSON, not an object)
  std::string message;  // what is wrong, one line
};

struct Address {
  std::string name;     // display name ("" none), UTF-8, no control characters
  std::string address;  // "local@domain" as MAIL FROM / RCPT TO take it
};

struct Attachment {
  std::string filename;      // UTF-8, no control characters, no '/' or '\'
  std::string content_type;  // "type/subtype[; params]", ASCII; default application/octet-stream
  std::string content;       // the decoded bytes
};

struct MessageRequest {
  Address from;
  std::vector<Address> to, cc, bcc;  // cc/bcc: structured form only
  bool raw = false;                  // the "content" form
  std::string content;               // raw: the message, CRLF lines
  // Structured form.
  bool has_subject = false;
  std::string subject;
  bool has_text = false, has_html = false;
  std::string text, html;  // as sent (line ends are made CRLF when built)
  std::vector<std::pair<std::string, std::string>> headers;  // in the order sent
  std::vector<Attachment> attachments;

  // Every envelope recipient: to, cc and bcc, each address once (compared
  // as written, as RCPT TO duplicates are).
  std::vector<std::string> recipients() const;
  bool smtputf8() const;  // an address with non-ASCII octets
};

struct Limits {
  size_t max_recipients = 1000;  // limits.max_recipients
};

std::expected<MessageRequest, FieldError> decode_request(std::string_view body, const Limits& limits);

// "\r\n", "\n" and a lone "\r" all become "\r\n"; the result ends with CRLF
// unless it is empty.
std::string normalise_line_ends(std::string_view s);

// Base64 (RFC 4648 §4, standard alphabet) that tolerates line breaks and
// spaces between the characters, as mail and many encoders write it, and
// missing '=' padding. Anything else outside the alphabet is an error.
std::expected<std::string, std::string> base64_decode_lenient(std::string_view text);

// Header field names the structured form writes itself and that "headers"
// may therefore not set (compared ignoring ASCII case).
bool reserved_header(std::string_view name);

}  // namespace sluice::api
