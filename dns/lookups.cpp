// lookups.cpp — what each Resolver::resolve_*() asks and how the answers
// combine (the policy summed up in resolver.hpp; docs/dns.md). Each lookup
// is reference-counted state captured by its query callbacks and ends in
// Core::finish(id, result) exactly once (core.hpp).
//   resolve_host()  A + AAAA asked at once, combined;
//   MxLookup        MX, then its hosts' addresses, or the implicit MX;
//   single_query()  one query whose answer maps straight to a result (TXT,
//                   PTR, TLSA).
#include <algorithm>
#include <memory>
#include <optional>

#include "dns/core.hpp"

namespace sluice::dns {

namespace detail {

namespace {

void ascii_lower(std::string& s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

// A name as DNS can carry it: lower case, no trailing dot, ASCII only,
// labels of 1..63 octets, 253 octets at most. Backslashes are refused since
// c-ares would read them as escapes.
std::expected<std::string, std::string> normalize_name(std::string_view in) {
  std::string s(in);
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s.empty()) return std::unexpected("empty domain name");
  if (s.size() > 253) return std::unexpected("domain name longer than 253 octets");
  size_t label = 0;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '.') {
      if (label == 0) return std::unexpected("empty label in domain name");
      label = 0;
      continue;
    }
    if (u >= 0x80) return std::unexpected("domain name is not ASCII (IDNs must be given as A-labels)");
    if (u <= 0x20 || u == 0x7f || c == '\\') return std::unexpected("invalid character in domain name");
    if (++label > 63) return std::unexpected("label longer than 63 octets in domain name");
  }
  if (label == 0) return std::unexpected("empty label in domain name");
  ascii_lower(s);
  return s;
}

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3). nullopt when the
// text is not bracketed; an error when it is but holds no valid address.
std::optional<std::expected<net::IpAddress, std::string>> parse_literal(std::string_view text) {
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') return std::nullopt;
  std::string_view inner = text.substr(1, text.size() - 2);
  bool v6 = iequals_prefix(inner, "ipv6:");
  if (v6) inner.remove_prefix(5);
  auto ip = net::IpAddress::parse(inner);
  if (!ip || (ip->family == net::IpAddress::Family::v6) != v6)
    return std::unexpected("invalid address literal " + std::string(text));
  return *ip;
}

AddrResult addr_result_of(const net::IpAddress& ip) {
  AddrResult r;
  r.status = Status::ok;
  (ip.family == net::IpAddress::Family::v4 ? r.ipv4 : r.ipv6).push_back(ip);
  return r;
}

// The addresses of `name` from its A and AAAA answers: ok if either family
// has one; else temporary if either query failed temporarily; else nxdomain
// when the name does not exist, or no_route (with `nothing` as the reason
// when the name exists without addresses).
AddrResult combine(const std::string& name, const Answer& a, const Answer& aaaa, const char* nothing) {
  AddrResult r;
  r.secure = a.cacheable() && aaaa.cacheable() && a.authenticated && aaaa.authenticated;
  if (a.kind == Answer::Kind::records) r.ipv4 = a.addresses;
  if (aaaa.kind == Answer::Kind::records) r.ipv6 = aaaa.addresses;
  if (!r.ipv4.empty() || !r.ipv6.empty()) {
    r.status = Status::ok;
    return r;
  }
  for (auto kind : {Answer::Kind::temporary, Answer::Kind::permanent}) {
    for (const auto& [ans, type] : {std::pair<const Answer*, const char*>{&a, "A"}, {&aaaa, "AAAA"}}) {
      if (ans->kind != kind) continue;
      r.status = kind == Answer::Kind::temporary ? Status::temporary : Status::no_route;
      r.reason = name + " " + type + ": " + ans->error;
      return r;
    }
  }
  if (a.kind == Answer::Kind::nxdomain || aaaa.kind == Answer::Kind::nxdomain) {
    r.status = Status::nxdomain;
    r.reason = name + ": domain does not exist (NXDOMAIN)";
  } else {
    r.status = Status::no_route;
    r.reason = name + ": " + nothing;
  }
  return r;
}

// A and AAAA of `name`, asked at once; `done` gets the combination.
void resolve_host(Core& core, const std::string& name, std::function<void(AddrResult)> done,
                  const char* nothing = "no A or AAAA records") {
  struct State {
    std::string name;
    const char* nothing;
    std::function<void(AddrResult)> done;
    Answer a, aaaa;
    int remaining = 2;
    void got() {
      if (--remaining == 0) done(combine(name, a, aaaa, nothing));
    }
  };
  auto st = std::make_shared<State>();
  st->name = name;
  st->nothing = nothing;
  st->done = std::move(done);
  core.query(name, QueryType::a, [st](const Answer& ans) {
    st->a = ans;
    st->got();
  });
  core.query(name, QueryType::aaaa, [st](const Answer& ans) {
    st->aaaa = ans;
    st->got();
  });
}

class MxLookup : public std::enable_shared_from_this<MxLookup> {
 public:
  MxLookup(Core& core, Resolver::RequestId id, std::string domain)
      : core_(core), id_(id), domain_(std::move(domain)) {}

  void start() {
    auto self = shared_from_this();
    core_.query(domain_, QueryType::mx, [self](const Answer& a) { self->on_mx(a); });
  }

 private:
  void fail(Status status, std::string reason) {
    MxResult r;
    r.status = status;
    r.reason = std::move(reason);
    core_.finish(id_, std::move(r));
  }

  void on_mx(const Answer& a) {
    mx_secure_ = a.authenticated;
    switch (a.kind) {
      case Answer::Kind::records: return on_mx_records(a.mx);
      case Answer::Kind::nodata: return implicit_mx();
      case Answer::Kind::nxdomain: return fail(Status::nxdomain, domain_ + ": domain does not exist (NXDOMAIN)");
      case Answer::Kind::temporary: return fail(Status::temporary, domain_ + " MX: " + a.error);
      case Answer::Kind::permanent: return fail(Status::no_route, domain_ + " MX: " + a.error);
    }
  }

  void on_mx_records(const std::vector<MxRecord>& records) {
    // RFC 7505: a single MX whose exchange is "." (several such are no better).
    if (std::all_of(records.begin(), records.end(), [](const MxRecord& r) { return r.host.empty(); })) {
      MxResult r;
      r.status = Status::null_mx;
      r.reason = domain_ + " does not accept mail (null MX)";
      core_.finish(id_, std::move(r));
      return;
    }
    auto ordered = order_mx(records, core_.options().max_mx_hosts, [this](uint32_t b) { return core_.random(b); });
    hosts_.resize(ordered.size());
    results_.resize(ordered.size());
    remaining_ = ordered.size();
    for (size_t i = 0; i < ordered.size(); ++i) {
      hosts_[i].name = ordered[i].host;
      hosts_[i].preference = ordered[i].preference;
    }
    auto self = shared_from_this();
    for (size_t i = 0; i < ordered.size(); ++i) {
      resolve_host(core_, hosts_[i].name, [self, i](AddrResult r) {
        self->results_[i] = std::move(r);
        if (--self->remaining_ == 0) self->on_hosts_resolved();
      });
    }
  }

  // Hosts in MX order, those without addresses skipped. None left:
  // temporary if any host failed temporarily, else no_route (even when every
  // host is NXDOMAIN: the domain itself exists).
  void on_hosts_resolved() {
    MxResult r;
    std::string why;
    bool temporary = false;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      AddrResult& res = results_[i];
      if (res.status == Status::ok) {
        hosts_[i].ipv4 = std::move(res.ipv4);
        hosts_[i].ipv6 = std::move(res.ipv6);
        hosts_[i].secure = res.secure;
        r.hosts.push_back(std::move(hosts_[i]));
        continue;
      }
      temporary |= res.status == Status::temporary;
      why += (why.empty() ? "" : "; ") + res.reason;
    }
    if (r.hosts.empty()) return fail(temporary ? Status::temporary : Status::no_route,
                                     "no MX host of " + domain_ + " has an address: " + why);
    r.status = Status::ok;
    r.mx_secure = mx_secure_;
    core_.finish(id_, std::move(r));
  }

  // No MX records: the domain's own A/AAAA, as if it were an MX host of
  // preference 0 (RFC 5321 §5.1).
  void implicit_mx() {
    auto self = shared_from_this();
    resolve_host(
        core_, domain_,
        [self](AddrResult a) {
          if (a.status != Status::ok) return self->fail(a.status, std::move(a.reason));
          MxResult r;
          r.status = Status::ok;
          r.implicit_mx = true;
          r.mx_secure = self->mx_secure_;
          r.hosts.push_back(MxHost{self->domain_, 0, std::move(a.ipv4), std::move(a.ipv6), a.secure});
          self->core_.finish(self->id_, std::move(r));
        },
        "no MX, A or AAAA records");
  }

  Core& core_;
  Resolver::RequestId id_;
  std::string domain_;
  std::vector<MxHost> hosts_;
  std::vector<AddrResult> results_;
  size_t remaining_ = 0;
  bool mx_secure_ = false;  // the MX answer had the AD bit
};

// One query whose answer is the result: records -> ok (`fill` copies
// them), NXDOMAIN -> nxdomain, NODATA or a name DNS cannot carry ->
// no_route, a failure -> temporary; the reason names the query.
template <class R, class Fill>
void single_query(Core& core, Resolver::RequestId id, const std::string& name, QueryType type, Fill fill) {
  core.query(name, type, [&core, id, name, type, fill](const Answer& a) {
    R r;
    const std::string what = name + " " + to_string(type);
    switch (a.kind) {
      case Answer::Kind::records:
        r.status = Status::ok;
        fill(r, a);
        break;
      case Answer::Kind::nxdomain:
        r.status = Status::nxdomain;
        r.reason = name + ": domain does not exist (NXDOMAIN)";
        break;
      case Answer::Kind::nodata:
        r.status = Status::no_route;
        r.reason = what + ": no such record";
        break;
      case Answer::Kind::temporary:
        r.status = Status::temporary;
        r.reason = what + ": " + a.error;
        break;
      case Answer::Kind::permanent:
        r.status = Status::no_route;
        r.reason = what + ": " + a.error;
        break;
    }
    if constexpr (requires { r.secure; }) r.secure = a.authenticated;
    core.finish(id, std::move(r));
  });
}

// single_query() for a name the caller gave: a name that is not one is
// finished at once as no_route, naming it.
template <class R, class Fill>
void named_query(Core& core, Resolver::RequestId id, std::string_view name, QueryType type, Fill fill) {
  auto normal = normalize_name(name);
  if (!normal) {
    R r;
    r.status = Status::no_route;
    r.reason = "\"" + std::string(name) + "\": " + normal.error();
    core.finish(id, std::move(r));
    return;
  }
  single_query<R>(core, id, *normal, type, std::move(fill));
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------
// Resolver: the lookups

Resolver::RequestId Resolver::resolve_mx(std::string_view domain, std::function<void(MxResult)> cb) {
  if (!core_) detail::die("resolve_mx() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  auto fail = [&](std::string reason) {
    MxResult r;
    r.status = Status::no_route;
    r.reason = std::move(reason);
    core.finish(id, std::move(r));
  };
  if (auto literal = detail::parse_literal(domain)) {
    if (!*literal) {
      fail(literal->error());
    } else {
      auto addrs = detail::addr_result_of(**literal);
      MxResult r;
      r.status = Status::ok;
      r.hosts.push_back(MxHost{std::string(domain), 0, std::move(addrs.ipv4), std::move(addrs.ipv6)});
      core.finish(id, std::move(r));
    }
    return id;
  }
  auto name = detail::normalize_name(domain);
  if (!name) {
    fail("\"" + std::string(domain) + "\": " + name.error());
    return id;
  }
  std::make_shared<detail::MxLookup>(core, id, std::move(*name))->start();
  return id;
}

Resolver::RequestId Resolver::resolve_addresses(std::string_view host, std::function<void(AddrResult)> cb) {
  if (!core_) detail::die("resolve_addresses() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  auto literal = detail::parse_literal(host);
  if (!literal) {
    if (auto ip = net::IpAddress::parse(host)) literal = *ip;
  }
  if (literal) {
    if (*literal) {
      core.finish(id, detail::addr_result_of(**literal));
    } else {
      AddrResult r;
      r.status = Status::no_route;
      r.reason = literal->error();
      core.finish(id, std::move(r));
    }
    return id;
  }
  auto name = detail::normalize_name(host);
  if (!name) {
    AddrResult r;
    r.status = Status::no_route;
    r.reason = "\"" + std::string(host) + "\": " + name.error();
    core.finish(id, std::move(r));
    return id;
  }
  detail::resolve_host(core, *name, [&core, id](AddrResult r) { core.finish(id, std::move(r)); });
  return id;
}

Resolver::RequestId Resolver::resolve_txt(std::string_view name, std::function<void(TxtResult)> cb) {
  if (!core_) detail::die("resolve_txt() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  detail::named_query<TxtResult>(core, id, name, QueryType::txt,
                                 [](TxtResult& r, const Answer& a) { r.records = a.txt; });
  return id;
}

Resolver::RequestId Resolver::resolve_ptr(const net::IpAddress& address, std::function<void(PtrResult)> cb) {
  if (!core_) detail::die("resolve_ptr() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  detail::single_query<PtrResult>(core, id, net::reverse_name(address), QueryType::ptr,
                                  [](PtrResult& r, const Answer& a) { r.names = a.ptr; });
  return id;
}

Resolver::RequestId Resolver::resolve_tlsa(std::string_view name, std::function<void(TlsaResult)> cb) {
  if (!core_) detail::die("resolve_tlsa() on a closed Resolver");
  detail::Core& core = *core_;
  RequestId id = core.add_request(std::move(cb));
  detail::named_query<TlsaResult>(core, id, name, QueryType::tlsa, [](TlsaResult& r, const Answer& a) {
    r.records = a.tlsa;
    r.malformed = a.tlsa_malformed;
  });
  return id;
}

}  // namespace sluice::dns
