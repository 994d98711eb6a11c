// config_reader.cpp — the Reader's table walk and value converters, and the
// field helpers (config_reader.hpp). Problems are collected, never thrown.
#include "conf/config_reader.hpp"

#include <algorithm>
#include <expected>
#include <limits>

namespace sluice::conf::reader {
namespace {

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string join_key(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  return fmt::format("{}.{}", prefix, name);
}

}  // namespace

void Reader::wrong_type(const toml::node& n, const std::string& key, std::string_view expected) {
  add(key, line_of(n), fmt::format("expected {}, got {}", expected, type_name(n)));
}

bool Reader::has_problem(std::string_view key) const {
  return std::any_of(problems.begin(), problems.end(), [&](const Problem& p) {
    return p.key.starts_with(key) &&
           (p.key.size() == key.size() || p.key[key.size()] == '.' || p.key[key.size()] == '[');
  });
}

int Reader::line(const std::string& key, int fallback) const {
  auto it = seen.find(key);
  return it == seen.end() ? fallback : it->second;
}

void Reader::walk(const toml::node& n, const std::string& prefix, std::span<const Field> fields) {
  const toml::table* table = n.as_table();
  if (table == nullptr) {
    wrong_type(n, prefix, "a table");
    return;
  }
  for (auto&& [k, value] : *table) {
    std::string key = join_key(prefix, k.str());
    int key_line = static_cast<int>(k.source().begin.line);
    if (key_line == 0) key_line = line_of(value);
    seen[key] = key_line;

    auto field = std::find_if(fields.begin(), fields.end(),
                              [&](const Field& f) { return f.name == k.str(); });
    if (field != fields.end()) {
      field->read(value, key);
      continue;
    }
    std::string message = "unknown key";
    std::string_view best;
    size_t best_distance = 3;
    for (const Field& f : fields) {
      size_t d = edit_distance(k.str(), f.name);
      if (d < best_distance) {
        best_distance = d;
        best = f.name;
      }
    }
    if (!best.empty()) message += fmt::format(" (did you mean \"{}\"?)", best);
    add(key, key_line, message);
  }
}

std::optional<std::string> Reader::string(const toml::node& n, const std::string& key) {
  if (auto* s = n.as_string()) return s->get();
  wrong_type(n, key, "a string");
  return std::nullopt;
}

std::optional<bool> Reader::boolean(const toml::node& n, const std::string& key) {
  if (auto* b = n.as_boolean()) return b->get();
  wrong_type(n, key, "a boolean (true or false)");
  return std::nullopt;
}

std::optional<int64_t> Reader::integer(const toml::node& n, const std::string& key, int64_t min,
                                       int64_t max) {
  auto* i = n.as_integer();
  if (i == nullptr) {
    wrong_type(n, key, "an integer");
    return std::nullopt;
  }
  int64_t v = i->get();
  if (v < min || v > max) {
    add(key, line_of(n), fmt::format("{} is out of range ({}..{})", v, min, max));
    return std::nullopt;
  }
  return v;
}

std::optional<Duration> Reader::duration(const toml::node& n, const std::string& key) {
  std::expected<Duration, std::string> d;
  if (auto* s = n.as_string()) {
    d = parse_duration(s->get());
  } else if (auto* i = n.as_integer()) {
    d = i->get() < 0 ? std::unexpected(fmt::format("{}: a duration cannot be negative", i->get()))
                     : parse_duration(std::to_string(i->get()));
  } else {
    wrong_type(n, key, "a duration string like \"5m\"");
    return std::nullopt;
  }
  if (!d) {
    add(key, line_of(n), d.error());
    return std::nullopt;
  }
  if (d->count() <= 0) {
    add(key, line_of(n), "must be greater than zero");
    return std::nullopt;
  }
  return *d;
}

std::optional<uint64_t> Reader::size(const toml::node& n, const std::string& key, bool zero_allowed) {
  std::expected<uint64_t, std::string> v;
  if (auto* s = n.as_string()) {
    v = parse_size(s->get());
  } else if (auto* i = n.as_integer()) {
    v = i->get() < 0 ? std::unexpected(fmt::format("{}: a size cannot be negative", i->get()))
                     : parse_size(std::to_string(i->get()));
  } else {
    wrong_type(n, key, "a size string like \"35M\"");
    return std::nullopt;
  }
  if (!v) {
    add(key, line_of(n), v.error());
    return std::nullopt;
  }
  if (*v == 0 && !zero_allowed) {
    add(key, line_of(n), "must be greater than zero");
    return std::nullopt;
  }
  return *v;
}

void Reader::array(const toml::node& n, const std::string& key,
           const std::function<void(const toml::node&, const std::string&)>& each) {
  const toml::array* a = n.as_array();
  if (a == nullptr) {
    wrong_type(n, key, "an array");
    return;
  }
  for (size_t i = 0; i < a->size(); ++i) each((*a)[i], fmt::format("{}[{}]", key, i + 1));
}

Field string_field(Reader& r, std::string_view name, std::string& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto s = r.string(n, key)) dest = *s;
          }};
}

// An absolute path; "" is allowed (and means "not set") unless required.
Field path_field(Reader& r, std::string_view name, std::string& dest, bool required) {
  return {name, [&r, &dest, required](const toml::node& n, const std::string& key) {
            auto s = r.string(n, key);
            if (!s) return;
            if (s->empty() && required) {
              r.add(key, line_of(n), "must not be empty");
            } else if (!s->empty() && s->front() != '/') {
              r.add(key, line_of(n), fmt::format("\"{}\": must be an absolute path", *s));
            } else {
              dest = *s;
            }
          }};
}

// A positive count that fits uint32_t.
Field count_field(Reader& r, std::string_view name, uint32_t& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.integer(n, key, 1, std::numeric_limits<uint32_t>::max()))
              dest = static_cast<uint32_t>(*v);
          }};
}

Field bool_field(Reader& r, std::string_view name, bool& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.boolean(n, key)) dest = *v;
          }};
}

Field duration_field(Reader& r, std::string_view name, Duration& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto d = r.duration(n, key)) dest = *d;
          }};
}

std::optional<shaping::Rate> Reader::rate(const toml::node& n, const std::string& key) {
  auto s = string(n, key);
  if (!s) return std::nullopt;
  auto r = shaping::parse_rate(*s);
  if (!r) {
    add(key, line_of(n), r.error());
    return std::nullopt;
  }
  return *r;
}

Field rate_field(Reader& r, std::string_view name, shaping::Rate& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.rate(n, key)) dest = *v;
          }};
}

}  // namespace sluice::conf::reader
