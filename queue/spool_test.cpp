// spool_test.cpp — the spool: record codec, write/read, group commit,
// durability before the callback, DONE records waiting for a flush.
// Recovery: spool_recovery_test.cpp; removal, updates and reclamation:
// spool_reclaim_test.cpp; shared helpers: spool_test_util.hpp.
#include <catch2/catch.hpp>

#include "queue/spool_test_util.hpp"

using namespace spool_test;

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
    uint64_t on_disk = 0;  // disk_bytes(): what the segment files hold
    for (const auto& f : segment_files(tmp.spool())) on_disk += fs::file_size(tmp.spool() + "/segments/" + f);
    CHECK(s->disk_bytes() == on_disk);
    CHECK(on_disk >= s->stats().bytes);
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
// DONE records wait for a flush (done_sync_delay).

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
