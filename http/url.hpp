// url.hpp — the http:// and https:// URLs Sluice is configured with
// ([[webhook]] url), pure. No user info, no fragment; the host is a DNS name
// or an IP literal (IPv6 in brackets); the path keeps its query.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sluice::http {

struct Url {
  bool tls = true;       // https
  std::string host;      // lower case, without brackets
  uint16_t port = 443;   // default 443 (https) or 80 (http)
  std::string target;    // "/path?query", at least "/"
  std::string str() const;  // written back: "https://host:port/path"
};

std::expected<Url, std::string> parse_url(std::string_view text);

}  // namespace sluice::http
