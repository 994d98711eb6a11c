// spool_test_util.hpp — what the spool's tests share: a temporary directory,
// opening a spool, deterministic content and envelopes, writing, reading and
// removing a message and waiting for it, and looking at the segment files
// and their records. Only the queue_test sources include it; it fails the
// current test (REQUIRE) when a step that must work does not.
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "queue/record.hpp"
#include "queue/spool.hpp"

namespace spool_test {

using namespace sluice::queue;
namespace fs = std::filesystem;

// A fresh directory under /tmp, removed afterwards.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-queue-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string spool() const { return path + "/spool"; }
};

inline std::unique_ptr<Spool> open_spool(const std::string& dir, uint64_t segment_size = 64ull << 20,
                                  size_t chunk_size = 64 * 1024, bool exclusive = true) {
  Spool::Options o;
  o.dir = dir;
  o.segment_size = segment_size;
  o.chunk_size = chunk_size;
  o.exclusive = exclusive;
  auto s = Spool::open(o);
  INFO((s ? std::string() : s.error()));
  REQUIRE(s);
  return std::move(*s);
}

// Deterministic content with CRLF line ends and every byte value.
inline std::string content(size_t n, unsigned seed) {
  std::string s;
  s.reserve(n);
  std::mt19937 rng(seed);
  while (s.size() < n) {
    if (s.size() % 78 == 76 && s.size() + 2 <= n) {
      s += "\r\n";
      continue;
    }
    s.push_back(char(rng() & 0xFF));
  }
  return s;
}

inline Envelope sample_envelope(int i) {
  Envelope e;
  e.arrival_us = 1'700'000'000'000'000 + i;
  e.sender = i % 5 == 0 ? "" : "sender" + std::to_string(i) + "@example.org";
  for (int r = 0; r <= i % 4; ++r)
    e.recipients.push_back({"r" + std::to_string(r) + "@例え.jp", "", uint8_t(r), RcptStatus::pending, ""});
  e.body = BodyType::eight_bit_mime;
  e.smtputf8 = true;
  e.helo = "client.example";
  e.client_address = "192.0.2.1";
  e.message_id = "<" + std::to_string(i) + "@example.org>";
  return e;
}

// Writes one message in pieces of `piece` bytes and waits for its commit.
inline std::string put(Spool& s, Envelope env, const std::string& body, size_t piece = 1000) {
  auto in = s.begin();
  for (size_t at = 0; at < body.size(); at += piece)
    in->append(std::string_view(body).substr(at, piece));
  CHECK(in->size() == body.size());
  std::promise<bool> p;
  auto f = p.get_future();
  in->commit(std::move(env), [&p](bool ok) { p.set_value(ok); });
  REQUIRE(f.get());
  return in->id();
}

inline std::string body_of(const Spool& s, std::string_view id) {
  std::string out;
  auto r = s.read_body(id, [&](std::string_view piece) {
    CHECK(piece.size() <= 64 * 1024);
    out.append(piece);
  });
  INFO(id);
  REQUIRE(r);
  return out;
}

inline bool wait_remove(Spool& s, std::string_view id) {
  std::promise<bool> p;
  auto f = p.get_future();
  s.remove(id, [&p](bool ok) { p.set_value(ok); });
  return f.get();
}

inline std::vector<std::string> segment_files(const std::string& spool) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(spool + "/segments"))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

struct Parsed {
  record::Type type;
  std::string id;
  size_t offset;
  size_t size;
};

// Every record of a segment file (which must be well-formed).
inline std::vector<Parsed> records_of(const std::string& bytes) {
  std::vector<Parsed> out;
  REQUIRE(bytes.substr(0, 8) == record::kSegmentMagic);
  size_t off = 8;
  while (off < bytes.size()) {
    auto r = record::parse(std::string_view(bytes).substr(off));
    REQUIRE(r);
    out.push_back({r->type, std::string(r->id), off, r->size});
    off += r->size;
  }
  return out;
}

// The committed messages a test expects: id -> (envelope, body).
using Expected = std::map<std::string, std::pair<Envelope, std::string>>;

inline void check_spool(const Spool& s, const Expected& want) {
  auto msgs = s.messages();
  REQUIRE(msgs.size() == want.size());
  CHECK(s.message_count() == want.size());
  auto it = want.begin();
  for (const Envelope& e : msgs) {  // both ordered by id
    REQUIRE(e.id == it->first);
    CHECK(e == it->second.first);
    CHECK(body_of(s, e.id) == it->second.second);
    ++it;
  }
}

}  // namespace spool_test
