// lookup.cpp — see lookup.hpp. Each record's lookups write into state that
// outlives them (the blocks, and a shared PTR state for its forward
// lookups); the loop runs until the resolver has delivered every callback.
#include "mta/dnsrec/lookup.hpp"

#include <uv.h>

#include <memory>

namespace sluice::dnsrec {

namespace {

std::string without_dot(const std::string& name) {
  return name.ends_with('.') ? name.substr(0, name.size() - 1) : name;
}

// The result of a lookup as judge() takes it: records, none, or a failure.
template <class R>
Lookup lookup_of(const R& r, std::vector<std::string> values) {
  Lookup l;
  switch (r.status) {
    case dns::Status::ok:
      l.kind = Lookup::Kind::found;
      l.values = std::move(values);
      break;
    case dns::Status::temporary:
      l.kind = Lookup::Kind::failed;
      l.error = r.reason;
      break;
    default:  // nxdomain, no_route (NODATA), null_mx
      l.kind = Lookup::Kind::missing;
      l.error = r.reason;
      break;
  }
  return l;
}

std::vector<std::string> texts(const dns::AddrResult& r) {
  std::vector<std::string> out;
  for (const auto& ip : r.ipv4) out.push_back(ip.str());
  for (const auto& ip : r.ipv6) out.push_back(ip.str());
  return out;
}

void ask(dns::Resolver& resolver, Record& rec, const std::string& hostname) {
  if (rec.type == "TXT") {
    resolver.resolve_txt(without_dot(rec.name), [&rec, &hostname](dns::TxtResult r) {
      rec.verdict = judge(rec, hostname, lookup_of(r, r.records));
    });
  } else if (rec.type == "A" || rec.type == "AAAA") {
    resolver.resolve_addresses(without_dot(rec.name), [&rec, &hostname](dns::AddrResult r) {
      rec.verdict = judge(rec, hostname, lookup_of(r, texts(r)));
    });
  } else if (rec.type == "PTR") {
    resolver.resolve_ptr(*rec.address, [&resolver, &rec, &hostname](dns::PtrResult r) {
      struct State {
        Lookup names;
        std::vector<Lookup> forward;
        size_t remaining = 0;
      };
      auto st = std::make_shared<State>();
      st->names = lookup_of(r, r.names);
      st->remaining = st->names.values.size();
      st->forward.resize(st->remaining);
      if (st->remaining == 0) {
        rec.verdict = judge(rec, hostname, st->names);
        return;
      }
      for (size_t i = 0; i < st->names.values.size(); ++i) {
        resolver.resolve_addresses(st->names.values[i], [st, i, &rec, &hostname](dns::AddrResult a) {
          st->forward[i] = lookup_of(a, texts(a));
          if (--st->remaining == 0) rec.verdict = judge(rec, hostname, st->names, st->forward);
        });
      }
    });
  }
}

}  // namespace

std::expected<void, std::string> check(std::vector<Block>& blocks, const std::string& hostname,
                                       dns::Options options) {
  uv_loop_t loop;
  if (int rc = uv_loop_init(&loop); rc != 0) return std::unexpected(std::string("uv loop: ") + uv_strerror(rc));
  std::expected<void, std::string> result;
  {
    auto resolver = dns::Resolver::create(&loop, std::move(options));
    if (!resolver) {
      result = std::unexpected(resolver.error());
    } else {
      for (Block& b : blocks)
        for (Record& r : b.records) ask(**resolver, r, hostname);
      // The resolver keeps a handle active while anything is asked, and
      // callbacks may ask more (the PTR's forward lookups).
      uv_run(&loop, UV_RUN_DEFAULT);
      bool closed = false;
      (*resolver)->close([&] { closed = true; });
      while (!closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
      }
      resolver->reset();
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the handles' close callbacks
  uv_loop_close(&loop);
  return result;
}

}  // namespace sluice::dnsrec
