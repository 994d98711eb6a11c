// uv_util.hpp — small pieces the libuv glue (server.cpp, delivery.cpp) shares.
//
// write_owned(): a uv_write whose request owns its buffer; the request is freed
// before `done(ctx, status)` runs on the loop (STYLE.md: write requests own
// their buffer and are released in the write callback). Returns uv_write's
// error code; on an error `done` is not called and nothing is left behind.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

namespace sluice::mta {

using WriteDone = void (*)(void* ctx, int status);
int write_owned(uv_stream_t* stream, std::string data, WriteDone done, void* ctx);

// Microseconds since the Unix epoch (queue ids, arrival times, schedules).
int64_t wall_clock_us();

}  // namespace sluice::mta
