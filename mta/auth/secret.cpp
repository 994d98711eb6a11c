// secret.cpp — secure_zero, wipe, constant_time_equal. Pure.
//
// secure_zero: an ordinary memset of memory that is never read again is a dead
// store the optimiser may drop. The empty asm statement that takes the pointer
// and clobbers "memory" tells the compiler the zeroed bytes may be read, so the
// memset has to happen (the OPENSSL_cleanse / explicit_bzero technique).
#include "mta/auth/secret.hpp"

#include <cstring>

namespace sluice::auth {

void secure_zero(void* p, size_t n) noexcept {
  if (p == nullptr || n == 0) return;
  std::memset(p, 0, n);
  __asm__ __volatile__("" : : "r"(p) : "memory");
}

void wipe(std::string& s) noexcept {
  // Growing to the capacity never reallocates, and makes the bytes past the
  // old size (left over from an earlier, longer value or a move) addressable.
  s.resize(s.capacity());
  secure_zero(s.data(), s.size());
  s.clear();
}

void reserve_secret(std::string& s, size_t n) {
  // sizeof(std::string) exceeds the inline capacity of every implementation
  // (libstdc++: 15 of 32 bytes), so this much always lives on the heap.
  constexpr size_t kHeapMinimum = sizeof(std::string);
  s.reserve(n > kHeapMinimum ? n : kHeapMinimum);
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  // Lengths are not secret (a crypt hash's length follows from its method);
  // the loop still runs over the longer one so that no early exit exists.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  // Keep the compiler from turning the accumulation into an early exit.
  __asm__ __volatile__("" : "+r"(diff));
  return diff == 0;
}

}  // namespace sluice::auth
