// request_parser.cpp — see request_parser.hpp.
//
// llhttp calls back while it parses; the callbacks only collect (the
// request line, the fields, the body) and count. Two of them pause the
// parser: the end of the header section (the limits and Expect are decided
// there, before any byte of the body is parsed) and the end of a message
// (one event per request). llhttp reports where it paused, so the bytes of
// the header section are counted exactly: it is never given more than the
// rest of the kMaxHeaderBytes budget plus one byte.
#include "http/request_parser.hpp"

#include <fmt/format.h>
#include <llhttp.h>

#include <algorithm>
#include <chrono>

namespace sluice::http {

namespace {

constexpr size_t kMaxChunkExtensionBytes = 4096;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

struct RequestParser::Impl {
  llhttp_t p;
  llhttp_settings_t settings;
  uint64_t max_body;
  Phase phase = Phase::idle;
  enum class Stop { none, headers, message } stop = Stop::none;
  Request req;
  std::string field, value;
  size_t head_bytes = 0;     // of this message's request line and header section
  size_t trailer_bytes = 0;  // of a chunked body's trailer fields
  size_t trailer_fields = 0;
  size_t ext_bytes = 0;  // chunk extensions
  bool headers_done = false;
  // Set by a callback that refuses (then it returns -1: HPE_USER).
  int cb_status = 0;
  std::string cb_reason;
  Event error;  // kind == error once dead

  static Impl& of(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

  int refuse(int status, std::string reason) {
    cb_status = status;
    cb_reason = std::move(reason);
    return -1;
  }

  void reset_message() {
    req = Request{};
    field.clear();
    value.clear();
    head_bytes = trailer_bytes = trailer_fields = ext_bytes = 0;
    headers_done = false;
  }

  explicit Impl(uint64_t max) : max_body(max) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      auto& s = of(p);
      s.reset_message();
      s.phase = Phase::head;
      return 0;
    };
    settings.on_method = [](llhttp_t* p, const char* at, size_t n) {
      of(p).req.method.append(at, n);
      return 0;
    };
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      of(p).req.target.append(at, n);
      return 0;
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      auto& s = of(p);
      if (s.headers_done) {
        s.trailer_bytes += n;
        if (s.trailer_bytes > kMaxHeaderBytes) return s.refuse(431, "trailer section too large");
        return 0;
      }
      s.field.append(at, n);
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto& s = of(p);
      if (s.headers_done) {
        s.trailer_bytes += n;
        if (s.trailer_bytes > kMaxHeaderBytes) return s.refuse(431, "trailer section too large");
        return 0;
      }
      s.value.append(at, n);
      return 0;
    };
    settings.on_header_value_complete = [](llhttp_t* p) {
      auto& s = of(p);
      if (s.headers_done) {  // a trailer field: counted, not kept
        if (++s.trailer_fields > kMaxHeaderFields) return s.refuse(431, "too many trailer fields");
        return 0;
      }
      if (s.req.headers.size() >= kMaxHeaderFields)
        return s.refuse(431, fmt::format("more than {} header fields", kMaxHeaderFields));
      s.req.headers.push_back({std::move(s.field), std::string(trim(s.value))});
      s.field.clear();
      s.value.clear();
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      auto& s = of(p);
      s.headers_done = true;
      s.stop = Stop::headers;
      return static_cast<int>(HPE_PAUSED);
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
      auto& s = of(p);
      if (n > s.max_body - s.req.body.size())
        return s.refuse(413, fmt::format("body larger than {} bytes", s.max_body));
      s.req.body.append(at, n);
      return 0;
    };
    auto extension = [](llhttp_t* p, const char*, size_t n) {
      auto& s = of(p);
      s.ext_bytes += n;
      if (s.ext_bytes > kMaxChunkExtensionBytes) return s.refuse(400, "chunk extensions too long");
      return 0;
    };
    settings.on_chunk_extension_name = extension;
    settings.on_chunk_extension_value = extension;
    settings.on_message_complete = [](llhttp_t* p) {
      of(p).stop = Stop::message;
      return static_cast<int>(HPE_PAUSED);
    };
    llhttp_init(&p, HTTP_REQUEST, &settings);
    p.data = this;
  }

  Event fail(int status, std::string reason) {
    phase = Phase::done;
    error.kind = Event::Kind::error;
    error.status = status;
    error.reason = std::move(reason);
    return error;
  }

  // The header section is complete: what the request may carry.
  std::optional<Event> judge_head() {
    if (head_bytes > kMaxHeaderBytes)
      return fail(431, fmt::format("request line and header section over {} bytes", kMaxHeaderBytes));
    if (p.http_major != 1 || p.http_minor > 1)
      return fail(505, fmt::format("HTTP/{}.{} is not supported", p.http_major, p.http_minor));
    phase = Phase::body;
    const auto q = req.target.find('?');
    req.path = req.target.substr(0, q);
    req.keep_alive = llhttp_should_keep_alive(&p) != 0 && p.upgrade == 0;
    const bool chunked = (p.flags & F_CHUNKED) != 0;
    const bool has_body = chunked || ((p.flags & F_CONTENT_LENGTH) && p.content_length > 0);
    if (!chunked && (p.flags & F_CONTENT_LENGTH) && p.content_length > max_body)
      return fail(413, fmt::format("Content-Length {} is over the limit of {} bytes", p.content_length,
                                   max_body));
    if (auto expect = req.header("Expect")) {
      if (!iequals(*expect, "100-continue")) return fail(417, "only Expect: 100-continue is understood");
      if (has_body && p.http_minor == 1) {
        Event e;
        e.kind = Event::Kind::expect_continue;
        return e;
      }
    }
    return std::nullopt;
  }
};

RequestParser::RequestParser(uint64_t max_body) : impl_(std::make_unique<Impl>(max_body)) {}

RequestParser::~RequestParser() = default;

RequestParser::Phase RequestParser::phase() const { return impl_->phase; }

void RequestParser::feed(std::string_view bytes) {
  if (impl_->phase == Phase::done) return;
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

RequestParser::Event RequestParser::next() {
  Impl& s = *impl_;
  if (s.phase == Phase::done) return s.error.kind == Event::Kind::error ? s.error : Event{};
  // After the header section the parser must run even without new bytes: a
  // request without a body completes right there.
  bool must_run = false;
  while (must_run || pos_ < buf_.size()) {
    must_run = false;
    const char* data = buf_.data() + pos_;
    size_t len = buf_.size() - pos_;
    const bool in_head = s.phase == Phase::idle || s.phase == Phase::head;
    if (in_head) len = std::min(len, kMaxHeaderBytes + 1 - s.head_bytes);
    s.stop = Impl::Stop::none;
    const llhttp_errno_t err = llhttp_execute(&s.p, data, len);
    size_t used = len;
    if (err != HPE_OK && s.p.error_pos != nullptr && s.p.error_pos >= data && s.p.error_pos <= data + len)
      used = static_cast<size_t>(s.p.error_pos - data);
    pos_ += used;
    if (in_head) s.head_bytes += used;
    if (s.cb_status != 0) return s.fail(s.cb_status, std::move(s.cb_reason));
    if (err == HPE_PAUSED) {
      llhttp_resume(&s.p);
      if (s.stop == Impl::Stop::headers) {
        if (auto e = s.judge_head()) return *e;
        must_run = true;
        continue;
      }
      if (s.stop == Impl::Stop::message) {
        Event e;
        e.kind = Event::Kind::request;
        e.request = std::move(s.req);
        const bool last = !e.request.keep_alive;
        s.reset_message();
        s.phase = last ? Phase::done : Phase::idle;
        if (last) {
          buf_.clear();
          pos_ = 0;
        }
        return e;
      }
      return s.fail(400, "parser paused unexpectedly");
    }
    if (err != HPE_OK) {
      if (err == HPE_INVALID_VERSION) return s.fail(505, "HTTP version not supported");
      const char* reason = llhttp_get_error_reason(&s.p);
      return s.fail(400, fmt::format("{}: {}", llhttp_errno_name(err), reason ? reason : ""));
    }
    if (in_head && s.head_bytes > kMaxHeaderBytes)
      return s.fail(431, fmt::format("request line and header section over {} bytes", kMaxHeaderBytes));
  }
  buf_.clear();
  pos_ = 0;
  return Event{};
}

std::string serialize(const Response& r, bool keep_alive, std::string_view date) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status));
  auto clean = [](std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; };
  for (const auto& h : r.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding") ||
        iequals(h.name, "Connection") || iequals(h.name, "Date"))
      continue;
    if (h.name.empty() || !clean(h.name) || !clean(h.value) ||
        h.name.find_first_of(" \t:") != std::string::npos)
      continue;
    out += fmt::format("{}: {}\r\n", h.name, h.value);
  }
  out += fmt::format("Date: {}\r\n", date);
  const bool bodyless = r.status < 200 || r.status == 204 || r.status == 304;
  if (!bodyless) out += fmt::format("Content-Length: {}\r\n", r.body.size());
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (!bodyless) out += r.body;
  return out;
}

std::string imf_fixdate(int64_t unix_seconds) {
  using namespace std::chrono;
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const sys_seconds t{seconds{unix_seconds}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  const weekday wd{day};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT", kDays[wd.c_encoding()],
                     static_cast<unsigned>(ymd.day()), kMonths[static_cast<unsigned>(ymd.month()) - 1],
                     static_cast<int>(ymd.year()), hms.hours().count(), hms.minutes().count(),
                     hms.seconds().count());
}

}  // namespace sluice::http
