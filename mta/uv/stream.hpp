// stream.hpp — StreamConnection: the life cycle every libuv connection shares.
//
// The SMTP server's Connection (mta/server.cpp), the control socket's
// clients (mta/control_server.cpp) and delivery's outgoing connections
// (mta/outbound.cpp, through connect() and on_connect()) derive from it. It
// owns:
//   - the stream (uv_tcp_t or uv_pipe_t) and one timer, through uv::Handle;
//   - the output: write() gathers bytes during one event and flush() sends
//     them with ONE uv_write (the request owns its buffer and is freed in the
//     write callback); writes in flight are counted;
//   - an optional tls::TlsStream: after start_tls(), write() takes plaintext,
//     flush() encrypts what was gathered (one TLS record per event, as far
//     as the size allows) and sends the ciphertext; write_bulk() encrypts at
//     once instead (a message's content: no copy into the gathered output);
//     tls_pump() feeds bytes read and decrypts (any ciphertext it produces
//     goes out at flush());
//   - reading into a buffer its owner lends (one buffer shared by all the
//     connections of a loop: libuv calls on_read right after on_alloc, and
//     on_bytes() must consume or copy what it is given).
// The protocol stays in the derived class (its session state machine): the
// hooks below report reads, the end of the stream, finished writes, the
// timer and a connect, each from inside uv::guard(), and after each the base
// calls after_event(), where the derived class flushes and decides about
// reading, its timer and closing. Events from elsewhere (a spool commit, a
// password check) call after_event() themselves.
//
// Closing and deletion: begin_close() (idempotent; also called by the base
// when a write fails) calls on_closing() — the derived class lets go of what
// it holds and may close extra handles with close_handle() — then closes the
// stream and the timer. No hook runs afterwards (a write callback cancelled
// by the close only counts down). The object deletes itself once every
// handle's close callback has run and no write is in flight: never inside a
// read callback, and never while libuv may still call back. So a connection
// is made with `new` and never deleted by anyone else; its owner forgets it
// in on_closing().
//
// Nothing is tied to one loop: every connection is on the loop it is given.
// Loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "mta/tls/tls.hpp"
#include "mta/uv/handle.hpp"

namespace sluice::uv {

class StreamConnection {
 public:
  enum class Kind : uint8_t { tcp, pipe };

  StreamConnection(const StreamConnection&) = delete;
  StreamConnection& operator=(const StreamConnection&) = delete;

  uv_loop_t* loop() const { return loop_; }
  uv_stream_t* stream() const { return kind_ == Kind::tcp ? tcp_.stream() : pipe_.stream(); }
  uv_tcp_t* tcp() const { return tcp_.get(); }  // null for a pipe, and once closing
  bool closing() const { return closing_; }

  // Starts closing; see above.
  void begin_close();

  // Bytes not yet on the wire: gathered, waiting in TLS, or queued in libuv.
  size_t unsent() const;
  int writes_in_flight() const { return writes_; }

 protected:
  StreamConnection(uv_loop_t* loop, Kind kind, std::span<char> read_buffer);
  virtual ~StreamConnection();

  // ---- hooks (each from a C callback, inside uv::guard) ----
  virtual void on_bytes(std::string_view bytes) = 0;  // read; ciphertext under TLS
  // UV_EOF or an error; libuv has stopped reading.
  virtual void on_end(int status) = 0;
  virtual void on_written() {}               // a write finished (not closing)
  virtual void on_timer() {}
  virtual void on_connect(int /*status*/) {}  // after connect()
  virtual void on_closing() {}                // first thing in begin_close()
  // The end of every event above (unless closing): flush() and decide.
  virtual void after_event() = 0;

  // ---- reading ----
  void read(bool want);  // start / stop; idempotent
  bool reading() const { return reading_; }

  // ---- output ----
  void write(std::string_view bytes);  // gathered; dropped once closing
  // Bulk data whose TLS record boundaries do not matter (a message's
  // content): under TLS encrypted at once, after what was gathered so far,
  // instead of being copied into the gathered output; it still leaves at
  // flush(). Without TLS the same as write().
  void write_bulk(std::string_view bytes);
  void flush();                        // one uv_write of what was gathered; begin_close() on error

  // ---- TLS ----
  // Flushes what was gathered in plaintext, then every later byte goes
  // through `stream`.
  void start_tls(std::unique_ptr<tls::TlsStream> stream);
  tls::TlsStream* tls() const { return tls_.get(); }
  // Feeds `ciphertext` (may be empty) and decrypts into `plain` (appended).
  std::expected<tls::TlsStream::Events, std::string> tls_pump(std::string_view ciphertext,
                                                              std::string& plain);

  // ---- the timer (one-shot) ----
  void arm_timer(uint64_t ms);
  void stop_timer();

  // ---- outgoing ----
  int connect(const sockaddr* addr);  // tcp; on_connect() follows unless this fails

  // Closes an extra handle of the derived class; the object is not freed
  // before its close callback ran. Call from on_closing().
  template <class T>
  void close_handle(Handle<T>& h) {
    if (!h) return;
    ++open_handles_;
    h.close(&StreamConnection::handle_closed, this);
  }

 private:
  struct WriteReq;
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_timer_cb(uv_timer_t* t);
  static void on_connect_cb(uv_connect_t* req, int status);
  static void handle_closed(void* self);
  void end_event() {
    if (!closing_) after_event();
  }
  void maybe_free();

  uv_loop_t* loop_;
  Kind kind_;
  std::span<char> read_buffer_;
  Handle<uv_tcp_t> tcp_;
  Handle<uv_pipe_t> pipe_;
  Handle<uv_timer_t> timer_;
  std::unique_ptr<tls::TlsStream> tls_;
  std::string out_;  // gathered during this event (plaintext under TLS)
  int writes_ = 0;
  int open_handles_ = 0;  // closing, close callbacks pending
  bool reading_ = false;
  bool closing_ = false;
};

}  // namespace sluice::uv
