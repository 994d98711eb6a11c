// uv_util.cpp — see uv_util.hpp.
#include "mta/uv_util.hpp"

#include <chrono>

namespace sluice::mta {

int64_t wall_clock_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace sluice::mta
