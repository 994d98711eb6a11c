// spool_test.cpp — the spool: record codec, write/read, recovery, removal,
// reclamation order, group commit, durability before the callback.
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

using namespace sluice::queue;
namespace fs = std::filesystem;

namespace {

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

std::unique_ptr<Spool> open_spool(const std::string& dir, uint64_t segment_size = 64ull << 20,
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
std::string content(size_t n, unsigned seed) {
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

Envelope sample_envelope(int i) {
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
std::string put(Spool& s, Envelope env, const std::string& body, size_t piece = 1000) {
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

std::string body_of(const Spool& s, std::string_view id) {
  std::string out;
  auto r = s.read_body(id, [&](std::string_view piece) {
    CHECK(piece.size() <= 64 * 1024);
    out.append(piece);
  });
  INFO(id);
  REQUIRE(r);
  return out;
}

bool wait_remove(Spool& s, std::string_view id) {
  std::promise<bool> p;
  auto f = p.get_future();
  s.remove(id, [&p](bool ok) { p.set_value(ok); });
  return f.get();
}

std::vector<std::string> segment_files(const std::string& spool) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(spool + "/segments"))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, std::string_view bytes) {
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
std::vector<Parsed> records_of(const std::string& bytes) {
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

void check_spool(const Spool& s, const Expected& want) {
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

}  // namespace

// ---------------------------------------------------------------------------
// Record codec.

TEST_CASE("crc32c: known value, hardware and table paths agree") {
  CHECK(record::crc32c("123456789") == 0xE3069283u);
  CHECK(record::detail::crc32c_portable("123456789") == 0xE3069283u);
  CHECK(record::crc32c("") == 0);
  std::string data = content(5000, 7);
  for (size_t start : {0u, 1u, 3u, 7u})
    for (size_t len : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 1000u, 4000u}) {
      auto sv = std::string_view(data).substr(start, len);
      CHECK(record::crc32c(sv) == record::detail::crc32c_portable(sv));
      // Chaining.
      CHECK(record::crc32c(sv.substr(len / 2), record::crc32c(sv.substr(0, len / 2))) ==
            record::crc32c(sv));
    }
}

TEST_CASE("record make/parse round trip and rejection of damage") {
  const std::string id = "0123456789ABCDEF";
  std::string body = content(300, 3);
  std::string r = record::make(record::Type::chunk, id, body);
  REQUIRE(r.size() == record::kPrefixSize + body.size());
  const std::string followed = r + "trailing";
  auto v = record::parse(followed);
  REQUIRE(v);
  CHECK(v->type == record::Type::chunk);
  CHECK(v->id == id);
  CHECK(v->body == body);
  CHECK(v->size == r.size());

  for (size_t n = 0; n < r.size(); ++n) {
    auto t = record::parse(std::string_view(r).substr(0, n));
    REQUIRE_FALSE(t);
    CHECK(t.error() == record::Error::truncated);
  }
  for (size_t i = 0; i < r.size(); ++i) {
    std::string d = r;
    d[i] ^= 0x20;
    CHECK_FALSE(record::parse(d));
  }
  std::string done = record::make(record::Type::done, id, "");
  CHECK(record::parse(done));
  CHECK(record::parse(done)->body.empty());
  CHECK(record::parse(record::make(record::Type::done, id, "x")).error() == record::Error::bad_length);
  CHECK(record::parse(record::make(record::Type::chunk, "0123456789abcdef", "x")).error() ==
        record::Error::bad_id);
  std::string bad_type = record::make(record::Type::chunk, id, "x");
  bad_type[8] = 9;
  record::seal(record::Type(9), bad_type.data(), bad_type.size() - record::kHeaderSize);
  CHECK(record::parse(bad_type).error() == record::Error::bad_type);
  CHECK(record::parse(std::string(9, '\0')).error() == record::Error::bad_crc);
  std::string huge(16, '\xFF');
  CHECK(record::parse(huge).error() == record::Error::bad_length);
}

// ---------------------------------------------------------------------------
// Writing and reading.

TEST_CASE("spool round trip: small, empty, multi-chunk, spanning segments; reopen") {
  TempDir tmp;
  Expected want;
  {
    auto s = open_spool(tmp.spool(), 4096, 1000);
    CHECK(s->recovery_warnings().empty());
    CHECK(s->message_count() == 0);
    std::vector<std::string> bodies = {"Subject: hi\r\n\r\nHello\r\n", "", content(10'000, 1),
                                       content(50'000, 2), content(999, 3), content(1000, 4),
                                       content(1001, 5)};
    int i = 0;
    for (const auto& b : bodies) {
      Envelope env = sample_envelope(i++);
      std::string id = put(*s, env, b, 333);
      env.id = id;
      env.size = b.size();
      want[id] = {env, b};
    }
    check_spool(*s, want);
    CHECK(s->stats().commits == bodies.size());
    CHECK(s->stats().bytes > 62'000);
    CHECK(s->pending_bytes() == 0);
    CHECK(segment_files(tmp.spool()).size() > 10);  // 4 KiB segments
    CHECK_FALSE(s->read_body("0000000000000000", [](std::string_view) {}));
    CHECK_FALSE(s->read_body("nonsense", [](std::string_view) {}));
  }
  auto s = open_spool(tmp.spool(), 4096, 1000);
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
  // Ids keep increasing across the restart.
  CHECK(s->begin()->id() > want.rbegin()->first);
  // New messages go on; a third start sees old and new.
  Envelope env = sample_envelope(99);
  std::string b = content(7000, 99);
  std::string id = put(*s, env, b);
  env.id = id;
  env.size = b.size();
  want[id] = {env, b};
  s.reset();
  check_spool(*open_spool(tmp.spool(), 4096, 1000), want);
}

TEST_CASE("read_body hands out pieces of at most 64 KiB") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 64ull << 20, 1u << 20);
  std::string b = content(300'000, 11);
  std::string id = put(*s, sample_envelope(1), b, 100'000);
  size_t pieces = 0;
  std::string got;
  REQUIRE(s->read_body(id, [&](std::string_view p) {
    CHECK(p.size() <= 64 * 1024);
    ++pieces;
    got.append(p);
  }));
  CHECK(got == b);
  CHECK(pieces >= 5);
}

TEST_CASE("an uncommitted message is gone after reopen") {
  TempDir tmp;
  Expected want;
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 100);
    {
      auto in = s->begin();
      in->append(content(1000, 1));  // several chunks reach the writer
    }
    {
      auto in = s->begin();
      in->append("only buffered");
    }
    Envelope env = sample_envelope(2);
    std::string b = content(555, 2);
    std::string id = put(*s, env, b);
    env.id = id;
    env.size = b.size();
    want[id] = {env, b};
    auto in = s->begin();
    in->append(content(777, 3));
    check_spool(*s, want);
    // `in` dies with the spool still open: nothing of it must survive either.
  }
  auto s = open_spool(tmp.spool(), 64ull << 20, 100);
  check_spool(*s, want);
}

TEST_CASE("a second process cannot open the same spool") {
  TempDir tmp;
  auto s = open_spool(tmp.spool());
  Spool::Options o;
  o.dir = tmp.spool();
  auto again = Spool::open(o);
  REQUIRE_FALSE(again);
  CHECK(again.error().find("in use") != std::string::npos);
}

TEST_CASE("bad options and unusable directories are errors") {
  TempDir tmp;
  Spool::Options o;
  CHECK_FALSE(Spool::open(o));
  o.dir = tmp.spool();
  o.chunk_size = 0;
  CHECK_FALSE(Spool::open(o));
  write_file(tmp.path + "/file", "x");
  o.chunk_size = 1000;
  o.dir = tmp.path + "/file/spool";
  CHECK_FALSE(Spool::open(o));
}

// ---------------------------------------------------------------------------
// Recovery.

TEST_CASE("a torn tail of the last segment is cut off; earlier commits survive") {
  TempDir tmp;
  Expected want;
  std::string last_id, last_body;
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
    for (int i = 0; i < 3; ++i) {
      Envelope env = sample_envelope(i);
      std::string b = content(1500 + size_t(i), unsigned(i));
      std::string id = put(*s, env, b);
      env.id = id;
      env.size = b.size();
      want[id] = {env, b};
    }
    last_body = content(3000, 42);
    last_id = put(*s, sample_envelope(3), last_body);
  }
  auto files = segment_files(tmp.spool());
  REQUIRE(files.size() == 1);
  const std::string original = read_file(tmp.spool() + "/segments/" + files[0]);
  auto recs = records_of(original);
  // The last message: 3 CHUNK records, then its COMMIT.
  REQUIRE(recs.size() >= 4);
  REQUIRE(recs.back().type == record::Type::commit);
  REQUIRE(recs.back().id == last_id);
  size_t first_of_last = recs[recs.size() - 4].offset;
  REQUIRE(recs[recs.size() - 4].id == last_id);

  std::vector<size_t> cuts;
  for (size_t c = recs.back().offset; c < original.size(); ++c) cuts.push_back(c);  // every byte
  for (size_t c = first_of_last; c < recs.back().offset; c += 97) cuts.push_back(c);  // a sample
  for (size_t cut : cuts) {
    INFO("cut at " << cut << " of " << original.size());
    TempDir t;
    fs::create_directories(t.spool() + "/segments");
    const std::string seg = t.spool() + "/segments/" + files[0];
    write_file(seg, std::string_view(original).substr(0, cut));
    {
      auto s = open_spool(t.spool(), 64ull << 20, 1000);
      check_spool(*s, want);
      bool at_boundary = std::any_of(recs.begin(), recs.end(), [&](const Parsed& r) { return r.offset == cut; });
      CHECK(s->recovery_warnings().size() == (at_boundary ? 0u : 1u));
      CHECK(fs::file_size(seg) <= cut);
      if (cut % 7 != 0) continue;
      // New writes after a repaired tail; everything is there on the next start.
      Expected more = want;
      Envelope env = sample_envelope(7);
      std::string b = content(2500, 7);
      std::string id = put(*s, env, b);
      env.id = id;
      env.size = b.size();
      more[id] = {env, b};
      s.reset();
      auto again = open_spool(t.spool(), 64ull << 20, 1000);
      CHECK(again->recovery_warnings().empty());
      check_spool(*again, more);
    }
  }
  // Uncut, the last message is there.
  Expected all = want;
  Envelope env = sample_envelope(3);
  env.id = last_id;
  env.size = last_body.size();
  all[last_id] = {env, last_body};
  check_spool(*open_spool(tmp.spool(), 64ull << 20, 1000), all);
}

TEST_CASE("a segment file cut inside its header at the end is removed") {
  TempDir tmp;
  Expected want;
  {
    auto s = open_spool(tmp.spool());
    Envelope env = sample_envelope(1);
    std::string id = put(*s, env, "x\r\n");
    env.id = id;
    env.size = 3;
    want[id] = {env, "x\r\n"};
  }
  write_file(tmp.spool() + "/segments/00000000000000ff.seg", "SLUI");
  auto s = open_spool(tmp.spool());
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
  CHECK_FALSE(fs::exists(tmp.spool() + "/segments/00000000000000ff.seg"));
}

TEST_CASE("a corrupt record in a middle segment: warning, the rest is kept") {
  TempDir tmp;
  Expected committed;
  {
    auto s = open_spool(tmp.spool(), 600, 64);
    for (int i = 0; i < 30; ++i) {
      Envelope env = sample_envelope(i);
      std::string b = content(50 + size_t(i) * 17, unsigned(i));
      std::string id = put(*s, env, b, 40);
      env.id = id;
      env.size = b.size();
      committed[id] = {env, b};
    }
  }
  auto files = segment_files(tmp.spool());
  REQUIRE(files.size() >= 5);
  const size_t k = files.size() / 2;
  const std::string path = tmp.spool() + "/segments/" + files[k];
  std::string bytes = read_file(path);
  std::set<std::string> hit;  // every message with a record in segment k
  for (const Parsed& r : records_of(bytes)) hit.insert(r.id);
  REQUIRE_FALSE(hit.empty());
  bytes[8 + record::kPrefixSize] ^= 0x01;  // first record's body: CRC mismatch
  write_file(path, bytes);

  Expected want;
  for (const auto& [id, m] : committed)
    if (!hit.contains(id)) want[id] = m;
  REQUIRE(want.size() >= committed.size() - hit.size());
  REQUIRE(want.size() > 10);
  auto s = open_spool(tmp.spool(), 600, 64);
  auto warnings = s->recovery_warnings();
  REQUIRE_FALSE(warnings.empty());
  CHECK(warnings[0].find(files[k]) != std::string::npos);
  CHECK(warnings[0].find("checksum") != std::string::npos);
  check_spool(*s, want);
  // The damaged segment was not truncated (only a last segment is).
  CHECK(fs::file_size(path) == bytes.size());
}

TEST_CASE("garbage files and headers never stop start-up") {
  TempDir tmp;
  Expected want;
  {
    auto s = open_spool(tmp.spool());
    Envelope env = sample_envelope(1);
    std::string id = put(*s, env, "body\r\n");
    env.id = id;
    env.size = 6;
    want[id] = {env, "body\r\n"};
  }
  write_file(tmp.spool() + "/segments/0000000000000000.seg", "NOTASEGMENTFILE");
  write_file(tmp.spool() + "/segments/README", "hello");
  auto s = open_spool(tmp.spool());
  CHECK(s->recovery_warnings().size() == 2);
  check_spool(*s, want);
}

// ---------------------------------------------------------------------------
// Removal and reclamation.

TEST_CASE("remove() makes a message disappear, also after reopen") {
  TempDir tmp;
  Expected want;
  std::string gone;
  {
    auto s = open_spool(tmp.spool());
    for (int i = 0; i < 3; ++i) {
      Envelope env = sample_envelope(i);
      std::string b = content(100, unsigned(i));
      std::string id = put(*s, env, b);
      env.id = id;
      env.size = b.size();
      want[id] = {env, b};
    }
    gone = std::next(want.begin())->first;
    CHECK(wait_remove(*s, gone));
    want.erase(gone);
    check_spool(*s, want);
    CHECK_FALSE(s->read_body(gone, [](std::string_view) {}));
    CHECK(wait_remove(*s, gone));                // idempotent
    CHECK(wait_remove(*s, "0000000000000001"));  // never existed
    CHECK_FALSE(wait_remove(*s, "not-an-id"));
  }
  auto s = open_spool(tmp.spool());
  check_spool(*s, want);
}

TEST_CASE("segments are deleted whatever their age; a DONE outlives the COMMIT it hides") {
  TempDir tmp;
  // segment_size 1: every record gets a segment of its own, so message i is
  // CHUNK in segment 2i+1 and COMMIT in segment 2i+2.
  auto names = [](std::initializer_list<int> seqs) {
    std::vector<std::string> out;
    for (int q : seqs) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%016x.seg", q);
      out.push_back(buf);
    }
    return out;
  };
  auto range = [&](int from, int to) {
    std::vector<std::string> out;
    for (int q = from; q <= to; ++q) out.push_back(names({q})[0]);
    return out;
  };
  std::vector<std::string> ids;
  {
    auto s = open_spool(tmp.spool(), 1);
    for (int i = 0; i < 5; ++i) ids.push_back(put(*s, sample_envelope(i), "m" + std::to_string(i)));
    CHECK(segment_files(tmp.spool()) == range(1, 10));

    // DONE in 11: message 2's segments 5-6 go although 1-4 are older; 11
    // (holding the DONE) waits for 6 (the COMMIT) to be gone, and being the
    // current segment and small, stays.
    REQUIRE(wait_remove(*s, ids[2]));
    auto want = range(1, 4);
    for (auto n : range(7, 11)) want.push_back(n);
    CHECK(segment_files(tmp.spool()) == want);
    REQUIRE(wait_remove(*s, ids[0]));  // DONE in 12: 1-2 go, and 11 with them
    want = range(3, 4);
    for (auto n : range(7, 10)) want.push_back(n);
    want.push_back(names({12})[0]);
    CHECK(segment_files(tmp.spool()) == want);
    REQUIRE(wait_remove(*s, ids[1]));  // DONE in 13: 3-4 and 12 go
    want = range(7, 10);
    want.push_back(names({13})[0]);
    CHECK(segment_files(tmp.spool()) == want);
  }
  {
    auto s = open_spool(tmp.spool(), 1);
    CHECK(s->message_count() == 2);
    CHECK(body_of(*s, ids[3]) == "m3");
    REQUIRE(wait_remove(*s, ids[3]));  // DONE in 14: 7-8 and 13 go
    REQUIRE(wait_remove(*s, ids[4]));  // DONE in 15: 9-10 and 14; the current segment stays
    CHECK(segment_files(tmp.spool()) == range(15, 15));
  }
  auto s = open_spool(tmp.spool(), 1);
  CHECK(s->message_count() == 0);
  CHECK(segment_files(tmp.spool()).empty());  // not current any more: reclaimed at start
  CHECK(s->recovery_warnings().empty());
}

TEST_CASE("a message being written pins its segments against reclamation") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 1, 10);
  std::string a = put(*s, sample_envelope(0), "first");
  auto in = s->begin();
  in->append(content(35, 1));  // three chunks in segments 3-5, the rest buffered
  REQUIRE(wait_remove(*s, a));  // 1-2 free, 3 pinned by the message in progress
  auto files = segment_files(tmp.spool());
  REQUIRE_FALSE(files.empty());
  CHECK(files.front() == "0000000000000003.seg");
  std::promise<bool> p;
  Envelope env = sample_envelope(1);
  in->commit(env, [&](bool ok) { p.set_value(ok); });
  REQUIRE(p.get_future().get());
  CHECK(body_of(*s, in->id()) == content(35, 1));
}

// ---------------------------------------------------------------------------
// Group commit and durability.

TEST_CASE("group commit: concurrent commits share fdatasyncs") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 64ull << 20, 4096);
  constexpr int kThreads = 8, kEach = 25;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, good = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto in = s->begin();
        in->append(content(3000 + size_t(i), unsigned(t * 100 + i)));
        in->commit(sample_envelope(i), [&](bool ok) {
          std::lock_guard lk(mu);
          ++done;
          good += ok;
          cv.notify_all();
        });
      }
    });
  for (auto& t : threads) t.join();
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done == kThreads * kEach; });
  CHECK(good == kThreads * kEach);
  auto st = s->stats();
  CHECK(st.commits == uint64_t(kThreads * kEach));
  CHECK(st.syncs < uint64_t(kThreads * kEach) / 2);
  CHECK(st.syncs >= 1);
  CHECK(s->pending_bytes() == 0);
  CHECK(s->message_count() == size_t(kThreads * kEach));
}

TEST_CASE("the done callback runs only once the message is on disk") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 8192, 1000);
  for (int i = 0; i < 10; ++i) {
    std::string b = content(size_t(i) * 1500, unsigned(i));
    auto in = s->begin();
    in->append(b);
    std::string id = in->id();
    // What the callback saw; checked on this thread (Catch2 is single-threaded).
    struct Seen {
      bool ok = false, opened = false, warnings = true, found = false;
      size_t count = 0;
    } seen;
    std::promise<void> p;
    // Inside the callback the writer waits for us: open the spool afresh
    // (as a restarted daemon would) and look for the message.
    in->commit(sample_envelope(i), [&](bool ok) {
      seen.ok = ok;
      Spool::Options o;
      o.dir = tmp.spool();
      o.segment_size = 8192;
      o.chunk_size = 1000;
      o.exclusive = false;
      if (auto fresh = Spool::open(o)) {
        seen.opened = true;
        seen.warnings = !(*fresh)->recovery_warnings().empty();
        seen.count = (*fresh)->message_count();
        std::string got;
        seen.found = (*fresh)->read_body(id, [&](std::string_view piece) { got.append(piece); }) &&
                     got == b;
      }
      p.set_value();
    });
    p.get_future().get();
    CHECK(seen.ok);
    REQUIRE(seen.opened);
    CHECK_FALSE(seen.warnings);
    CHECK(seen.count == size_t(i) + 1);
    CHECK(seen.found);
  }
}

TEST_CASE("reading while writing") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 20'000, 700);
  const int64_t base = sample_envelope(0).arrival_us;
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, wrong{0};
  std::thread reader([&] {  // no Catch2 assertions off the main thread
    while (!stop) {
      for (const Envelope& e : s->messages()) {
        std::string got;
        auto r = s->read_body(e.id, [&](std::string_view p) { got.append(p); });
        if (!r) continue;  // removed meanwhile
        int i = int(e.arrival_us - base);
        if (got != content(2000 + size_t(i), unsigned(i))) ++wrong;
        ++reads;
      }
    }
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    ids.push_back(put(*s, sample_envelope(i), content(2000 + size_t(i), unsigned(i))));
    if (i % 3 == 0) CHECK(wait_remove(*s, ids[size_t(i / 2)]));
  }
  // On a loaded machine the reader may not have run yet: give it a moment
  // over the messages that are left (40 stay in the spool).
  for (int waited = 0; reads == 0 && waited < 5000; waited += 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  reader.join();
  CHECK(reads > 0);
  CHECK(wrong == 0);
}

TEST_CASE("a failed write fails the batch's commits; the spool carries on in a new segment") {
  TempDir tmp;
  // RLIMIT_FSIZE makes writes past the limit fail with EFBIG (SIGXFSZ ignored).
  struct sigaction ign {}, old_sa {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGXFSZ, &ign, &old_sa);
  rlimit old_lim{};
  ::getrlimit(RLIMIT_FSIZE, &old_lim);

  Expected want;
  std::string c_id;
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
    Envelope env = sample_envelope(0);
    std::string a = content(500, 1);
    std::string a_id = put(*s, env, a);
    env.id = a_id;
    env.size = a.size();
    want[a_id] = {env, a};

    // C has chunks on disk (not yet synced) when the failure happens.
    auto c = s->begin();
    c_id = c->id();
    c->append(content(2500, 2));
    while (s->pending_bytes() != 0) std::this_thread::yield();

    auto files = segment_files(tmp.spool());
    REQUIRE(files.size() == 1);
    uint64_t size = fs::file_size(tmp.spool() + "/segments/" + files[0]);
    rlimit lim = old_lim;
    lim.rlim_cur = size + 700;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    auto b = s->begin();
    b->append(content(3000, 3));
    std::promise<bool> pb;
    b->commit(sample_envelope(1), [&](bool ok) { pb.set_value(ok); });
    CHECK_FALSE(pb.get_future().get());
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_lim) == 0);
    // The failed batch was taken back out of the old segment.
    CHECK(fs::file_size(tmp.spool() + "/segments/" + files[0]) == size);

    std::promise<bool> pc;
    c->commit(sample_envelope(2), [&](bool ok) { pc.set_value(ok); });
    CHECK_FALSE(pc.get_future().get());  // its chunks' durability is unknown

    env = sample_envelope(3);
    std::string d = content(4000, 4);
    std::string d_id = put(*s, env, d);
    env.id = d_id;
    env.size = d.size();
    want[d_id] = {env, d};
    check_spool(*s, want);
    CHECK(segment_files(tmp.spool()).size() >= 2);
  }
  ::sigaction(SIGXFSZ, &old_sa, nullptr);
  auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
}

// ---------------------------------------------------------------------------
// Envelope updates (delivery state).

namespace {

bool wait_update(Spool& s, Envelope env) {
  std::promise<bool> p;
  auto f = p.get_future();
  s.update(std::move(env), [&p](bool ok) { p.set_value(ok); });
  return f.get();
}

// The envelope with some delivery progress on it.
Envelope progressed(Envelope env, int step) {
  env.attempts = uint32_t(step);
  env.next_attempt_us = 1'700'000'000'000'000 + step * 60'000'000LL;
  env.held = step % 2 == 1;
  for (Recipient& r : env.recipients) {
    r.status = RcptStatus::deferred;
    r.attempts = uint32_t(step);
    r.last_attempt_us = 1'700'000'000'000'000 + step;
    r.last_reply = "451 4.7.1 step " + std::to_string(step);
    r.dsn_status = "4.7.1";
    r.remote_host = "mx.example";
  }
  add_history(env, {step, -1, "mx.example", "451 4.7.1 step " + std::to_string(step)});
  return env;
}

}  // namespace

TEST_CASE("update replaces the envelope, keeps the content, survives reopen") {
  TempDir tmp;
  Expected want;
  std::string id;
  const std::string body = content(5000, 3);
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
    Envelope env = sample_envelope(2);
    id = put(*s, env, body);
    env.id = id;
    env.size = body.size();
    Envelope next = progressed(env, 1);
    next.size = 1;  // ignored: update() takes the size from the live message
    REQUIRE(wait_update(*s, next));
    next.size = body.size();
    want[id] = {next, body};
    check_spool(*s, want);
    CHECK(s->stats().updates == 1);
    CHECK(s->stats().commits == 1);
  }
  auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
  // And again after the reopen (the update goes to a new segment).
  Envelope later = progressed(want[id].first, 2);
  REQUIRE(wait_update(*s, later));
  want[id].first = later;
  s.reset();
  s = open_spool(tmp.spool(), 64ull << 20, 1000);
  check_spool(*s, want);
}

TEST_CASE("update of an unknown, invalid or removed id writes nothing and reports false") {
  TempDir tmp;
  auto s = open_spool(tmp.spool());
  Envelope env = sample_envelope(1);
  env.id = "0000000000000001";
  CHECK_FALSE(wait_update(*s, env));
  env.id = "not an id";
  CHECK_FALSE(wait_update(*s, env));
  std::string id = put(*s, sample_envelope(1), "hello\r\n");
  REQUIRE(wait_remove(*s, id));
  env.id = id;
  CHECK_FALSE(wait_update(*s, env));
  CHECK(s->stats().updates == 0);
  s.reset();
  s = open_spool(tmp.spool());
  CHECK(s->message_count() == 0);
  CHECK(s->recovery_warnings().empty());
}

TEST_CASE("an update queued behind a remove of the same message is refused") {
  TempDir tmp;
  auto s = open_spool(tmp.spool());
  std::string id = put(*s, sample_envelope(1), "hello\r\n");
  Envelope env = sample_envelope(1);
  env.id = id;
  // Both handed over before the writer can run the first: often one batch.
  std::promise<bool> removed, updated;
  s->remove(id, [&](bool ok) { removed.set_value(ok); });
  s->update(env, [&](bool ok) { updated.set_value(ok); });
  CHECK(removed.get_future().get());
  CHECK_FALSE(updated.get_future().get());
  s.reset();
  s = open_spool(tmp.spool());
  CHECK(s->message_count() == 0);
  CHECK(s->recovery_warnings().empty());
}

TEST_CASE("many updates in order; the last one wins, also after reopen") {
  TempDir tmp;
  Expected want;
  std::string id;
  const std::string body = content(300, 9);
  {
    auto s = open_spool(tmp.spool(), 4096, 100);  // small segments: updates span several
    Envelope env = sample_envelope(3);
    id = put(*s, env, body);
    env.id = id;
    env.size = body.size();
    std::vector<std::future<bool>> done;
    std::vector<std::promise<bool>> ps(200);
    for (int i = 0; i < 200; ++i) {
      done.push_back(ps[size_t(i)].get_future());
      env = progressed(env, i + 1);
      s->update(env, [&ps, i](bool ok) { ps[size_t(i)].set_value(ok); });
    }
    for (auto& f : done) CHECK(f.get());
    want[id] = {env, body};
    check_spool(*s, want);
    CHECK(s->stats().updates == 200);
    // Segments holding only superseded envelopes are gone (any age).
    CHECK(segment_files(tmp.spool()).size() <= 3);
  }
  auto s = open_spool(tmp.spool(), 4096, 100);
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
  // Once removed, every segment but the current one goes.
  REQUIRE(wait_remove(*s, id));
  CHECK(segment_files(tmp.spool()).size() <= 1);
  s.reset();
  s = open_spool(tmp.spool(), 4096, 100);
  CHECK(s->message_count() == 0);
}

TEST_CASE("superseded update records let their segments go, the content's segment stays") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 1024, 512);
  const std::string body = content(600, 5);  // 2 CHUNKs: fills segment 1
  std::string id = put(*s, sample_envelope(1), body);
  Envelope env = *s->messages().begin();
  for (int i = 0; i < 40; ++i) {
    env = progressed(env, i + 1);
    REQUIRE(wait_update(*s, env));
  }
  auto files = segment_files(tmp.spool());
  // The first segment (content) and the one with the newest COMMIT are
  // needed; the ones in between hold only superseded envelopes and go.
  CHECK(files.front() == "0000000000000001.seg");
  CHECK(files.size() <= 3);
  CHECK(body_of(*s, id) == body);
  REQUIRE(wait_remove(*s, id));
  CHECK(segment_files(tmp.spool()).size() <= 1);
}

TEST_CASE("a torn update: the envelope before it stays") {
  TempDir tmp;
  Expected want;
  std::string id;
  const std::string body = content(2000, 11);
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
    Envelope env = sample_envelope(4);
    id = put(*s, env, body);
    env.id = id;
    env.size = body.size();
    Envelope first = progressed(env, 1);
    REQUIRE(wait_update(*s, first));
    want[id] = {first, body};
    REQUIRE(wait_update(*s, progressed(first, 2)));
  }
  auto files = segment_files(tmp.spool());
  REQUIRE(files.size() == 1);
  const std::string original = read_file(tmp.spool() + "/segments/" + files[0]);
  auto recs = records_of(original);
  REQUIRE(recs.size() >= 4);
  REQUIRE(recs.back().type == record::Type::commit);
  for (size_t cut = recs.back().offset + 1; cut < original.size(); ++cut) {
    INFO("cut at " << cut << " of " << original.size());
    TempDir t;
    fs::create_directories(t.spool() + "/segments");
    write_file(t.spool() + "/segments/" + files[0], std::string_view(original).substr(0, cut));
    auto s = open_spool(t.spool(), 64ull << 20, 1000);
    check_spool(*s, want);
    CHECK(s->recovery_warnings().size() == 1);
  }
  // A damaged (not torn) update record: CRC mismatch in the last record is
  // also cut off, and the earlier envelope stays.
  std::string bad = original;
  bad[recs.back().offset + 30] ^= 0x55;
  TempDir t;
  fs::create_directories(t.spool() + "/segments");
  write_file(t.spool() + "/segments/" + files[0], bad);
  auto s = open_spool(t.spool(), 64ull << 20, 1000);
  check_spool(*s, want);
}

TEST_CASE("an update envelope that does not decode is skipped at recovery") {
  TempDir tmp;
  Expected want;
  std::string id;
  const std::string body = content(100, 12);
  {
    auto s = open_spool(tmp.spool());
    Envelope env = sample_envelope(1);
    id = put(*s, env, body);
    env.id = id;
    env.size = body.size();
    want[id] = {env, body};
  }
  // Append a well-framed COMMIT whose envelope is garbage, by hand.
  auto files = segment_files(tmp.spool());
  std::string seg = tmp.spool() + "/segments/" + files.back();
  std::string bytes = read_file(seg) + record::make(record::Type::commit, id, "\x07garbage");
  write_file(seg, bytes);
  auto s = open_spool(tmp.spool());
  check_spool(*s, want);
  REQUIRE(s->recovery_warnings().size() == 1);
  CHECK(s->recovery_warnings()[0].find("record skipped") != std::string::npos);
}

TEST_CASE("read_body with max_bytes reads only the first bytes") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
  const std::string body = content(5500, 13);
  std::string id = put(*s, sample_envelope(1), body);
  for (uint64_t n : {0ull, 1ull, 999ull, 1000ull, 1001ull, 5499ull, 5500ull, 9999ull}) {
    std::string got;
    REQUIRE(s->read_body(id, [&](std::string_view p) { got.append(p); }, n));
    CHECK(got == body.substr(0, size_t(n)));
  }
}

TEST_CASE("read_at reads any range of the content, across chunks and segments") {
  TempDir tmp;
  auto s = open_spool(tmp.spool(), 4096, 1000);  // 1000-byte chunks, ~4 per segment
  const std::string body = content(23'456, 21);
  std::string id = put(*s, sample_envelope(1), body, 777);
  REQUIRE(segment_files(tmp.spool()).size() > 3);
  std::vector<char> buf(9000);
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    uint64_t off = rng() % (body.size() + 10);
    size_t len = 1 + rng() % buf.size();
    auto n = s->read_at(id, off, std::span<char>(buf.data(), len));
    REQUIRE(n);
    const size_t want = off >= body.size() ? 0 : std::min<size_t>(len, body.size() - size_t(off));
    // A read may return less than asked (never more), but never wrong bytes.
    CHECK(*n <= want);
    CHECK(std::string_view(buf.data(), *n) == std::string_view(body).substr(std::min<size_t>(off, body.size()), *n));
    if (want > 0) CHECK(*n > 0);
  }
  // Streaming the whole content as delivery does: 64 KiB pieces to the end.
  std::string got;
  std::vector<char> piece(64 * 1024);
  for (;;) {
    auto n = s->read_at(id, got.size(), piece);
    REQUIRE(n);
    if (*n == 0) break;
    got.append(piece.data(), *n);
  }
  CHECK(got == body);
  CHECK_FALSE(s->read_at("0000000000000001", 0, piece));
  CHECK_FALSE(s->read_at("not an id", 0, piece));
  REQUIRE(wait_remove(*s, id));
  CHECK_FALSE(s->read_at(id, 0, piece));
}

namespace {

std::unique_ptr<Spool> open_lazy(const std::string& dir, std::chrono::milliseconds delay) {
  Spool::Options o;
  o.dir = dir;
  o.done_sync_delay = delay;
  auto s = Spool::open(o);
  REQUIRE(s);
  return std::move(*s);
}

// Callbacks in the order they ran, from the writer thread.
struct Order {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;
  Spool::CommitDone note(std::string what) {
    return [this, what](bool ok) {
      std::lock_guard lk(mu);
      seen.push_back(what + (ok ? ":ok" : ":false"));
      cv.notify_all();
    };
  }
  bool wait_for(size_t n, std::chrono::milliseconds limit) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, limit, [&] { return seen.size() >= n; });
  }
  std::vector<std::string> get() {
    std::lock_guard lk(mu);
    return seen;
  }
};

}  // namespace

TEST_CASE("a DONE waits for the next commit's fdatasync, in order, and needs none of its own") {
  TempDir tmp;
  auto s = open_lazy(tmp.spool(), std::chrono::hours(1));  // only a commit flushes
  Envelope env = sample_envelope(1);
  std::string a = put(*s, env, "message A");
  const uint64_t syncs = s->stats().syncs;
  Order order;
  s->remove(a, order.note("remove A"));
  env.id = a;
  s->update(env, order.note("update A"));  // behind the remove: refused, even unsynced
  // Written but not synced: nothing is reported, the writer is not flushing.
  CHECK_FALSE(order.wait_for(1, std::chrono::milliseconds(300)));
  CHECK(s->stats().syncs == syncs);
  CHECK(s->message_count() == 1);  // out of the index only once durable
  // A commit's fdatasync covers the DONE: one flush for both, in order.
  auto in = s->begin();
  in->append("message B");
  in->commit(sample_envelope(2), order.note("commit B"));
  REQUIRE(order.wait_for(3, std::chrono::seconds(30)));
  CHECK(order.get() == std::vector<std::string>{"remove A:ok", "update A:false", "commit B:ok"});
  CHECK(s->stats().syncs == syncs + 1);
  CHECK(s->message_count() == 1);
  s.reset();
  auto again = open_spool(tmp.spool());
  CHECK(again->message_count() == 1);
  CHECK(again->messages().at(0).id == in->id());
}

TEST_CASE("a DONE with no commit after it is flushed after done_sync_delay") {
  TempDir tmp;
  auto s = open_lazy(tmp.spool(), std::chrono::milliseconds(100));
  std::string a = put(*s, sample_envelope(1), "message A");
  const uint64_t syncs = s->stats().syncs;
  Order order;
  auto t0 = std::chrono::steady_clock::now();
  s->remove(a, order.note("remove A"));
  REQUIRE(order.wait_for(1, std::chrono::seconds(30)));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(90));
  CHECK(order.get() == std::vector<std::string>{"remove A:ok"});
  CHECK(s->stats().syncs == syncs + 1);
  CHECK(s->message_count() == 0);
}

TEST_CASE("closing the spool flushes and reports the waiting DONEs") {
  TempDir tmp;
  Order order;
  std::string a, b;
  {
    auto s = open_lazy(tmp.spool(), std::chrono::hours(1));
    a = put(*s, sample_envelope(1), "message A");
    b = put(*s, sample_envelope(2), "message B");
    s->remove(a, order.note("remove A"));
  }
  CHECK(order.get() == std::vector<std::string>{"remove A:ok"});
  auto s = open_spool(tmp.spool());
  REQUIRE(s->message_count() == 1);
  CHECK(s->messages().at(0).id == b);
}

TEST_CASE("done_sync_delay 0 flushes every DONE at once, as before") {
  TempDir tmp;
  auto s = open_lazy(tmp.spool(), std::chrono::milliseconds(0));
  std::string a = put(*s, sample_envelope(1), "message A");
  const uint64_t syncs = s->stats().syncs;
  REQUIRE(wait_remove(*s, a));
  CHECK(s->stats().syncs == syncs + 1);
  CHECK(s->message_count() == 0);
}

// ---------------------------------------------------------------------------
// Space given back (issue 11): out-of-order deletion, the segment being
// written, compaction, and recovery after each.

namespace {

std::string seg_name(uint64_t q) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx.seg", static_cast<unsigned long long>(q));
  return buf;
}

uint64_t dir_bytes(const std::string& spool) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(spool + "/segments")) n += fs::file_size(e.path());
  return n;
}

}  // namespace

TEST_CASE("one long-lived message pins neither newer segments nor, once compacted, its own") {
  TempDir tmp;
  std::string keep_id;
  const std::string keep_body = content(3000, 7);
  {
    auto s = open_spool(tmp.spool(), 64 * 1024, 4096);
    keep_id = put(*s, sample_envelope(0), keep_body);
    std::vector<std::string> ids;
    for (int i = 1; i <= 60; ++i) ids.push_back(put(*s, sample_envelope(i), content(8000, unsigned(i))));
    const auto before = segment_files(tmp.spool());
    REQUIRE(before.size() >= 7);
    for (const auto& id : ids) REQUIRE(wait_remove(*s, id));
    // Every segment but the first (the long-lived message, unless compaction
    // has copied it out already) and the one being written is gone at once,
    // though the first is older than all of them.
    CHECK(segment_files(tmp.spool()).size() <= 3);
    // A round of compaction (at most once a second, after a batch) copies the
    // message out; its first segment then goes too.
    std::string trigger = put(*s, sample_envelope(99), "x");
    REQUIRE(wait_remove(*s, trigger));
    for (int i = 0; i < 150 && segment_files(tmp.spool()).front() == before.front(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      REQUIRE(wait_remove(*s, trigger));  // any batch will do
    }
    CHECK(segment_files(tmp.spool()).front() != before.front());
    CHECK(segment_files(tmp.spool()).size() <= 2);
    CHECK(s->stats().compacted >= 1);
    CHECK(body_of(*s, keep_id) == keep_body);
    CHECK(s->message_count() == 1);
  }
  auto s = open_spool(tmp.spool(), 64 * 1024, 4096);
  CHECK(s->recovery_warnings().empty());
  REQUIRE(s->message_count() == 1);
  CHECK(s->messages()[0].id == keep_id);
  CHECK(body_of(*s, keep_id) == keep_body);
  CHECK(dir_bytes(tmp.spool()) < 64 * 1024);
}

TEST_CASE("the segment being written goes once nothing in it is needed (a full disk recovers)") {
  TempDir tmp;
  auto s = open_spool(tmp.spool());  // 64 MiB segments: everything lands in one
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(put(*s, sample_envelope(i), content(64 * 1024, unsigned(i))));
  REQUIRE(segment_files(tmp.spool()).size() == 1);
  CHECK(dir_bytes(tmp.spool()) > 2u << 20);
  for (const auto& id : ids) REQUIRE(wait_remove(*s, id));
  CHECK(segment_files(tmp.spool()).empty());
  CHECK(s->stats().segments_deleted == 1);
  // And the spool carries on in a new segment.
  std::string id = put(*s, sample_envelope(50), "after");
  CHECK(body_of(*s, id) == "after");
  CHECK(segment_files(tmp.spool()) == std::vector<std::string>{seg_name(2)});
  // A small current segment stays: no file churn on a quiet server.
  REQUIRE(wait_remove(*s, id));
  CHECK(segment_files(tmp.spool()) == std::vector<std::string>{seg_name(2)});
}

TEST_CASE("recovery: stray CHUNKs of a copy cut short do not replace a live message's content") {
  TempDir tmp;
  const std::string body = content(5000, 3);
  std::string id;
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);  // 5 CHUNKs
    id = put(*s, sample_envelope(1), body);
  }
  const std::string seg1 = read_file(tmp.spool() + "/segments/" + seg_name(1));
  auto recs = records_of(seg1);
  REQUIRE(recs.size() == 6);
  REQUIRE(recs[5].type == record::Type::commit);
  // Segment 2: the first two CHUNKs of a compaction copy, then the crash.
  write_file(tmp.spool() + "/segments/" + seg_name(2),
             std::string(record::kSegmentMagic) + seg1.substr(recs[0].offset, recs[0].size) +
                 seg1.substr(recs[1].offset, recs[1].size));
  // Segment 3 (the next run): an envelope update of the message.
  write_file(tmp.spool() + "/segments/" + seg_name(3),
             std::string(record::kSegmentMagic) + seg1.substr(recs[5].offset, recs[5].size));
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
    CHECK(s->recovery_warnings().empty());
    REQUIRE(s->message_count() == 1);
    CHECK(body_of(*s, id) == body);
  }
  // A whole copy after the stray start (a second compaction), then the
  // original deleted: the copy is what counts.
  write_file(tmp.spool() + "/segments/" + seg_name(4),
             std::string(record::kSegmentMagic) + seg1.substr(recs[0].offset, recs[5].offset + recs[5].size - recs[0].offset));
  fs::remove(tmp.spool() + "/segments/" + seg_name(1));
  fs::remove(tmp.spool() + "/segments/" + seg_name(3));
  auto s = open_spool(tmp.spool(), 64ull << 20, 1000);
  CHECK(s->recovery_warnings().empty());
  REQUIRE(s->message_count() == 1);
  CHECK(body_of(*s, id) == body);
}

TEST_CASE("recovery: a DONE kept while its COMMIT's segment stays, also across a restart") {
  TempDir tmp;
  std::string keep, gone, later;
  {
    auto s = open_spool(tmp.spool());  // both messages in segment 1
    keep = put(*s, sample_envelope(0), "keep");
    gone = put(*s, sample_envelope(1), "gone");
  }
  {
    auto s = open_spool(tmp.spool(), 1);  // from now on a segment per record
    REQUIRE(wait_remove(*s, gone));          // DONE in 2: it hides a COMMIT in 1
    later = put(*s, sample_envelope(2), "later");  // 3-4: segment 2 is sealed now
    auto files = segment_files(tmp.spool());
    // 2 holds nothing live, but 1 (kept by `keep`) still has gone's COMMIT.
    CHECK(files == std::vector<std::string>{seg_name(1), seg_name(2), seg_name(3), seg_name(4)});
  }
  {
    auto s = open_spool(tmp.spool(), 1);  // the DONE still hides message 1
    REQUIRE(s->message_count() == 2);
    CHECK(s->messages()[0].id == keep);
    CHECK(segment_files(tmp.spool()).size() == 4);  // recovery knows 2 must stay
    REQUIRE(wait_remove(*s, keep));  // DONE in 5: 1 goes, then 2
    CHECK(segment_files(tmp.spool()) == std::vector<std::string>{seg_name(3), seg_name(4), seg_name(5)});
  }
  auto s = open_spool(tmp.spool(), 1);
  REQUIRE(s->message_count() == 1);
  CHECK(body_of(*s, later) == "later");
  CHECK(s->recovery_warnings().empty());
}

TEST_CASE("a crash in the middle of removals and reclaim never brings a finished message back") {
  // A child process commits messages (small segments, so reclaim deletes
  // many files out of order), then removes them while reporting each
  // finished removal through a pipe; it is killed at a random moment. The
  // reopened spool must hold exactly the messages not reported removed
  // (a removal not yet reported may have happened or not).
  for (unsigned seed = 1; seed <= 12; ++seed) {
    TempDir tmp;
    constexpr int kMessages = 60;
    std::vector<std::string> ids;
    std::map<std::string, std::string> bodies;
    {
      auto s = open_spool(tmp.spool(), 4096, 1000);
      for (int i = 0; i < kMessages; ++i) {
        std::string b = content(1500 + 100 * size_t(i % 7), seed * 100 + unsigned(i));
        ids.push_back(put(*s, sample_envelope(i), b));
        bodies[ids.back()] = b;
      }
      // Some envelope updates, so that old COMMITs lie in other segments.
      auto msgs = s->messages();
      for (size_t i = 0; i < msgs.size(); i += 3) REQUIRE(wait_update(*s, progressed(msgs[i], 1)));
    }
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::mt19937 rng(seed);
    std::vector<std::string> order = ids;
    std::shuffle(order.begin(), order.end(), rng);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      Spool::Options o;
      o.dir = tmp.spool();
      o.segment_size = 4096;
      o.chunk_size = 1000;
      o.done_sync_delay = std::chrono::milliseconds(0);
      auto s = Spool::open(o);
      if (!s) ::_exit(3);
      std::map<std::string, Envelope> envs;
      for (const auto& e : (*s)->messages()) envs[e.id] = e;
      for (size_t k = 0; k < order.size(); ++k) {
        const std::string& id = order[k];
        std::promise<bool> p;
        (*s)->remove(id, [&p](bool ok) { p.set_value(ok); });
        if (!p.get_future().get()) ::_exit(4);
        if (::write(fds[1], id.data(), id.size()) != ssize_t(id.size())) ::_exit(5);
        // An update of a message still live: the DONEs' segments fill up and
        // are sealed, so they become candidates for deletion.
        if (k + 1 < order.size()) {
          Envelope& next = envs[order[k + 1]];
          next = progressed(next, int(k) + 2);
          std::promise<bool> u;
          (*s)->update(next, [&u](bool ok) { u.set_value(ok); });
          if (!u.get_future().get()) ::_exit(6);
        }
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    // Kill after a random number of reported removals (sometimes none).
    const size_t kill_after = rng() % (kMessages + 5);
    std::set<std::string> removed;
    char buf[16];
    while (removed.size() < kill_after) {
      size_t got = 0;
      while (got < sizeof buf) {
        ssize_t n = ::read(fds[0], buf + got, sizeof buf - got);
        if (n <= 0) break;
        got += size_t(n);
      }
      if (got != sizeof buf) break;  // the child finished
      removed.insert(std::string(buf, sizeof buf));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(fds[0]);
    INFO("seed " << seed << " killed after " << removed.size() << " reported removals");
    auto s = open_spool(tmp.spool(), 4096, 1000);
    std::set<std::string> present;
    for (const auto& e : s->messages()) present.insert(e.id);
    for (const auto& id : removed) CHECK_FALSE(present.contains(id));
    for (const auto& id : ids) {
      if (removed.contains(id)) continue;
      // Not reported: present unless its removal was durable by the kill.
      if (present.contains(id)) CHECK(body_of(*s, id) == bodies[id]);
    }
    size_t unreported_gone = 0;
    for (const auto& id : ids)
      if (!removed.contains(id) && !present.contains(id)) ++unreported_gone;
    CHECK(unreported_gone <= 2);  // at most the removal in flight (and the next)
    for (const auto& w : s->recovery_warnings()) CHECK(w.find("incomplete") == std::string::npos);
  }
}

TEST_CASE("free_space: the file system's figure, lowered by what is written in between") {
  TempDir tmp;
  auto s = open_spool(tmp.spool());
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t first = s->free_space();
  REQUIRE(first > 0);
  REQUIRE(first != UINT64_MAX);
  put(*s, sample_envelope(1), content(200000, 1));
  const uint64_t second = s->free_space();
  // Within the second the figure is cached, lowered by the bytes appended
  // (other processes on this disk make a fresh figure move either way).
  if (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(500)) CHECK(second <= first - 200000);
  CHECK(second + (64u << 20) > first);
  CHECK(second < first + (64u << 20));
}

// ---------------------------------------------------------------------------
// Issue 11: the spool's account may plant links; none is followed.

TEST_CASE("open refuses a lock that is a symbolic link and never touches its target") {
  TempDir tmp;
  { auto s = open_spool(tmp.spool()); }
  const std::string target = tmp.path + "/root-only";
  std::ofstream(target) << "secret";
  fs::remove(tmp.spool() + "/lock");
  fs::create_symlink(target, tmp.spool() + "/lock");
  auto s = Spool::open({.dir = tmp.spool()});
  REQUIRE_FALSE(s);
  CHECK(s.error() == tmp.spool() + "/lock: is a symbolic link; refused (it is never followed)");
  fs::remove(tmp.spool() + "/lock");
  fs::create_symlink(tmp.path + "/made-through-the-link", tmp.spool() + "/lock");
  CHECK_FALSE(Spool::open({.dir = tmp.spool()}));
  CHECK_FALSE(fs::exists(tmp.path + "/made-through-the-link"));
  fs::remove(tmp.spool() + "/lock");
  REQUIRE(::link(target.c_str(), (tmp.spool() + "/lock").c_str()) == 0);
  auto two = Spool::open({.dir = tmp.spool()});
  REQUIRE_FALSE(two);
  CHECK(two.error().find("2 hard links; refused") != std::string::npos);
  fs::remove(tmp.spool() + "/segments");
  fs::create_directory_symlink(tmp.path, tmp.spool() + "/segments");
  fs::remove(tmp.spool() + "/lock");
  CHECK_FALSE(Spool::open({.dir = tmp.spool()}));
}

TEST_CASE("recovery skips a segment that is a symbolic link or has two links") {
  TempDir tmp;
  { auto s = open_spool(tmp.spool()); }
  const std::string target = tmp.path + "/elsewhere.seg";
  std::ofstream(target) << "not a spool file";
  fs::create_symlink(target, tmp.spool() + "/segments/00000000000000a0.seg");
  REQUIRE(::link(target.c_str(), (tmp.spool() + "/segments/00000000000000a1.seg").c_str()) == 0);
  auto s = open_spool(tmp.spool());
  auto w = s->recovery_warnings();
  REQUIRE(w.size() == 2);
  CHECK(w[0].find("00000000000000a0.seg: a symbolic link, not a segment file; skipped") != std::string::npos);
  CHECK(w[1].find("00000000000000a1.seg: not a regular file with one link; skipped") != std::string::npos);
}

TEST_CASE("with an owner, files of another uid are an error naming them") {
  TempDir tmp;
  { auto s = open_spool(tmp.spool()); }
  Spool::Options o;
  o.dir = tmp.spool();
  o.owner = ::geteuid() + 1;
  auto s = Spool::open(o);
  REQUIRE_FALSE(s);
  CHECK(s.error().find(tmp.spool() + ": belongs to uid") == 0);
  o.owner = ::geteuid();
  CHECK(Spool::open(o));
}
