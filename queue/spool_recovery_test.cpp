// spool_recovery_test.cpp — the spool's start-up: torn tails cut off, damaged
// and foreign files skipped with a warning, and the files the spool's account
// may plant (links, other owners), none followed. (Recovery after updates and
// reclamation: spool_reclaim_test.cpp.)
#include <catch2/catch.hpp>

#include "queue/spool_test_util.hpp"

using namespace spool_test;

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
