// uv_util.hpp — the wall clock the libuv glue shares (server.cpp, daemon.cpp,
// delivery.cpp, pickup.cpp). Writes go through uv::StreamConnection
// (mta/uv/stream.hpp), whose write requests own their buffers.
#pragma once

#include <cstdint>

namespace sluice::mta {

// Microseconds since the Unix epoch (queue ids, arrival times, schedules).
int64_t wall_clock_us();

}  // namespace sluice::mta
