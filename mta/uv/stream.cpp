// stream.cpp — see stream.hpp.
#include "mta/uv/stream.hpp"

#include <cstdlib>

#include "mta/uv/guard.hpp"

namespace sluice::uv {

// The request owns its buffer; freed in the write callback.
struct StreamConnection::WriteReq {
  uv_write_t req;
  std::string data;
  StreamConnection* conn;
};

StreamConnection::StreamConnection(uv_loop_t* loop, Kind kind, std::span<char> read_buffer)
    : loop_(loop), kind_(kind), read_buffer_(read_buffer) {
  const int rc = kind == Kind::tcp ? tcp_.init(loop, uv_tcp_init) : pipe_.init(loop, uv_pipe_init, 0);
  if (rc < 0 || timer_.init(loop, uv_timer_init) < 0) std::abort();  // cannot fail (no socket yet)
  stream()->data = this;
  timer_->data = this;
}

StreamConnection::~StreamConnection() = default;

size_t StreamConnection::unsent() const {
  size_t n = out_.size() + (tls_ ? tls_->pending_ciphertext_bytes() : 0);
  if (!closing_) n += uv_stream_get_write_queue_size(stream());
  return n;
}

void StreamConnection::begin_close() {
  if (closing_) return;
  closing_ = true;
  on_closing();
  reading_ = false;
  open_handles_ += 2;
  timer_.close(&StreamConnection::handle_closed, this);  // closing stops it
  if (kind_ == Kind::tcp)
    tcp_.close(&StreamConnection::handle_closed, this);
  else
    pipe_.close(&StreamConnection::handle_closed, this);
}

void StreamConnection::handle_closed(void* self) {
  auto* c = static_cast<StreamConnection*>(self);
  --c->open_handles_;
  c->maybe_free();
}

void StreamConnection::maybe_free() {
  if (closing_ && open_handles_ == 0 && writes_ == 0) delete this;
}

void StreamConnection::read(bool want) {
  if (closing_ || want == reading_) return;
  if (want) {
    if (uv_read_start(stream(), on_alloc, on_read) < 0) return;  // not reading; the timer ends it
  } else {
    uv_read_stop(stream());
  }
  reading_ = want;
}

void StreamConnection::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<StreamConnection*>(h->data);
  *buf = uv_buf_init(c->read_buffer_.data(), static_cast<unsigned>(c->read_buffer_.size()));
}

void StreamConnection::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  guard("stream read", [&] {
    auto* c = static_cast<StreamConnection*>(s->data);
    if (n == 0 || c->closing_) return;
    if (n < 0) {
      c->reading_ = false;  // libuv stopped reading
      c->on_end(static_cast<int>(n));
    } else {
      c->on_bytes(std::string_view(buf->base, static_cast<size_t>(n)));
    }
    c->end_event();
  });
}

void StreamConnection::write(std::string_view bytes) {
  if (!closing_) out_.append(bytes);
}

void StreamConnection::write_bulk(std::string_view bytes) {
  if (closing_) return;
  if (!tls_) {
    out_.append(bytes);
    return;
  }
  if (!out_.empty()) {  // what was gathered goes first
    tls_->write_plaintext(out_);
    out_.clear();
  }
  tls_->write_plaintext(bytes);
}

void StreamConnection::flush() {
  if (closing_) return;
  std::string data;
  if (tls_) {
    if (!out_.empty()) {
      tls_->write_plaintext(out_);
      out_.clear();  // keeps its capacity
    }
    if (!tls_->take_ciphertext(data)) return;
  } else {
    if (out_.empty()) return;
    data = std::move(out_);
    out_.clear();
  }
  auto* w = new WriteReq{{}, std::move(data), this};
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, stream(), &b, 1, on_write) < 0) {
    delete w;
    begin_close();
    return;
  }
  ++writes_;
}

void StreamConnection::on_write(uv_write_t* req, int status) {
  guard("stream write", [&] {
    auto* w = reinterpret_cast<WriteReq*>(req);
    StreamConnection* c = w->conn;
    delete w;
    --c->writes_;
    if (c->closing_) {
      c->maybe_free();
      return;
    }
    if (status < 0) {
      c->begin_close();
      return;
    }
    c->on_written();
    c->end_event();
  });
}

void StreamConnection::start_tls(std::unique_ptr<tls::TlsStream> stream) {
  flush();
  tls_ = std::move(stream);
}

std::expected<tls::TlsStream::Events, std::string> StreamConnection::tls_pump(
    std::string_view ciphertext, std::string& plain) {
  if (!ciphertext.empty()) tls_->feed_ciphertext(ciphertext);
  return tls_->process(plain);
}

void StreamConnection::arm_timer(uint64_t ms) {
  if (!closing_) uv_timer_start(timer_.get(), on_timer_cb, ms, 0);
}

void StreamConnection::stop_timer() {
  if (!closing_) uv_timer_stop(timer_.get());
}

void StreamConnection::on_timer_cb(uv_timer_t* t) {
  guard("stream timer", [&] {
    auto* c = static_cast<StreamConnection*>(t->data);
    c->on_timer();
    c->end_event();
  });
}

// The request is allocated here and freed in its callback, which libuv runs
// (UV_ECANCELED when the stream closes first) before the stream's close
// callback: connections that never connect do not carry it.
int StreamConnection::connect(const sockaddr* addr) {
  auto req = std::make_unique<uv_connect_t>();
  req->data = this;
  const int rc = uv_tcp_connect(req.get(), tcp_.get(), addr, on_connect_cb);
  if (rc == 0) req.release();
  return rc;
}

void StreamConnection::on_connect_cb(uv_connect_t* req, int status) {
  guard("stream connect", [&] {
    std::unique_ptr<uv_connect_t> owned(req);
    auto* c = static_cast<StreamConnection*>(req->data);
    if (c->closing_) return;  // cancelled by the close
    c->on_connect(status);
    c->end_event();
  });
}

}  // namespace sluice::uv
