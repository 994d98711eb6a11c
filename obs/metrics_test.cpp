#include <catch2/catch.hpp>

#include <stdio.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "obs/event.hpp"
#include "obs/metrics.hpp"
#include "obs/sluice_metrics.hpp"

using namespace sluice;
using namespace sluice::obs::metrics;

namespace {

// Runs Prometheus's own parser (python3-prometheus-client) over `text`;
// its view of the families: "name type help" lines, then one line per
// sample, "  name{labels sorted} value". Fails the test if it throws.
std::string parsed_by_prometheus(const std::string& text) {
  char path[] = "/tmp/sluice-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == ssize_t(text.size()));
  ::close(fd);
  const std::string script =
      "import sys\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
      "    print(f.name, f.type, f.documentation)\n"
      "    for s in f.samples:\n"
      "        l = ','.join('%s=%s' % (k, repr(v)) for k, v in sorted(s.labels.items()))\n"
      "        print('  %s{%s} %r' % (s.name, l, s.value))\n";
  const std::string script_path = std::string(path) + ".py";
  std::ofstream(script_path) << script;
  const std::string cmd = std::string(SLUICE_PYTHON) + " " + script_path + " " + path + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = ::pclose(p);
  ::unlink(path);
  ::unlink(script_path.c_str());
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

}  // namespace

TEST_CASE("metrics: the text format 0.0.4, family by family") {
  Registry r;
  r.counter("t_requests_total", "Requests.", {{"code", "200"}}).add(3);
  r.counter("t_requests_total", "Requests.", {{"code", "500"}}).add();
  r.counter("t_requests_total", "Requests.", {{"code", "200"}}).add(2);  // the same series
  r.gauge("t_open", "Open things.").set(-4);
  const uint64_t bounds[] = {500, 1000, 2500};
  auto& h = r.histogram("t_wait_seconds", "Waiting.", bounds, 1000);
  h.observe(100);   // 0.1 s
  h.observe(500);   // on the bound: le="0.5"
  h.observe(2000);  // 2 s
  h.observe(9000);  // beyond: +Inf only
  CHECK(r.render() ==
        "# HELP t_requests_total Requests.\n"
        "# TYPE t_requests_total counter\n"
        "t_requests_total{code=\"200\"} 5\n"
        "t_requests_total{code=\"500\"} 1\n"
        "# HELP t_open Open things.\n"
        "# TYPE t_open gauge\n"
        "t_open -4\n"
        "# HELP t_wait_seconds Waiting.\n"
        "# TYPE t_wait_seconds histogram\n"
        "t_wait_seconds_bucket{le=\"0.5\"} 2\n"
        "t_wait_seconds_bucket{le=\"1\"} 2\n"
        "t_wait_seconds_bucket{le=\"2.5\"} 3\n"
        "t_wait_seconds_bucket{le=\"+Inf\"} 4\n"
        "t_wait_seconds_sum 11.6\n"
        "t_wait_seconds_count 4\n");
}

TEST_CASE("metrics: label values and help are escaped") {
  Registry r;
  r.counter("t_x_total", "Back\\slash and\nnewline \"kept\".", {{"a", "q\"b\\s\nn"}, {"b", ""}}).add();
  CHECK(r.render() ==
        "# HELP t_x_total Back\\\\slash and\\nnewline \"kept\".\n"
        "# TYPE t_x_total counter\n"
        "t_x_total{a=\"q\\\"b\\\\s\\nn\",b=\"\"} 1\n");
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("\xc3\xa9") == "\xc3\xa9");  // UTF-8 stays as it is
}

TEST_CASE("metrics: histograms with labels put le last; values print without noise") {
  Registry r;
  const uint64_t bounds[] = {1, 4};
  auto& h = r.histogram("t_batch", "Batches.", bounds, 1, {{"disk", "a"}});
  h.observe(1);
  h.observe(3);
  h.observe(3);
  const std::string out = r.render();
  CHECK(out.find("t_batch_bucket{disk=\"a\",le=\"1\"} 1\n") != std::string::npos);
  CHECK(out.find("t_batch_bucket{disk=\"a\",le=\"4\"} 3\n") != std::string::npos);
  CHECK(out.find("t_batch_bucket{disk=\"a\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(out.find("t_batch_sum{disk=\"a\"} 7\n") != std::string::npos);
  CHECK(out.find("t_batch_count{disk=\"a\"} 3\n") != std::string::npos);

  CHECK(format_value(0) == "0");
  CHECK(format_value(1e9) == "1000000000");
  CHECK(format_value(0.005) == "0.005");
  CHECK(format_value(5000 / 1e6) == "0.005");
  CHECK(format_value(1.5) == "1.5");
  CHECK(format_value(-2) == "-2");
  CHECK(format_value(NAN) == "NaN");
  CHECK(format_value(INFINITY) == "+Inf");
  CHECK(format_value(-INFINITY) == "-Inf");

  Histogram secs(std::vector<uint64_t>{1000, 2000}, 1000);
  secs.observe_value(0.9994);  // rounds to 999 ms
  secs.observe_value(-1);      // nonsense: the lowest bucket
  secs.observe_value(1.5);
  auto snap = secs.snapshot();
  CHECK(snap.cumulative == std::vector<uint64_t>{2, 3, 3});
  CHECK(snap.count == 3);
  CHECK(snap.sum_units == 999 + 0 + 1500);
}

TEST_CASE("metrics: callbacks and collectors are read at render time, and cleared") {
  Registry r;
  double queued = 7;
  auto& conns = r.gauge("t_connections", "Connections.", {{"direction", "in"}});
  r.add_collector([&] { conns.set(int64_t(queued) * 2); });
  r.gauge_fn("t_queue", "Queue.", {{"state", "queued"}}, [&] { return queued; });
  r.counter_fn("t_warnings_total", "Warnings.", {}, [] { return 3.0; });
  CHECK(r.render().find("t_queue{state=\"queued\"} 7\n") != std::string::npos);
  queued = 2.5;
  const std::string out = r.render();
  CHECK(out.find("t_queue{state=\"queued\"} 2.5\n") != std::string::npos);
  CHECK(out.find("t_connections{direction=\"in\"} 4\n") != std::string::npos);
  CHECK(out.find("# TYPE t_warnings_total counter\nt_warnings_total 3\n") != std::string::npos);
  r.clear_callbacks();
  queued = 100;
  const std::string after = r.render();
  CHECK(after.find("t_queue") == std::string::npos);  // no series left: no family
  CHECK(after.find("t_warnings_total") == std::string::npos);
  CHECK(after.find("t_connections{direction=\"in\"} 4\n") != std::string::npos);  // kept its last value
}

TEST_CASE("metrics: names are checked") {
  CHECK(valid_metric_name("sluice_queue_messages"));
  CHECK(valid_metric_name("a:b_c9"));
  CHECK(!valid_metric_name("9a"));
  CHECK(!valid_metric_name("a-b"));
  CHECK(!valid_metric_name(""));
  CHECK(valid_label_name("listener"));
  CHECK(!valid_label_name("__name"));
  CHECK(!valid_label_name("a:b"));
}

TEST_CASE("metrics: recording from several threads loses nothing") {
  Registry r;
  auto& c = r.counter("t_n_total", "N.");
  const uint64_t bounds[] = {10};
  auto& h = r.histogram("t_h", "H.", bounds, 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.add();
        h.observe(uint64_t(i % 20));
      }
    });
  for (auto& t : threads) t.join();
  CHECK(c.value() == 400000);
  auto snap = h.snapshot();
  CHECK(snap.count == 400000);
  CHECK(snap.cumulative[0] == 4 * 100000 * 11 / 20);
}

TEST_CASE("metrics: reply classes as labels") {
  CHECK(obs::reply_class_name(obs::reply_class(550, "5.1.1")) == "5.1");
  CHECK(obs::reply_class_name(obs::reply_class(554, "5.7.26")) == "5.7");
  CHECK(obs::reply_class_name(obs::reply_class(451, "4.4.2")) == "4.4");
  CHECK(obs::reply_class_name(obs::reply_class(550, "")) == "5.0");
  CHECK(obs::reply_class_name(obs::reply_class(421, "x")) == "4.0");
  CHECK(obs::reply_class_name(obs::reply_class(550, "5.9.1")) == "5.0");
  CHECK(obs::reply_class_name(obs::reply_class(550, "5.12.1")) == "5.0");
  CHECK(obs::reply_class_name(obs::reply_class(0, "5.2.2")) == "5.2");  // a DSN status alone
  CHECK(obs::reply_class_name(obs::reply_class(250, "2.0.0")) == "other");
  CHECK(obs::reply_class_name(obs::reply_class(0, "")) == "other");
  CHECK(obs::reply_class_name(99) == "other");
  // Bounces: 5.0..5.7 as 0..7 by the enhanced status, 8 other (9 is expiry's).
  CHECK(obs::bounce_class({550, "5.1.1", ""}) == 1);
  CHECK(obs::bounce_class({0, "5.1.2", ""}) == 1);     // no server answered: Sluice's status
  CHECK(obs::bounce_class({451, "5.7.1", ""}) == 7);   // the status decides, not the reply code
  CHECK(obs::bounce_class({554, "", ""}) == 0);
  CHECK(obs::bounce_class({451, "4.4.7", ""}) == 8);   // not a permanent class: other
  CHECK(obs::bounce_class({0, "", ""}) == 8);
}

TEST_CASE("metrics: Sluice's families, counted from events, read by Prometheus's parser") {
  auto& m = obs::sluice_metrics();
  m.add_listener("127.0.0.1:25");
  obs::Event a;
  a.type = obs::EventType::reception;
  a.id = "Q1";
  a.source = "smtp:127.0.0.1:25";
  obs::Event b = a;  // the same message's second recipient: counted once
  obs::Event c = a;
  c.id = "Q2";
  c.source = "api";
  obs::Event bounce_written = a;
  bounce_written.id = "Q3";
  bounce_written.source = "bounce";
  obs::Event sent;
  sent.type = obs::EventType::delivery;
  sent.delay = 1.2;
  obs::Event refused;
  refused.type = obs::EventType::bounce;
  refused.response = {550, "5.1.1", "no such user"};
  obs::Event expired;
  expired.type = obs::EventType::expiry;
  for (const auto* e : {&a, &b, &c, &bounce_written, &sent, &refused, &expired}) m.count_event(*e);
  m.record_tls(obs::Direction::outbound, obs::TlsOutcome::cert_refused);
  m.record_dns(obs::DnsType::mx, 2);
  m.record_rejection(554, "5.7.1");
  m.record_auth_failure();
  m.record_spool_commit_us(800);
  m.record_fsync_batch(12);
  m.http_route("/metrics").count(200);
  m.http_route("/metrics").count(200);
  obs::registry().gauge("sluice_build_info", "Build.", {{"version", "0.1\"x"}}).set(1);

  const std::string text = obs::registry().render();
  const std::string seen = parsed_by_prometheus(text);
  INFO(text);
  INFO(seen);
  auto has = [&](std::string_view line) { return seen.find(line) != std::string::npos; };
  CHECK(has("  sluice_messages_received_total{listener='127.0.0.1:25'} 1.0\n"));
  CHECK(has("  sluice_messages_received_total{listener='api'} 1.0\n"));
  CHECK(has("  sluice_messages_received_total{listener='maildrop'} 0.0\n"));
  CHECK(has("  sluice_deliveries_total{status='sent'} 1.0\n"));
  CHECK(has("  sluice_deliveries_total{status='bounced'} 1.0\n"));
  CHECK(has("  sluice_deliveries_total{status='expired'} 1.0\n"));
  CHECK(has("  sluice_deliveries_total{status='deferred'} 0.0\n"));
  CHECK(has("  sluice_delivery_seconds_bucket{le='1'} 0.0\n"));
  CHECK(has("  sluice_delivery_seconds_bucket{le='2.5'} 1.0\n"));
  CHECK(has("  sluice_delivery_seconds_count{} 1.0\n"));
  CHECK(has("  sluice_delivery_seconds_sum{} 1.2\n"));
  CHECK(has("  sluice_bounces_total{class='5.1'} 1.0\n"));
  CHECK(has("  sluice_bounces_total{class='expired'} 1.0\n"));
  CHECK(has("  sluice_tls_handshakes_total{direction='outbound',outcome='cert_refused'} 1.0\n"));
  CHECK(has("  sluice_dns_lookups_total{outcome='nxdomain',type='mx'} 1.0\n"));
  CHECK(has("  sluice_smtp_rejections_total{code='5.7'} 1.0\n"));
  CHECK(has("  sluice_auth_failures_total{} 1.0\n"));
  CHECK(has("  sluice_spool_commit_seconds_bucket{le='0.001'} 1.0\n"));
  CHECK(has("  sluice_spool_commit_seconds_bucket{le='0.0005'} 0.0\n"));
  CHECK(has("  sluice_spool_fsync_batch_messages_bucket{le='16'} 1.0\n"));
  CHECK(has("  sluice_http_requests_total{route='/metrics',status='200'} 2.0\n"));
  CHECK(has("  sluice_build_info{version='0.1\"x'} 1.0\n"));
  // Each family once, with its type and help.
  // (The parser names a counter family without its _total.)
  CHECK(has("sluice_deliveries counter Delivery outcomes"));
  CHECK(has("sluice_delivery_seconds histogram Time from"));
  CHECK(has("sluice_messages_received counter Messages accepted"));
  size_t families = 0, pos = 0;
  while ((pos = text.find("# TYPE sluice_messages_received_total ", pos)) != std::string::npos) {
    ++families;
    ++pos;
  }
  CHECK(families == 1);
}
