// guard.hpp — the one way into our code from a libuv (or c-ares) C callback.
//
// Every function libuv or c-ares calls runs its body inside guard(where, f):
// an exception escaping f is a bug (our code reports failures by value), and
// it must never unwind through C frames, so it is printed with `where` and
// the process aborts (STYLE.md: broken invariants abort loudly). Nothing
// else is done: guard() keeps no state and does not know about loops.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace sluice::uv {

[[noreturn]] inline void die_in_callback(const char* where, const char* what) noexcept {
  std::fprintf(stderr, "sluice: exception in %s: %s\n", where, what);
  std::fflush(stderr);
  std::abort();
}

template <class F>
void guard(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    die_in_callback(where, e.what());
  } catch (...) {
    die_in_callback(where, "not a std::exception");
  }
}

}  // namespace sluice::uv
