// http.cpp — the MTA-STS policy request and the incremental HTTP/1.1
// response parser (RFC 9112). See http.hpp for the rules.
//
// The state machine, one state per kind of input expected:
//   status_line -> header_line* -> (1xx: status_line again)
//                               -> done (204, 304, Content-Length: 0)
//                               -> body_length -> done
//                               -> body_close -> done at finish()
//                               -> chunk_size_line -> chunk_data -> chunk_data_end -> chunk_size_line ...
//                                  size 0 -> trailer_line* -> done
// Lines (status, fields, chunk sizes, trailers) are collected in line_ up to
// a cap, so memory held is bounded by kMaxHead + kMaxBody.
#include "sts/http.hpp"

#include <algorithm>

#include "mta/proto/ascii.hpp"
#include "sts/policy.hpp"

namespace sluice::sts {

namespace {

constexpr size_t kMaxChunkLine = 1024;  // a chunk-size line with extensions

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// tchar (RFC 9110 §5.6.2).
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Control octets other than HTAB (a line's CR is gone by then).
bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && ascii::is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && ascii::is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string> policy_host(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  std::string host = "mta-sts.";
  for (char c : domain) host += ascii::to_lower(c);
  if (!is_host_name(host)) return std::nullopt;
  return host;
}

std::string policy_request(std::string_view host) {
  std::string r = "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ";
  r += host;
  r += "\r\nConnection: close\r\n\r\n";
  return r;
}

ResponseParser::Result ResponseParser::result() const {
  if (state_ == State::done) return Result::done;
  if (state_ == State::error) return Result::error;
  return Result::more;
}

ResponseParser::Result ResponseParser::fail(Error e) {
  state_ = State::error;
  error_ = e;
  line_.clear();
  response_.body.clear();  // never half a body: the same however the input came
  return Result::error;
}

// `cap` counts the line's octets with its LF. A line that cannot end within
// it is refused as soon as that is known, the same whether it came whole or
// in pieces (content >= cap in both cases).
ResponseParser::Line ResponseParser::take_line(std::string_view& in, size_t cap) {
  size_t lf = in.find('\n');
  size_t take = lf == std::string_view::npos ? in.size() : lf;
  if (line_.size() + take >= cap) return Line::too_long;
  line_.append(in.substr(0, take));
  if (lf == std::string_view::npos) {
    in = {};
    return Line::more;
  }
  in.remove_prefix(take + 1);
  line_octets_ = line_.size() + 1;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  bare_cr_ = line_.find('\r') != std::string::npos;
  return Line::complete;
}

ResponseParser::Result ResponseParser::feed(std::string_view& in) {
  while (!in.empty()) {
    Result r = Result::more;
    switch (state_) {
      case State::done: return Result::done;
      case State::error: return Result::error;

      case State::status_line:
      case State::header_line:
      case State::trailer_line: {
        Line l = take_line(in, kMaxHead - head_bytes_);
        if (l == Line::too_long) return fail(Error::head_too_big);
        if (l == Line::more) break;
        head_bytes_ += line_octets_;
        if (bare_cr_ || has_ctl(line_)) {
          r = fail(state_ == State::status_line ? Error::bad_status_line : Error::bad_header);
        } else if (state_ == State::status_line) {
          r = on_status_line();
        } else if (state_ == State::header_line) {
          r = on_header_line();
        } else {
          // Trailer fields are read and dropped; folding is refused as in the head.
          if (line_.empty()) {
            state_ = State::done;
            r = Result::done;
          } else if (ascii::is_wsp(line_[0])) {
            r = fail(Error::folded_header);
          }
        }
        line_.clear();
        break;
      }

      case State::chunk_size_line: {
        Line l = take_line(in, kMaxChunkLine);
        if (l == Line::too_long) return fail(Error::bad_chunk);
        if (l == Line::more) break;
        r = bare_cr_ || has_ctl(line_) ? fail(Error::bad_chunk) : on_chunk_size_line();
        line_.clear();
        break;
      }

      case State::chunk_data_end: {
        Line l = take_line(in, 2);  // CRLF or LF, nothing else
        if (l == Line::too_long) return fail(Error::bad_chunk);
        if (l == Line::more) break;
        bool ok = line_.empty() && !bare_cr_;
        line_.clear();
        if (!ok) return fail(Error::bad_chunk);
        state_ = State::chunk_size_line;
        break;
      }

      case State::body_length:
      case State::chunk_data: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
        response_.body.append(in.substr(0, n));
        in.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) {
          if (state_ == State::body_length) {
            state_ = State::done;
            r = Result::done;
          } else {
            state_ = State::chunk_data_end;
          }
        }
        break;
      }

      case State::body_close: {
        if (response_.body.size() + in.size() > kMaxBody) return fail(Error::body_too_big);
        response_.body.append(in);
        in = {};
        break;
      }
    }
    if (r != Result::more) return r;
  }
  return result();
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ]; the SP
// after the code is tolerated missing when nothing follows.
ResponseParser::Result ResponseParser::on_status_line() {
  std::string_view l = line_;
  if (l.size() < 12 || !l.starts_with("HTTP/1.") || !is_digit(l[7]) || l[8] != ' ')
    return fail(Error::bad_status_line);
  std::string_view code = l.substr(9, 3);
  if (code[0] < '1' || code[0] > '5' || !is_digit(code[1]) || !is_digit(code[2]))
    return fail(Error::bad_status_line);
  if (l.size() > 12 && l[12] != ' ') return fail(Error::bad_status_line);
  response_.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  state_ = State::header_line;
  return Result::more;
}

ResponseParser::Result ResponseParser::on_header_line() {
  if (line_.empty()) return on_head_end();
  if (ascii::is_wsp(line_[0])) return fail(Error::folded_header);
  std::string_view l = line_;
  size_t colon = l.find(':');
  if (colon == 0 || colon == std::string_view::npos) return fail(Error::bad_header);
  std::string_view name = l.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(), is_tchar)) return fail(Error::bad_header);
  std::string_view value = trim_ows(l.substr(colon + 1));

  if (ascii::iequals(name, "Content-Length")) {
    if (content_length_) return fail(Error::duplicate_header);
    if (value.empty() || !std::all_of(value.begin(), value.end(), is_digit)) return fail(Error::bad_content_length);
    uint64_t n = 0;
    for (char c : value) n = std::min<uint64_t>(n * 10 + static_cast<uint64_t>(c - '0'), UINT64_MAX / 16);
    content_length_ = n;
  } else if (ascii::iequals(name, "Transfer-Encoding")) {
    if (seen_te_) return fail(Error::duplicate_header);
    seen_te_ = true;
    if (!ascii::iequals(value, "chunked")) return fail(Error::bad_transfer_encoding);
  } else if (ascii::iequals(name, "Content-Type")) {
    if (seen_type_) return fail(Error::duplicate_header);
    seen_type_ = true;
    response_.content_type = value;
  } else if (ascii::iequals(name, "Location")) {
    if (seen_location_) return fail(Error::duplicate_header);
    seen_location_ = true;
    response_.location = value;
  }
  return Result::more;
}

ResponseParser::Result ResponseParser::on_head_end() {
  int status = response_.status;
  if (status < 200) {
    // An interim response (100, 103): the real one follows. head_bytes_
    // keeps counting, so a stream of them still ends at kMaxHead.
    response_ = Response{};
    content_length_.reset();
    seen_te_ = seen_type_ = seen_location_ = false;
    state_ = State::status_line;
    return Result::more;
  }
  if (seen_te_ && content_length_) return fail(Error::bad_transfer_encoding);
  if (status == 204 || status == 304) {
    state_ = State::done;
    return Result::done;
  }
  if (seen_te_) {
    state_ = State::chunk_size_line;
    return Result::more;
  }
  if (content_length_) {
    if (*content_length_ > kMaxBody) return fail(Error::body_too_big);
    remaining_ = *content_length_;
    state_ = remaining_ == 0 ? State::done : State::body_length;
    return state_ == State::done ? Result::done : Result::more;
  }
  state_ = State::body_close;
  return Result::more;
}

// chunk-size [ chunk-ext ]: hex digits, then extensions (BWS ";" ...) ignored.
ResponseParser::Result ResponseParser::on_chunk_size_line() {
  std::string_view l = line_;
  size_t i = 0;
  uint64_t size = 0;
  while (i < l.size() && hex_value(l[i]) >= 0) {
    size = std::min<uint64_t>(size * 16 + static_cast<uint64_t>(hex_value(l[i])), UINT64_MAX / 32);
    ++i;
  }
  if (i == 0) return fail(Error::bad_chunk);
  std::string_view rest = trim_ows(l.substr(i));
  if (!rest.empty() && rest[0] != ';') return fail(Error::bad_chunk);
  if (size > kMaxBody - response_.body.size()) return fail(Error::body_too_big);
  if (size == 0) {
    state_ = State::trailer_line;
    return Result::more;
  }
  remaining_ = size;
  state_ = State::chunk_data;
  return Result::more;
}

ResponseParser::Result ResponseParser::finish() {
  if (state_ == State::body_close) state_ = State::done;
  if (state_ == State::done || state_ == State::error) return result();
  return fail(Error::truncated);
}

std::string_view error_name(ResponseParser::Error e) {
  using E = ResponseParser::Error;
  switch (e) {
    case E::none: return "none";
    case E::bad_status_line: return "bad_status_line";
    case E::bad_header: return "bad_header";
    case E::folded_header: return "folded_header";
    case E::head_too_big: return "head_too_big";
    case E::duplicate_header: return "duplicate_header";
    case E::bad_content_length: return "bad_content_length";
    case E::bad_transfer_encoding: return "bad_transfer_encoding";
    case E::bad_chunk: return "bad_chunk";
    case E::body_too_big: return "body_too_big";
    case E::truncated: return "truncated";
  }
  return "unknown";
}

bool is_text_plain(std::string_view content_type) {
  std::string_view type = trim_ows(content_type.substr(0, content_type.find(';')));
  return ascii::iequals(type, "text/plain");
}

std::expected<std::string_view, FetchProblem> judge(const Response& r) {
  if (r.status >= 300 && r.status < 400) return std::unexpected(FetchProblem::redirect);
  if (r.status != 200) return std::unexpected(FetchProblem::http_status);
  if (!is_text_plain(r.content_type)) return std::unexpected(FetchProblem::content_type);
  return std::string_view(r.body);
}

}  // namespace sluice::sts
