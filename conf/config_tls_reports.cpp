// config_tls_reports.cpp — the [tls_reports] table of the configuration
// (conf/config.hpp, conf::TlsReports): read and checked here, called by
// parse() in config.cpp. The reports themselves are mta/tls_reports.*.
#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>

#include "conf/config.hpp"
#include "conf/config_reader.hpp"

namespace sluice::conf {

using namespace reader;

void read_tls_reports(Reader& r, const toml::node& n, const std::string& key, TlsReports& t) {
  const Field f[] = {
      bool_field(r, "enabled", t.enabled),
      string_field(r, "organization", t.organization),
      string_field(r, "contact", t.contact),
  };
  r.walk(n, key, f);
}

// [tls_reports]: printable ASCII organization; when enabled, a contact
// address whose domain a [[dkim]] table signs (reports must be DKIM-signed,
// RFC 8460 §5.3; a table for the domain or a parent domain signs it).
void check_tls_reports(Reader& r, Config& cfg) {
  TlsReports& t = cfg.tls_reports;
  for (char c : t.organization)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      r.add("tls_reports.organization", r.line("tls_reports.organization"), "must be printable ASCII");
      break;
    }
  if (t.organization.empty()) t.organization = cfg.hostname;
  if (!t.contact.empty()) {
    auto at = t.contact.rfind('@');
    bool ok = at != std::string::npos && at > 0 && !check_domain_name(t.contact.substr(at + 1));
    for (char c : t.contact)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f || c == '<' ||
          c == '>' || c == '"' || c == ',')
        ok = false;
    if (!ok) {
      r.add("tls_reports.contact", r.line("tls_reports.contact"),
            fmt::format("\"{}\": not an address (local@domain)", t.contact));
      return;
    }
  }
  if (!t.enabled) return;
  if (t.contact.empty()) {
    r.add("tls_reports.contact", r.line("tls_reports.enabled"),
          "required when tls_reports.enabled is true (the reports' From and contact-info)");
    return;
  }
  std::string domain = t.contact.substr(t.contact.rfind('@') + 1);
  for (char& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (std::none_of(cfg.dkim.begin(), cfg.dkim.end(), [&](const Dkim& k) { return k.covers(domain); }))
    r.add("tls_reports.contact", r.line("tls_reports.contact"),
          fmt::format("reports are DKIM-signed by the contact's domain: add a [[dkim]] table for {}", domain));
}

}  // namespace sluice::conf
