// spool_head_test.cpp — Incoming::prepend(): content known only at the end
// (a DKIM signature) written as a HEAD record just before the COMMIT and
// served first; its place in a later segment than the CHUNKs, recovery,
// compaction, a torn tail between HEAD and COMMIT, and segment accounting.
#include <catch2/catch.hpp>

#include "queue/spool_test_util.hpp"

using namespace spool_test;

namespace {

// Writes `body` in pieces, then prepends each of `heads` in turn, commits.
std::string put_with_head(Spool& s, Envelope env, const std::string& body,
                          std::initializer_list<std::string_view> heads) {
  auto in = s.begin();
  for (size_t at = 0; at < body.size(); at += 1000) in->append(std::string_view(body).substr(at, 1000));
  for (std::string_view h : heads) in->prepend(h);
  std::promise<bool> p;
  auto f = p.get_future();
  in->commit(std::move(env), [&p](bool ok) { p.set_value(ok); });
  REQUIRE(f.get());
  return in->id();
}

}  // namespace

TEST_CASE("prepend: the head comes first, counts in the size, and survives reopen") {
  TempDir tmp;
  Expected want;
  const std::string body = content(5000, 3);
  {
    auto s = open_spool(tmp.spool(), 64ull << 20, 1024);
    Envelope env = sample_envelope(1);
    std::string id = put_with_head(*s, env, body, {"Sig-B: 2\r\n", "Sig-A: 1\r\n"});
    env.id = id;
    env.size = 20 + body.size();
    want[id] = {env, "Sig-A: 1\r\nSig-B: 2\r\n" + body};
    // One without a head beside it.
    Envelope plain = sample_envelope(2);
    std::string pid = put(*s, plain, "plain\r\n");
    plain.id = pid;
    plain.size = 7;
    want[pid] = {plain, "plain\r\n"};
    check_spool(*s, want);
    // read_at across the head's end.
    char buf[30];
    auto n = s->read_at(id, 5, std::span<char>(buf, sizeof buf));
    REQUIRE(n);
    CHECK(std::string(buf, *n) == want[id].second.substr(5, 30));
  }
  // On disk: five CHUNKs, then the HEAD, then the COMMIT.
  auto files = segment_files(tmp.spool());
  REQUIRE(files.size() == 1);
  auto recs = records_of(read_file(tmp.spool() + "/segments/" + files[0]));
  REQUIRE(recs.size() >= 7);
  CHECK(recs[5].type == record::Type::head);
  CHECK(recs[6].type == record::Type::commit);
  auto s = open_spool(tmp.spool(), 64ull << 20, 1024);
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
}

TEST_CASE("a head in a later segment than the chunks: read, reopened, and its segments freed") {
  TempDir tmp;
  Expected want;
  std::string id;
  const std::string body = content(2500, 9);
  {
    // segment_size 1: every record in a segment of its own, so the HEAD
    // lies after all three CHUNKs and before the COMMIT.
    auto s = open_spool(tmp.spool(), 1, 1000);
    Envelope env = sample_envelope(3);
    id = put_with_head(*s, env, body, {"DKIM-Signature: x\r\n"});
    env.id = id;
    env.size = 19 + body.size();
    want[id] = {env, "DKIM-Signature: x\r\n" + body};
    check_spool(*s, want);
    CHECK(segment_files(tmp.spool()).size() == 5);
  }
  {
    auto s = open_spool(tmp.spool(), 1, 1000);
    CHECK(s->recovery_warnings().empty());
    check_spool(*s, want);
    // Every segment it occupied goes with it (one pin each, released once).
    REQUIRE(wait_remove(*s, id));
    auto left = segment_files(tmp.spool());
    CHECK(left.size() <= 2);  // the DONE's segment, perhaps one being written
    CHECK(s->message_count() == 0);
  }
  auto s = open_spool(tmp.spool(), 1, 1000);
  CHECK(s->message_count() == 0);
}

TEST_CASE("an update keeps the head; compaction copies it first") {
  TempDir tmp;
  std::string keep_id;
  const std::string head = "DKIM-Signature: v=1; keep me first\r\n";
  const std::string keep_body = content(3000, 7);
  {
    auto s = open_spool(tmp.spool(), 64 * 1024, 4096);
    keep_id = put_with_head(*s, sample_envelope(0), keep_body, {head});
    Envelope upd = s->messages().at(0);
    upd.attempts = 3;
    std::promise<bool> p;
    auto f = p.get_future();
    s->update(upd, [&p](bool ok) { p.set_value(ok); });
    REQUIRE(f.get());
    CHECK(body_of(*s, keep_id) == head + keep_body);
    std::vector<std::string> ids;
    for (int i = 1; i <= 60; ++i) ids.push_back(put(*s, sample_envelope(i), content(8000, unsigned(i))));
    const auto before = segment_files(tmp.spool());
    for (const auto& id : ids) REQUIRE(wait_remove(*s, id));
    std::string trigger = put(*s, sample_envelope(99), "x");
    REQUIRE(wait_remove(*s, trigger));
    for (int i = 0; i < 150 && segment_files(tmp.spool()).front() == before.front(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      REQUIRE(wait_remove(*s, trigger));
    }
    CHECK(s->stats().compacted >= 1);
    CHECK(segment_files(tmp.spool()).front() != before.front());
    CHECK(body_of(*s, keep_id) == head + keep_body);
  }
  auto s = open_spool(tmp.spool(), 64 * 1024, 4096);
  CHECK(s->recovery_warnings().empty());
  REQUIRE(s->message_count() == 1);
  CHECK(s->messages()[0].attempts == 3);
  CHECK(s->messages()[0].size == head.size() + keep_body.size());
  CHECK(body_of(*s, keep_id) == head + keep_body);
}

TEST_CASE("a crash between the HEAD and the COMMIT loses only that uncommitted message") {
  TempDir tmp;
  Expected want;
  {
    auto s = open_spool(tmp.spool());
    Envelope env = sample_envelope(4);
    std::string id = put(*s, env, "first\r\n");
    env.id = id;
    env.size = 7;
    want[id] = {env, "first\r\n"};
    put_with_head(*s, sample_envelope(5), "second\r\n", {"H: 1\r\n"});
  }
  auto files = segment_files(tmp.spool());
  REQUIRE(files.size() == 1);
  const std::string path = tmp.spool() + "/segments/" + files[0];
  const std::string bytes = read_file(path);
  auto recs = records_of(bytes);
  REQUIRE(recs.size() == 5);
  REQUIRE(recs[3].type == record::Type::head);
  write_file(path, std::string_view(bytes).substr(0, recs[4].offset));  // no COMMIT
  auto s = open_spool(tmp.spool());
  CHECK(s->recovery_warnings().empty());
  check_spool(*s, want);
}
