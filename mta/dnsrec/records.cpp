// records.cpp — see records.hpp. The syntax read back from DNS:
//   SPF (RFC 7208 §4.5, §5.6): "v=spf1" then terms separated by spaces;
//     an ip4:/ip6: mechanism with an optional /prefix and "+" or no
//     qualifier authorises the addresses it covers. include:, a, mx and
//     redirect= are not followed (they would need more lookups); a:HOSTNAME
//     naming Sluice's own hostname counts, since the forward record is
//     checked on its own line.
//   DKIM (RFC 6376 §3.6.1), DMARC (RFC 7489 §6.4), TLS-RPT (RFC 8460 §3):
//     tag=value lists separated by ";", whitespace around tags and values
//     ignored; v= first where present. More than one record of a kind at a
//     name is "different": receivers treat it as an error or pick one.
#include "mta/dnsrec/records.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "mta/proto/ascii.hpp"

namespace sluice::dnsrec {

namespace {

using ascii::iequals;
using net::IpAddress;

std::string join_addresses(const std::vector<IpAddress>& addrs) {
  std::string out;
  for (size_t i = 0; i < addrs.size(); ++i)
    out += (i == 0 ? "" : i + 1 == addrs.size() ? " and " : ", ") + addrs[i].str();
  return out;
}

Record txt(Kind kind, std::string name, std::string value) {
  Record r;
  r.kind = kind;
  r.name = std::move(name) + ".";
  r.type = "TXT";
  r.value = std::move(value);
  return r;
}

// "D" or "sub.D" is covered by the [[dkim]] table of D.
bool signs(const DkimKey& k, std::string_view domain) {
  return domain == k.domain || (domain.size() > k.domain.size() && domain.ends_with(k.domain) &&
                                domain[domain.size() - k.domain.size() - 1] == '.');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && ascii::is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && (ascii::is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// A tag=value list; nullopt when a part has no "=". The first tag comes first.
using Tags = std::vector<std::pair<std::string, std::string>>;
std::optional<Tags> tag_list(std::string_view text) {
  Tags out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t semi = text.find(';', pos);
    std::string_view part = trim(text.substr(pos, semi == std::string_view::npos ? semi : semi - pos));
    pos = semi == std::string_view::npos ? text.size() + 1 : semi + 1;
    if (part.empty()) continue;  // a trailing ";"
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string tag(trim(part.substr(0, eq)));
    for (char& c : tag) c = ascii::to_lower(c);
    out.emplace_back(std::move(tag), std::string(trim(part.substr(eq + 1))));
  }
  return out;
}

const std::string* tag(const Tags& tags, std::string_view name) {
  for (const auto& [t, v] : tags)
    if (t == name) return &v;
  return nullptr;
}

// Is `text` a record of this kind (its version tag), and its tags.
std::optional<Tags> of_kind(Kind kind, std::string_view text) {
  auto tags = tag_list(text);
  if (!tags || tags->empty()) return std::nullopt;
  const auto& [first, value] = tags->front();
  switch (kind) {
    case Kind::dkim:  // v= is optional; a key record has p=
      if (first == "v" ? !iequals(value, "DKIM1") : !tag(*tags, "p")) return std::nullopt;
      return tags;
    case Kind::dmarc: return first == "v" && iequals(value, "DMARC1") ? tags : std::nullopt;
    case Kind::tlsrpt: return first == "v" && iequals(value, "TLSRPTv1") ? tags : std::nullopt;
    default: return std::nullopt;
  }
}

bool is_spf(std::string_view text) {
  return text.size() >= 6 && iequals(text.substr(0, 6), "v=spf1") && (text.size() == 6 || text[6] == ' ');
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(' ', pos);
    if (end == std::string_view::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

// Does the SPF term ("ip4:192.0.2.0/24", "+ip6:2001:db8::1") authorise `ip`?
bool covers(std::string_view term, const IpAddress& ip) {
  if (!term.empty() && term.front() == '+') term.remove_prefix(1);
  const bool v4 = term.size() > 4 && iequals(term.substr(0, 4), "ip4:");
  const bool v6 = term.size() > 4 && iequals(term.substr(0, 4), "ip6:");
  if (!v4 && !v6) return false;
  term.remove_prefix(4);
  int prefix = v4 ? 32 : 128;
  if (size_t slash = term.find('/'); slash != std::string_view::npos) {
    const std::string_view len = term.substr(slash + 1);
    if (len.empty() || len.size() > 3 || !std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    prefix = std::stoi(std::string(len));
    term = term.substr(0, slash);
  }
  auto base = IpAddress::parse(term);
  if (!base || (base->family == IpAddress::Family::v4) != v4 || prefix > (v4 ? 32 : 128)) return false;
  return net::Cidr{*base, prefix}.contains(ip);
}

bool names_host(std::string_view term, std::string_view hostname) {
  if (!term.empty() && term.front() == '+') term.remove_prefix(1);
  if (term.size() < 3 || !iequals(term.substr(0, 2), "a:")) return false;
  term.remove_prefix(2);
  if (term.ends_with('.')) term.remove_suffix(1);
  return iequals(term, hostname);
}

Verdict judge_spf(const Record& want, std::string_view hostname, std::vector<std::string> spf) {
  Verdict v;
  v.published = std::move(spf);
  if (v.published.empty()) return {Status::missing, "no v=spf1 record", {}};
  if (v.published.size() > 1) {
    v.status = Status::different;
    v.detail = fmt::format("{} SPF records: receivers take that as an error (RFC 7208 §4.5); "
                           "merge them into one", v.published.size());
    return v;
  }
  const auto terms = words(v.published.front());
  if (std::any_of(terms.begin(), terms.end(), [&](auto t) { return names_host(t, hostname); })) {
    v.status = Status::ok;
    return v;
  }
  std::vector<IpAddress> uncovered;
  bool by_host = false;
  for (std::string_view w : words(want.value)) {
    by_host |= names_host(w, hostname);
    if (!w.starts_with("ip4:") && !w.starts_with("ip6:")) continue;
    auto ip = IpAddress::parse(w.substr(4));
    if (ip && !std::any_of(terms.begin(), terms.end(), [&](auto t) { return covers(t, *ip); }))
      uncovered.push_back(*ip);
  }
  if (!by_host && uncovered.empty()) {
    v.status = Status::ok;
    return v;
  }
  v.status = Status::different;
  v.detail = by_host ? fmt::format("it does not name a:{}", hostname)
                     : fmt::format("it does not authorise {}", join_addresses(uncovered));
  v.detail += " (only ip4:, ip6: and a:HOSTNAME are checked; include:, a and mx are not followed)";
  return v;
}

Verdict judge_tags(const Record& want, std::vector<std::string> all) {
  Verdict v;
  std::vector<Tags> parsed;
  for (const std::string& text : all) {
    if (auto t = of_kind(want.kind, text)) {
      v.published.push_back(text);
      parsed.push_back(std::move(*t));
    }
  }
  const char* what = label(want.kind);
  if (parsed.empty()) return {Status::missing, fmt::format("no {} record", what), {}};
  v.status = Status::different;
  if (parsed.size() > 1) {
    v.detail = fmt::format("{} {} records at one name: receivers ignore them or pick one at random; "
                           "keep one", parsed.size(), what);
    return v;
  }
  const Tags& tags = parsed.front();
  auto value = [&](std::string_view t) { return tag(tags, t) ? *tag(tags, t) : std::string(); };
  if (want.kind == Kind::dkim) {
    const Tags expected = *tag_list(want.value);
    std::string p = value("p"), k = tag(tags, "k") ? value("k") : "rsa";
    std::erase_if(p, [](char c) { return ascii::is_wsp(c); });
    if (p.empty())
      v.detail = "its p= is empty: the key is revoked";
    else if (!iequals(k, *tag(expected, "k")))
      v.detail = fmt::format("k={} where the key is {}", k, *tag(expected, "k"));
    else if (p != *tag(expected, "p"))
      v.detail = "its p= is another key than this selector's private_key";
    else
      v.status = Status::ok;
  } else if (want.kind == Kind::dmarc) {
    const std::string p = value("p");
    if (!tag(tags, "p"))
      v.detail = "no p= (the policy)";
    else if (!iequals(p, "none") && !iequals(p, "quarantine") && !iequals(p, "reject"))
      v.detail = fmt::format("p={} is not none, quarantine or reject", p);
    else
      v.status = Status::ok;
  } else {  // TLS-RPT
    if (value("rua").empty())
      v.detail = "no rua= (where reports go)";
    else
      v.status = Status::ok;
  }
  return v;
}

Verdict judge_address(const Record& want, const Lookup& found) {
  Verdict v;
  for (const std::string& s : found.values) {
    auto ip = IpAddress::parse(s);
    if (ip && ip->family == want.address->family) v.published.push_back(s);
  }
  if (v.published.empty()) return {Status::missing, fmt::format("no {} record", want.type), {}};
  if (std::find(v.published.begin(), v.published.end(), want.address->str()) != v.published.end()) {
    v.status = Status::ok;
    return v;
  }
  v.status = Status::different;
  v.detail = fmt::format("it does not include {}", want.address->str());
  return v;
}

Verdict judge_ptr(const Record& want, std::string_view hostname, const Lookup& found,
                  std::span<const Lookup> forward) {
  Verdict v;
  for (const std::string& n : found.values) v.published.push_back(n + ".");
  const std::string addr = want.address->str();
  auto confirms = [&](size_t i) {
    if (i >= forward.size() || forward[i].kind != Lookup::Kind::found) return false;
    return std::find(forward[i].values.begin(), forward[i].values.end(), addr) != forward[i].values.end();
  };
  for (size_t i = 0; i < found.values.size(); ++i) {
    if (!iequals(found.values[i], hostname)) continue;
    if (confirms(i)) {
      v.status = Status::ok;
      return v;
    }
    if (i < forward.size() && forward[i].kind == Lookup::Kind::failed) {
      v.status = Status::lookup_failed;
      v.detail = fmt::format("the PTR names {}, whose address lookup failed: {}", hostname, forward[i].error);
      return v;
    }
    v.status = Status::different;
    v.detail = fmt::format("not forward-confirmed: the PTR names {}, which does not resolve to {}",
                           hostname, addr);
    return v;
  }
  v.status = Status::different;
  std::vector<std::string> confirmed;
  for (size_t i = 0; i < found.values.size(); ++i)
    if (confirms(i)) confirmed.push_back(found.values[i]);
  v.detail = fmt::format("the PTR names {}, not {}{}", fmt::join(found.values, ", "), hostname,
                         confirmed.empty() ? " (nor is it forward-confirmed)"
                                           : " (the EHLO name receivers compare it with)");
  return v;
}

}  // namespace

const char* label(Kind k) {
  switch (k) {
    case Kind::spf: return "SPF";
    case Kind::dkim: return "DKIM";
    case Kind::dmarc: return "DMARC";
    case Kind::tlsrpt: return "TLS-RPT";
    case Kind::address: return "forward";
    case Kind::ptr: return "PTR";
  }
  return "?";
}

const char* to_string(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::different: return "different";
    case Status::missing: return "missing";
    case Status::lookup_failed: return "lookup failed";
  }
  return "?";
}

bool is_global(const IpAddress& ip) {
  static const std::vector<net::Cidr> kLocal = [] {
    std::vector<net::Cidr> out;
    for (const char* c : {"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                          "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3", "::/127", "fe80::/10",
                          "fc00::/7", "ff00::/8"})
      out.push_back(*net::Cidr::parse(c));
    return out;
  }();
  return std::none_of(kLocal.begin(), kLocal.end(), [&](const net::Cidr& c) { return c.contains(ip); });
}

Record dkim_record(const DkimKey& k) {
  return txt(Kind::dkim, fmt::format("{}._domainkey.{}", k.selector, k.domain),
             fmt::format("v=DKIM1; k={}; p={}", k.k, k.p));
}

std::vector<Block> build(const Inputs& in) {
  std::vector<Block> out;
  std::string spf = "v=spf1";
  for (const IpAddress& ip : in.addresses)
    spf += fmt::format(" {}:{}", ip.family == IpAddress::Family::v4 ? "ip4" : "ip6", ip.str());
  if (in.addresses.empty()) spf += " a:" + in.hostname;
  spf += " ~all";
  for (const std::string& d : in.domains) {
    Block b;
    b.domain = d;
    b.records.push_back(txt(Kind::spf, d, spf));
    bool signed_ = false;
    for (const DkimKey& k : in.keys) {
      if (!signs(k, d)) continue;
      signed_ = true;
      b.records.push_back(dkim_record(k));
    }
    if (!signed_)
      b.comments.push_back(fmt::format("no [[dkim]] table signs mail from {}: make a key with "
                                       "sluicectl dkim keygen --domain {} --selector SELECTOR", d, d));
    b.records.push_back(txt(Kind::dmarc, "_dmarc." + d, "v=DMARC1; p=none; rua=mailto:postmaster@" + d));
    b.records.push_back(txt(Kind::tlsrpt, "_smtp._tls." + d, "v=TLSRPTv1; rua=mailto:postmaster@" + d));
    out.push_back(std::move(b));
  }
  Block host;
  host.domain = in.hostname;
  if (in.addresses.empty()) {
    host.comments.push_back(fmt::format(
        "no global address found on this machine: SPF names a:{}; give each sending address with "
        "--ip ADDR for ip4:/ip6: terms and the forward and PTR records", in.hostname));
  }
  for (const IpAddress& ip : in.addresses) {
    Record a;
    a.kind = Kind::address;
    a.name = in.hostname + ".";
    a.type = ip.family == IpAddress::Family::v4 ? "A" : "AAAA";
    a.value = ip.str();
    a.address = ip;
    host.records.push_back(a);
  }
  for (const IpAddress& ip : in.addresses) {
    Record p;
    p.kind = Kind::ptr;
    p.name = net::reverse_name(ip) + ".";
    p.type = "PTR";
    p.value = in.hostname + ".";
    p.address = ip;
    host.records.push_back(p);
  }
  out.push_back(std::move(host));
  return out;
}

std::vector<std::string> txt_strings(std::string_view text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size(); i += 255) out.emplace_back(text.substr(i, 255));
  if (out.empty()) out.emplace_back();
  return out;
}

std::string zone_line(const Record& r) {
  std::string rdata = r.value;
  if (r.type == "TXT") {
    std::vector<std::string> quoted;
    for (const std::string& s : txt_strings(r.value)) {
      std::string q = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') q += '\\';
        q += c;
      }
      quoted.push_back(q + "\"");
    }
    rdata = quoted.size() == 1 ? quoted.front() : fmt::format("( {} )", fmt::join(quoted, " "));
  }
  return fmt::format("{:<31} IN {:<3} {}", r.name, r.type, rdata);
}

std::string render_zone(std::span<const Block> blocks) {
  std::string out;
  for (const Block& b : blocks) {
    const bool host = &b == &blocks.back();
    if (host && b.records.empty() && b.comments.empty()) continue;
    if (host && !b.records.empty()) {
      std::vector<IpAddress> addrs;
      for (const Record& r : b.records)
        if (r.kind == Kind::address) addrs.push_back(*r.address);
      out += fmt::format("; {} sends from {}: its forward and reverse records\n", b.domain,
                         join_addresses(addrs));
    } else if (!host) {
      out += fmt::format("; {}: records to publish (sluicectl dns-records)\n", b.domain);
    }
    for (const std::string& c : b.comments) out += "; " + c + "\n";
    for (const Record& r : b.records) out += zone_line(r) + "\n";
    // A blank line between the domains' blocks; the host's block follows
    // the last domain's directly (as in the contract's example).
    if (&b + 2 < blocks.data() + blocks.size()) out += "\n";
  }
  while (out.ends_with("\n\n")) out.pop_back();
  return out;
}

std::string render_check(std::span<const Block> blocks) {
  std::string out;
  size_t total = 0, bad = 0, failed = 0;
  for (const Block& b : blocks) {
    if (b.records.empty() && b.comments.empty()) continue;
    out += fmt::format("; {}: what DNS publishes (sluicectl dns-records --check)\n", b.domain);
    for (const std::string& c : b.comments) out += "; " + c + "\n";
    for (const Record& r : b.records) {
      const Verdict v = r.verdict.value_or(Verdict{Status::lookup_failed, "not looked up", {}});
      ++total;
      bad += v.status != Status::ok && v.status != Status::lookup_failed;
      failed += v.status == Status::lookup_failed;
      std::string line = fmt::format("{:<14}{} IN {} ({})", to_string(v.status), r.name, r.type, label(r.kind));
      std::string detail = v.detail;
      if (v.status == Status::different && !v.published.empty()) {
        std::vector<std::string> shown;
        for (const std::string& p : v.published) shown.push_back(r.type == "TXT" ? "\"" + p + "\"" : p);
        detail = fmt::format("published {}{}{}", fmt::join(shown, " and "), detail.empty() ? "" : ": ", detail);
      }
      out += detail.empty() ? line + "\n" : line + ": " + detail + "\n";
    }
    out += "\n";
  }
  if (bad == 0 && failed == 0)
    out += fmt::format("all {} records are published as they should be\n", total);
  if (bad > 0)
    out += fmt::format("{} of {} records are not right; publish them as `sluicectl dns-records` prints "
                       "them (DNS changes take up to the old record's TTL to be seen)\n", bad, total);
  if (failed > 0)
    out += fmt::format("{} of {} records could not be looked up; are the [dns] servers reachable?\n",
                       failed, total);
  return out;
}

std::string render_json(std::span<const Block> blocks) {
  nlohmann::json domains = nlohmann::json::array();
  for (const Block& b : blocks) {
    if (b.records.empty() && b.comments.empty()) continue;
    nlohmann::json records = nlohmann::json::array();
    for (const Record& r : b.records) {
      nlohmann::json j = {{"name", r.name}, {"type", r.type}, {"value", r.value}, {"kind", label(r.kind)}};
      if (r.verdict) {
        j["status"] = to_string(r.verdict->status);
        j["published"] = r.verdict->published;
        j["detail"] = r.verdict->detail;
      }
      records.push_back(std::move(j));
    }
    nlohmann::json block = {{"domain", b.domain}, {"records", std::move(records)}};
    if (!b.comments.empty()) block["comments"] = b.comments;
    domains.push_back(std::move(block));
  }
  // Replace, not throw, on bytes that are not UTF-8 (published TXT is anyone's).
  return nlohmann::json{{"domains", std::move(domains)}}.dump(-1, ' ', false,
                                                              nlohmann::json::error_handler_t::replace);
}

bool all_ok(std::span<const Block> blocks) {
  for (const Block& b : blocks)
    for (const Record& r : b.records)
      if (!r.verdict || r.verdict->status != Status::ok) return false;
  return true;
}

Verdict judge(const Record& want, std::string_view hostname, const Lookup& found,
              std::span<const Lookup> forward) {
  if (found.kind == Lookup::Kind::failed) return {Status::lookup_failed, found.error, {}};
  if (found.kind == Lookup::Kind::missing || found.values.empty()) {
    std::string detail = found.error.empty() ? "nothing published" : found.error;
    return {Status::missing, detail, {}};
  }
  switch (want.kind) {
    case Kind::spf: {
      std::vector<std::string> spf;
      for (const std::string& t : found.values)
        if (is_spf(t)) spf.push_back(t);
      return judge_spf(want, hostname, std::move(spf));
    }
    case Kind::dkim:
    case Kind::dmarc:
    case Kind::tlsrpt: return judge_tags(want, found.values);
    case Kind::address: return judge_address(want, found);
    case Kind::ptr: return judge_ptr(want, hostname, found, forward);
  }
  return {};
}

}  // namespace sluice::dnsrec
