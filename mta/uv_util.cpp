// uv_util.cpp — see uv_util.hpp.
#include "mta/uv_util.hpp"

#include <chrono>

namespace sluice::mta {

namespace {

struct OwnedWrite {
  uv_write_t req;
  std::string data;
  WriteDone done;
  void* ctx;
};

void on_owned_write(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<OwnedWrite*>(req);
  WriteDone done = w->done;
  void* ctx = w->ctx;
  delete w;
  done(ctx, status);
}

}  // namespace

int write_owned(uv_stream_t* stream, std::string data, WriteDone done, void* ctx) {
  auto* w = new OwnedWrite{{}, std::move(data), done, ctx};
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream, &b, 1, on_owned_write);
  if (rc < 0) delete w;
  return rc;
}

int64_t wall_clock_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace sluice::mta
