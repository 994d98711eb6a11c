// aliases.cpp — see aliases.hpp. Pure.
#include "conf/aliases.hpp"

#include <fmt/format.h>

#include <cctype>

#include "mta/proto/command.hpp"

namespace sluice::aliases {

namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]);
    const auto y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

bool ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

const std::vector<std::string>* find(const Table& t, const std::string& key) {
  auto it = t.find(key);
  return it == t.end() ? nullptr : &it->second;
}

}  // namespace

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string orcpt(std::string_view address) {
  std::string out = "rfc822;";
  for (char ch : address) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x21 || u > 0x7e || ch == '+' || ch == '=')
      out += fmt::format("+{:02X}", static_cast<unsigned>(u));
    else
      out += ch;
  }
  return out;
}

bool local_domain(std::string_view domain, std::string_view hostname) {
  return domain.empty() || iequal(domain, hostname) || iequal(domain, "localhost");
}

Resolution resolve(const Table& table, std::string_view hostname, std::string_view address) {
  Resolution r;
  // A domain never holds '@'; a quoted local part may.
  const size_t at = address.rfind('@');
  const std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  const std::string_view domain =
      at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
  if (!local_domain(domain, hostname)) return r;
  r.name = lower(local);
  struct Step {
    std::string key;
    bool applies;
  };
  const Step steps[] = {
      {r.name, true},
      {"root", r.name == "postmaster"},
      {std::string(kCatchAll), true},
  };
  for (const Step& s : steps) {
    if (!s.applies) continue;
    if (const auto* targets = find(table, s.key)) {
      r.kind = Resolution::Kind::alias;
      r.entry = s.key;
      r.targets = targets;
      return r;
    }
  }
  r.kind = Resolution::Kind::unknown;
  return r;
}

std::optional<std::string> check_name(std::string_view name) {
  if (name == kCatchAll) return std::nullopt;
  if (name.empty()) return "an alias name must not be empty";
  if (!ascii(name)) return "an alias name must be ASCII";
  if (name.size() > 64) return "an alias name is a local part of at most 64 octets";
  // The grammar of RCPT TO decides what a dot-string is.
  auto path = proto::parse_path(fmt::format("<{}@example.com>", name), false);
  if (!path || path->local != name || path->local.front() == '"')
    return fmt::format(
        "\"{}\" is not a local name (letters, digits, dots and !#$%&'*+-/=?^_`{{|}}~)", name);
  return std::nullopt;
}

std::optional<std::string> check_target(std::string_view target, std::string_view hostname) {
  if (!ascii(target)) return fmt::format("\"{}\": alias targets must be ASCII", target);
  auto path = proto::parse_path(fmt::format("<{}>", target), false);
  if (!path || path->domain.empty() || path->str() != target)
    return fmt::format("\"{}\" is not an address (local@domain)", target);
  if (local_domain(path->domain, hostname))
    return fmt::format("\"{}\" is itself local (its domain is hostname or localhost); aliases "
                       "are expanded once, so a target must be an address elsewhere",
                       target);
  return std::nullopt;
}

std::optional<std::string> root_warning(const Table& table) {
  if (table.contains("root") || table.contains(std::string(kCatchAll))) return std::nullopt;
  return "aliases: root has no entry (and there is no \"*\"), so mail to root and postmaster is "
         "refused; add root = [\"you@example.com\"] to [aliases]";
}

}  // namespace sluice::aliases
