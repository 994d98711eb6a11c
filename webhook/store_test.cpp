#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "webhook/store.hpp"

using namespace sluice;
using namespace sluice::webhook;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/webhook_store_test.XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  safe::Dir dir() const { return *safe::open_dir(path.string()); }
};

std::vector<std::string> records(int from, int n, int64_t t = 1000) {
  std::vector<std::string> out;
  for (int i = from; i < from + n; ++i) out.push_back(encode_record(t, fmt::format(R"({{"n":{}}})", i)));
  return out;
}

std::vector<std::string> payloads(const Store::ReadResult& r) {
  std::vector<std::string> out;
  for (const auto& i : r.items) out.push_back(i.payload);
  return out;
}

}  // namespace

TEST_CASE("the store gives back what was appended, in order, and forgets what was acked") {
  TempDir t;
  auto s = Store::open(t.dir(), "q");
  REQUIRE(s);
  Store& st = **s;
  CHECK(st.read(st.acked(), 100, 1 << 20).items.empty());
  REQUIRE(st.append(records(0, 5)));
  REQUIRE(st.append(records(5, 5)));
  auto r = st.read(st.acked(), 3, 1 << 20);
  CHECK(payloads(r) == std::vector<std::string>{R"({"n":0})", R"({"n":1})", R"({"n":2})"});
  CHECK(r.items.back().end == r.next);
  auto r2 = st.read(r.next, 100, 1 << 20);
  CHECK(r2.items.size() == 7);
  CHECK(r2.next == st.end());
  REQUIRE(st.ack(r.next));
  CHECK(st.stored_bytes() == st.end().offset - r.next.offset);

  // Reopened: the unacked records come back; appends go to a new segment.
  s->reset();
  auto again = Store::open(t.dir(), "q");
  REQUIRE(again);
  CHECK((*again)->acked() == r.next);
  auto r3 = (*again)->read((*again)->acked(), 100, 1 << 20);
  CHECK(r3.items.size() == 7);
  CHECK(r3.items.front().payload == R"({"n":3})");
  REQUIRE((*again)->append(records(10, 1)));
  auto r4 = (*again)->read(r3.next, 100, 1 << 20);
  REQUIRE(r4.items.size() == 1);
  CHECK(r4.items[0].payload == R"({"n":10})");
  CHECK(r3.next == Position{2, 0});  // after segment 1, where appends now go
  CHECK(r4.items[0].end.seq == 2);
  // Acking past the old segment deletes it.
  REQUIRE((*again)->ack(r4.next));
  CHECK((*again)->stored_bytes() == 0);
  int segs = 0;
  for (const auto& e : fs::directory_iterator(t.path / "q")) segs += e.path().extension() == ".wh";
  CHECK(segs == 1);
}

TEST_CASE("segments rotate at their size, and reads cross them") {
  TempDir t;
  auto s = Store::open(t.dir(), "q", Store::Options{.segment_size = 100});
  REQUIRE(s);
  for (int i = 0; i < 20; ++i) REQUIRE((*s)->append(records(i, 1)));
  auto r = (*s)->read((*s)->acked(), 100, 1 << 20);
  REQUIRE(r.items.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(r.items[size_t(i)].payload == fmt::format(R"({{"n":{}}})", i));
  CHECK(r.skipped.empty());
  // The byte cap stops a read after the record that passes it.
  CHECK((*s)->read((*s)->acked(), 100, 10).items.size() == 2);
}

TEST_CASE("a torn or damaged tail is skipped, the next segment still read") {
  TempDir t;
  {
    auto s = Store::open(t.dir(), "q");
    REQUIRE(s);
    REQUIRE((*s)->append(records(0, 2)));
  }
  // A crash in the middle of a write: half a record at the end.
  const auto seg = t.path / "q" / segment_name(1);
  REQUIRE(fs::exists(seg));
  {
    int fd = ::open(seg.c_str(), O_WRONLY | O_APPEND);
    const std::string half = records(2, 1)[0].substr(0, 10);
    REQUIRE(::write(fd, half.data(), half.size()) == ssize_t(half.size()));
    ::close(fd);
  }
  auto s = Store::open(t.dir(), "q");
  REQUIRE(s);
  REQUIRE((*s)->append(records(3, 1)));
  auto r = (*s)->read((*s)->acked(), 100, 1 << 20);
  CHECK(payloads(r) == std::vector<std::string>{R"({"n":0})", R"({"n":1})", R"({"n":3})"});
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped[0].find("cut short") != std::string::npos);

  // A flipped octet: the checksum refuses the record and the rest of its segment.
  {
    int fd = ::open(seg.c_str(), O_RDWR);
    REQUIRE(::pwrite(fd, "X", 1, 20) == 1);
    ::close(fd);
  }
  auto s2 = Store::open(t.dir(), "q");
  REQUIRE(s2);
  auto r2 = (*s2)->read((*s2)->acked(), 100, 1 << 20);
  CHECK(payloads(r2) == std::vector<std::string>{R"({"n":3})"});
  CHECK(r2.skipped.size() == 1);
}

TEST_CASE("a damaged ack file is an error naming it; links are refused") {
  TempDir t;
  {
    auto s = Store::open(t.dir(), "q");
    REQUIRE(s);
  }
  {
    int fd = ::open((t.path / "q" / "ack").c_str(), O_WRONLY | O_CREAT, 0600);
    REQUIRE(::write(fd, "junk\n", 5) == 5);
    ::close(fd);
  }
  auto s = Store::open(t.dir(), "q");
  REQUIRE(!s);
  CHECK(s.error().find("ack") != std::string::npos);
  fs::remove(t.path / "q" / "ack");
  fs::create_symlink("/etc/passwd", t.path / "q" / segment_name(7));
  CHECK(!Store::open(t.dir(), "q"));
}
