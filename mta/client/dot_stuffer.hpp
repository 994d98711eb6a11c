// dot_stuffer.hpp — turns stored message content into the DATA stream
// (RFC 5321 §4.5.2 transparency, §4.1.1.4 end of data). Pure, streaming.
//
// feed(chunk, out) appends the wire form of `chunk` to `out`; finish(out)
// appends the end of data. Content may arrive in chunks split anywhere
// (inside a CRLF, right before a leading dot): the state carried between
// calls makes the output independent of the split.
//
// What goes out:
//   - every line that starts with "." gets one more "." in front;
//   - every line ends with CRLF: CRLF stays CRLF, and a bare CR or a bare LF
//     (which the spool never stores — the server converts bare LF and
//     refuses bare CR — but this is the last gate before the wire) becomes
//     CRLF too, so the stream can contain no CR or LF outside a CRLF pair;
//   - finish() adds a CRLF if the content did not end with a line end, then
//     ".\r\n". Empty content sends just ".\r\n" (DATA's 354 leaves the stream
//     at a line start).
// Hence the only "\r\n.\r\n" in the stream is the one finish() writes:
// nothing a client put in a message can end the DATA early (the "SMTP
// smuggling" class). Lines are not folded: the spool holds lines of at most
// 998 octets, and one that starts with "." came in stuffed, so the stuffed
// line is again at most 998 octets.
//
// After finish() the stuffer is reset and can be used for the next message.
#pragma once

#include <string>
#include <string_view>

namespace sluice::client {

class DotStuffer {
 public:
  void feed(std::string_view chunk, std::string& out);
  void finish(std::string& out);
  void reset() {
    bol_ = true;
    after_cr_ = false;
  }

 private:
  bool bol_ = true;        // the next octet starts a line
  bool after_cr_ = false;  // the last octet was a CR (already sent as CRLF)
};

}  // namespace sluice::client
