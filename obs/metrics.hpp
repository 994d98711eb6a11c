// metrics.hpp — counters, gauges and histograms, and their rendering in the
// Prometheus text exposition format 0.0.4 (GET /metrics). Generic: the
// metrics Sluice exports are made in obs/sluice_metrics.*.
//
// A Registry holds families (one metric name: HELP, TYPE and its series),
// each series one set of label values. Series are made once, at start (or
// the first time a rare label value is seen), under the registry's mutex,
// and the caller keeps the reference it gets: recording is then one relaxed
// atomic add, no lock, no allocation, no lookup — from any thread (the
// spool's writer thread and the loop both record).
//
// Histograms count observations in integer units (microseconds, or plain
// counts) with fixed upper bounds; `per_unit` says how many units make the
// exported unit (1'000'000 for a *_seconds histogram kept in microseconds),
// so bounds and _sum are exact and the rendering divides. Buckets are kept
// per bucket and made cumulative when rendered, ending with le="+Inf";
// _count is the +Inf bucket, so the two always agree.
//
// Callback series (counter_fn, gauge_fn) and collectors (add_collector,
// which set gauges) are read at render time: the
// daemon's state (queue sizes, open connections, spool bytes) without
// touching the message path. render() runs them on the calling thread under
// the registry's mutex: a callback must not register anything.
// clear_callbacks() removes them all (the daemon at shutdown).
//
// Misuse — an invalid metric or label name, one name registered with two
// types or two label-name lists — is a programming error: abort loudly.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::obs::metrics {

class Counter {
 public:
  void add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  // `bounds`: strictly increasing upper bounds, in units; +Inf is implied.
  Histogram(std::span<const uint64_t> bounds, uint64_t per_unit);
  void observe(uint64_t units) {
    size_t i = 0;
    while (i < bounds_.size() && units > bounds_[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(units, std::memory_order_relaxed);
  }
  // Seconds (or whatever the exported unit is) as a double, rounded to units.
  void observe_value(double v);

  std::span<const uint64_t> bounds() const { return bounds_; }
  uint64_t per_unit() const { return per_unit_; }
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (= count)
    uint64_t count = 0;
    uint64_t sum_units = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<uint64_t> bounds_;
  uint64_t per_unit_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, the last for +Inf
  std::atomic<uint64_t> sum_{0};
};

enum class Type : uint8_t { counter, gauge, histogram };

// Label values in the order of the family's label names.
using Labels = std::vector<std::pair<std::string, std::string>>;  // {name, value}

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The series of `name` with `labels`, made on first use (and its family
  // with `help`). The reference stays valid as long as the Registry.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::span<const uint64_t> bounds,
                       uint64_t per_unit, const Labels& labels = {});

  // Series read at render time (see above). A callback series replaces an
  // earlier callback series with the same labels.
  void counter_fn(std::string_view name, std::string_view help, const Labels& labels,
                  std::function<double()> fn);
  void gauge_fn(std::string_view name, std::string_view help, const Labels& labels,
                std::function<double()> fn);
  // Runs before each render, e.g. to set several gauges from one snapshot
  // of the daemon's state (the same rules as callbacks).
  void add_collector(std::function<void()> fn);
  // Removes every callback series and collector.
  void clear_callbacks();

  // Every family with at least one series, in the order they were first
  // registered, each with its series in the order they were made.
  std::string render() const;

 private:
  struct Series {
    std::vector<std::string> values;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<std::string> label_names;
    std::deque<Series> series;
  };
  Family& family(std::string_view name, std::string_view help, Type type, const Labels& labels);
  Series& series(Family& f, const Labels& labels);
  void add_fn(std::string_view name, std::string_view help, Type type, const Labels& labels,
              std::function<double()> fn);

  mutable std::mutex mu_;
  std::deque<Family> families_;
  std::vector<std::function<void()>> collectors_;
};

// The text format's pieces, for the tests and for anyone rendering by hand.
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);
std::string escape_label_value(std::string_view v);  // \\ \" \n
std::string escape_help(std::string_view v);         // \\ \n
std::string format_value(double v);                  // integers without ".0"; NaN, +Inf, -Inf

// The Content-Type of render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sluice::obs::metrics
