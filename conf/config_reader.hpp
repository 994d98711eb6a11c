// config_reader.hpp — private to conf/config*.cpp: reading a toml++ tree
// into typed values.
//
// A Reader walks one table at a time against a list of known keys (Field:
// a name and a handler); any other key is reported as unknown, with the
// closest known key as a "did you mean". Its converters check a value's
// type and range (string, integer, duration, size, array, one of a list of
// names) and return it, or add a Problem naming the full key and its line
// and return nothing: every problem is collected, nothing stops at the
// first. The *_field helpers bind a key to a Config member. The section
// readers and the checks across keys are in config.cpp.
//
// Pure; one Reader per parse, used from one thread.
#pragma once

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/config.hpp"
#include "shaping/rate.hpp"
#include "shaping/settings.hpp"

namespace sluice::conf::reader {

using Handler = std::function<void(const toml::node& value, const std::string& key)>;

struct Field {
  std::string_view name;
  Handler read;
};

inline int line_of(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

class Reader {
 public:
  std::vector<Problem> problems;
  std::map<std::string, int> seen;  // key -> line of every key present

  void add(std::string key, int line, std::string message) {
    problems.push_back(Problem{std::move(key), line, std::move(message)});
  }

  void wrong_type(const toml::node& n, const std::string& key, std::string_view expected);

  // True when a problem was reported for `key` or anything below it.
  bool has_problem(std::string_view key) const;

  int line(const std::string& key, int fallback = 0) const;

  // Runs the reader of each key of table `n`; reports keys without one.
  void walk(const toml::node& n, const std::string& prefix, std::span<const Field> fields);

  std::optional<std::string> string(const toml::node& n, const std::string& key);

  std::optional<bool> boolean(const toml::node& n, const std::string& key);

  std::optional<int64_t> integer(const toml::node& n, const std::string& key, int64_t min,
                                 int64_t max);

  std::optional<Duration> duration(const toml::node& n, const std::string& key);

  // A rate: "N/s", "N/m", "N/h", "N/d", or "" for unlimited (shaping::parse_rate).
  std::optional<shaping::Rate> rate(const toml::node& n, const std::string& key);

  // A size; 0 only where `zero_allowed` (it then means "off").
  std::optional<uint64_t> size(const toml::node& n, const std::string& key, bool zero_allowed = false);

  // Calls each(element, "key[i]") for every element of an array.
  void array(const toml::node& n, const std::string& key,
             const std::function<void(const toml::node&, const std::string&)>& each);

  // An enumeration given as one of `names`.
  template <typename E>
  std::optional<E> choice(const toml::node& n, const std::string& key,
                          std::span<const std::pair<std::string_view, E>> names) {
    auto s = string(n, key);
    if (!s) return std::nullopt;
    std::string list;
    for (auto& [name, value] : names) {
      if (name == *s) return value;
      list += list.empty() ? "" : ", ";
      list += name;
    }
    add(key, line_of(n), fmt::format("\"{}\" is not one of {}", *s, list));
    return std::nullopt;
  }
};

Field string_field(Reader& r, std::string_view name, std::string& dest);

// An absolute path; "" is allowed (and means "not set") unless required.
Field path_field(Reader& r, std::string_view name, std::string& dest, bool required);

// A positive count that fits uint32_t.
Field count_field(Reader& r, std::string_view name, uint32_t& dest);

Field bool_field(Reader& r, std::string_view name, bool& dest);

Field duration_field(Reader& r, std::string_view name, Duration& dest);

// A rate as shaping::parse_rate reads it ("1000/h"; "" = unlimited).
Field rate_field(Reader& r, std::string_view name, shaping::Rate& dest);

}  // namespace sluice::conf::reader

namespace sluice::conf {

// [[dkim]] (conf/config_dkim.cpp): the tables of `n` (the value at `key`)
// into cfg.dkim, problems into r.
void read_dkim(reader::Reader& r, const toml::node& n, const std::string& key, Config& cfg);

// [tls_reports] (conf/config_tls_reports.cpp): its keys, and the check
// across keys (organization, contact, a [[dkim]] table for the contact's
// domain) run once every table has been read.
void read_tls_reports(reader::Reader& r, const toml::node& n, const std::string& key, TlsReports& t);
void check_tls_reports(reader::Reader& r, Config& cfg);

// [shaping] (conf/config_shaping.cpp): what was written, until finish_shaping()
// fills in the defaults (after [delivery] is known) and reads the provider file.
struct SiteDraft {
  shaping::Site site;
  std::optional<uint32_t> connections, messages_per_connection;
  std::optional<shaping::Rate> rate;
  std::optional<bool> adaptive;
};
struct ShapingDraft {
  std::optional<uint32_t> connections, messages_per_connection;
  std::optional<shaping::Rate> rate;
  std::vector<SiteDraft> sites;
};
void read_shaping(reader::Reader& r, const toml::node& n, const std::string& key, Config& cfg,
                  ShapingDraft& draft);
// [cluster]: the Redis URL and password file (checked in finish_shaping).
void read_cluster(reader::Reader& r, const toml::node& n, const std::string& key, Config& cfg);
// Defaults, the provider file, the rules' site names and [cluster]'s values.
void finish_shaping(reader::Reader& r, Config& cfg, ShapingDraft& draft);

// [http], [log] and [[webhook]] (conf/config_http.cpp); check_http runs
// once every table has been read.
void read_http(reader::Reader& r, const toml::node& n, const std::string& key, Http& h);
void read_log(reader::Reader& r, const toml::node& n, const std::string& key, Log& l);
void read_webhooks(reader::Reader& r, const toml::node& n, const std::string& key, Config& cfg);
void check_http(reader::Reader& r, Config& cfg);

}  // namespace sluice::conf
