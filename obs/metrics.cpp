// metrics.cpp — the registry of metrics.hpp and the text format 0.0.4.
#include "obs/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace sluice::obs::metrics {

namespace {

[[noreturn]] void misuse(std::string_view what, std::string_view name) {
  std::fprintf(stderr, "metrics: %.*s: %.*s\n", int(what.size()), what.data(), int(name.size()),
               name.data());
  std::abort();
}

bool name_char(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

// The exported value of `units` (exact for integers below 2^53).
std::string units_value(uint64_t units, uint64_t per_unit) {
  if (per_unit == 1) return fmt::format("{}", units);
  return format_value(static_cast<double>(units) / static_cast<double>(per_unit));
}

// `{a="x",b="y"` without the closing brace, or "" without labels; `extra`
// (le) is added by the caller.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

std::string_view type_name(Type t) {
  switch (t) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, true)) return false;
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, false)) return false;
  return true;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);  // the shortest form that reads back as v
}

// --- Histogram ---------------------------------------------------------------

Histogram::Histogram(std::span<const uint64_t> bounds, uint64_t per_unit)
    : bounds_(bounds.begin(), bounds.end()),
      per_unit_(per_unit),
      counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  if (per_unit == 0) misuse("histogram with per_unit 0", "");
  for (size_t i = 1; i < bounds_.size(); ++i)
    if (bounds_[i] <= bounds_[i - 1]) misuse("histogram bounds not increasing", "");
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe_value(double v) {
  if (!(v > 0)) {  // negative, zero, NaN: the lowest bucket
    observe(0);
    return;
  }
  const double units = std::round(v * static_cast<double>(per_unit_));
  observe(units >= 1.8e19 ? UINT64_MAX / 2 : static_cast<uint64_t>(units));
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.count = total;
  s.sum_units = sum_.load(std::memory_order_relaxed);
  return s;
}

// --- Registry ----------------------------------------------------------------

Registry::Family& Registry::family(std::string_view name, std::string_view help, Type type,
                                   const Labels& labels) {
  for (auto& f : families_) {
    if (f.name != name) continue;
    if (f.type != type) misuse("registered with two types", name);
    if (f.label_names.size() != labels.size()) misuse("registered with two label lists", name);
    for (size_t i = 0; i < labels.size(); ++i)
      if (f.label_names[i] != labels[i].first) misuse("registered with two label lists", name);
    return f;
  }
  if (!valid_metric_name(name)) misuse("invalid metric name", name);
  Family& f = families_.emplace_back();
  f.name = name;
  f.help = help;
  f.type = type;
  for (const auto& [label, value] : labels) {
    if (!valid_label_name(label)) misuse("invalid label name", label);
    if (type == Type::histogram && label == "le") misuse("a histogram label named le", name);
    f.label_names.push_back(label);
  }
  return f;
}

Registry::Series& Registry::series(Family& f, const Labels& labels) {
  for (auto& s : f.series) {
    bool same = true;
    for (size_t i = 0; i < labels.size() && same; ++i) same = s.values[i] == labels[i].second;
    if (same) return s;
  }
  Series& s = f.series.emplace_back();
  for (const auto& l : labels) s.values.push_back(l.second);
  return s;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lk(mu_);
  Series& s = series(family(name, help, Type::counter, labels), labels);
  if (s.fn) misuse("a callback series used as a counter", name);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lk(mu_);
  Series& s = series(family(name, help, Type::gauge, labels), labels);
  if (s.fn) misuse("a callback series used as a gauge", name);
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::span<const uint64_t> bounds, uint64_t per_unit,
                               const Labels& labels) {
  std::lock_guard lk(mu_);
  Series& s = series(family(name, help, Type::histogram, labels), labels);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(bounds, per_unit);
  return *s.histogram;
}

void Registry::add_fn(std::string_view name, std::string_view help, Type type, const Labels& labels,
                      std::function<double()> fn) {
  std::lock_guard lk(mu_);
  Series& s = series(family(name, help, type, labels), labels);
  if (s.counter || s.gauge) misuse("a recorded series given a callback", name);
  s.fn = std::move(fn);
}

void Registry::counter_fn(std::string_view name, std::string_view help, const Labels& labels,
                          std::function<double()> fn) {
  add_fn(name, help, Type::counter, labels, std::move(fn));
}

void Registry::gauge_fn(std::string_view name, std::string_view help, const Labels& labels,
                        std::function<double()> fn) {
  add_fn(name, help, Type::gauge, labels, std::move(fn));
}

void Registry::add_collector(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  collectors_.push_back(std::move(fn));
}

void Registry::clear_callbacks() {
  std::lock_guard lk(mu_);
  collectors_.clear();
  for (auto& f : families_)
    std::erase_if(f.series, [](const Series& s) { return static_cast<bool>(s.fn); });
}

std::string Registry::render() const {
  std::lock_guard lk(mu_);
  for (const auto& c : collectors_) c();
  std::string out;
  out.reserve(8192);
  for (const auto& f : families_) {
    if (f.series.empty()) continue;
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", f.name, escape_help(f.help),
                   f.name, type_name(f.type));
    for (const auto& s : f.series) {
      if (f.type == Type::histogram) {
        const Histogram& h = *s.histogram;
        const auto snap = h.snapshot();
        const auto bounds = h.bounds();
        for (size_t i = 0; i <= bounds.size(); ++i) {
          out += f.name;
          out += "_bucket";
          append_labels(out, f.label_names, s.values, "le",
                        i < bounds.size() ? units_value(bounds[i], h.per_unit()) : "+Inf");
          fmt::format_to(std::back_inserter(out), " {}\n", snap.cumulative[i]);
        }
        out += f.name;
        out += "_sum";
        append_labels(out, f.label_names, s.values);
        out += ' ';
        out += units_value(snap.sum_units, h.per_unit());
        out += '\n';
        out += f.name;
        out += "_count";
        append_labels(out, f.label_names, s.values);
        fmt::format_to(std::back_inserter(out), " {}\n", snap.count);
        continue;
      }
      out += f.name;
      append_labels(out, f.label_names, s.values);
      out += ' ';
      if (s.fn)
        out += format_value(s.fn());
      else if (s.counter)
        out += fmt::format("{}", s.counter->value());
      else
        out += fmt::format("{}", s.gauge->value());
      out += '\n';
    }
  }
  return out;
}

}  // namespace sluice::obs::metrics
