// secret.hpp — handling secrets in memory: zeroing buffers the compiler may
// not optimise away, and comparing without an early exit. Pure.
//
// wipe(std::string&) zeroes the string's whole buffer (capacity, not just
// size: a moved-from short string keeps old bytes past its new end) and leaves
// it empty. It does not free the buffer. Copies made elsewhere (a reallocation,
// a kernel socket buffer) are out of its reach, so secrets are moved, not
// copied, and buffers that will hold them are sized before they are filled
// (reserve_secret).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::auth {

// memset that survives dead-store elimination (a compiler barrier follows it).
void secure_zero(void* p, size_t n) noexcept;

// Zero every byte of s's buffer and clear it.
void wipe(std::string& s) noexcept;

// Reserve room for a secret of n bytes, and never less than what keeps the
// bytes out of the string's inline (small-string) buffer: a string on the heap
// is moved by handing over its buffer, while a short inline one is copied and
// the copy left behind in the moved-from object.
void reserve_secret(std::string& s, size_t n);

// Equal contents, in time that depends only on the lengths.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace sluice::auth
