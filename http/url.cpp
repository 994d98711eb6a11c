// url.cpp — parse_url (url.hpp).
#include "http/url.hpp"

#include <fmt/format.h>

namespace sluice::http {

namespace {

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

}  // namespace

std::string Url::str() const {
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}{}", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port, target);
}

std::expected<Url, std::string> parse_url(std::string_view text) {
  Url u;
  std::string_view rest;
  if (text.starts_with("https://")) {
    rest = text.substr(8);
  } else if (text.starts_with("http://")) {
    u.tls = false;
    u.port = 80;
    rest = text.substr(7);
  } else {
    return std::unexpected(std::string("must begin with https:// (or http://)"));
  }
  for (char c : text)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return std::unexpected(std::string("must be printable ASCII without spaces"));
  if (text.find('#') != std::string_view::npos) return std::unexpected(std::string("must not have a #fragment"));
  const size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (u.target.front() == '?') u.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos)
    return std::unexpected(std::string("must not carry a user name or password"));
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with("[")) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::unexpected(std::string("unclosed [ in the host"));
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::unexpected(std::string("junk after ]"));
      port = after.substr(1);
      if (port.empty()) return std::unexpected(std::string("an empty port"));
    }
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return std::unexpected(std::string("not an IPv6 address in [ ]"));
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return std::unexpected(std::string("an empty port"));
    }
  }
  if (host.empty()) return std::unexpected(std::string("no host"));
  for (char c : host) {
    char l = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    if (!authority.starts_with("[") && !host_char(l))
      return std::unexpected(fmt::format("\"{}\" is not a host name", host));
    u.host += l;
  }
  if (!port.empty()) {
    uint32_t p = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return std::unexpected(fmt::format("bad port \"{}\"", port));
      p = p * 10 + static_cast<uint32_t>(c - '0');
      if (p > 65535) return std::unexpected(fmt::format("bad port \"{}\"", port));
    }
    if (p == 0) return std::unexpected(fmt::format("bad port \"{}\"", port));
    u.port = static_cast<uint16_t>(p);
  }
  return u;
}

}  // namespace sluice::http
