// answer.cpp — turning c-ares replies into Answers, reading TTLs, MX order.
//
// Pure and thread-safe. The record parsing is c-ares' own
// (ares_parse_mx_reply, ares_parse_a_reply, ares_parse_aaaa_reply); the only
// wire walking done here is reply_ttls(), which needs the TTLs c-ares does
// not return for MX records and the SOA of negative answers. Every read is
// bounds-checked; a reply that does not parse is a temporary failure.
#include "dns/answer.hpp"

#include <ares.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <unordered_set>

namespace sluice::dns {

namespace {

constexpr uint16_t kTypeSoa = 6;
// More addresses than a reply of 64 KiB could hold A records for is not
// needed; the rest of a very long answer is simply not used.
constexpr int kMaxAddresses = 64;

// A cursor over a reply; every read fails instead of running off the end.
class Reader {
 public:
  explicit Reader(std::span<const unsigned char> buf) : buf_(buf) {}

  size_t pos() const { return pos_; }
  bool skip(size_t n) {
    if (buf_.size() - pos_ < n) return false;
    pos_ += n;
    return true;
  }
  bool u16(uint16_t& v) {
    if (buf_.size() - pos_ < 2) return false;
    v = static_cast<uint16_t>(buf_[pos_] << 8 | buf_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (buf_.size() - pos_ < 4) return false;
    v = uint32_t{buf_[pos_]} << 24 | uint32_t{buf_[pos_ + 1]} << 16 | uint32_t{buf_[pos_ + 2]} << 8 |
        uint32_t{buf_[pos_ + 3]};
    pos_ += 4;
    return true;
  }
  // A domain name: labels up to a zero length or a compression pointer
  // (which ends the name in place; it need not be followed to skip it).
  bool skip_name() {
    for (;;) {
      if (pos_ >= buf_.size()) return false;
      uint8_t len = buf_[pos_];
      if ((len & 0xc0) == 0xc0) return skip(2);
      if ((len & 0xc0) != 0) return false;  // obsolete extended label types
      ++pos_;
      if (len == 0) return true;
      if (!skip(len)) return false;
    }
  }

 private:
  std::span<const unsigned char> buf_;
  size_t pos_ = 0;
};

struct Rr {
  uint16_t type = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;  // offset of the RDATA in the reply
  uint16_t rdlength = 0;
};

bool read_rr(Reader& r, Rr& rr) {
  uint16_t klass = 0;
  if (!r.skip_name() || !r.u16(rr.type) || !r.u16(klass) || !r.u32(rr.ttl) || !r.u16(rr.rdlength))
    return false;
  // RFC 2181 §8: a TTL with the top bit set is taken as zero.
  if (rr.ttl > 0x7fffffffu) rr.ttl = 0;
  rr.rdata = r.pos();
  return r.skip(rr.rdlength);
}

void keep_min(std::optional<uint32_t>& slot, uint32_t v) { slot = slot ? std::min(*slot, v) : v; }

std::string normalize_host(const char* host) {
  std::string s = host ? host : "";
  if (!s.empty() && s.back() == '.') s.pop_back();
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

Answer negative(Answer::Kind kind, const std::optional<ReplyTtls>& ttls) {
  Answer a;
  a.kind = kind;
  a.ttl = ttls ? ttls->negative.value_or(0) : 0;
  return a;
}

Answer malformed(int rc) { return temporary_answer(std::string("malformed reply: ") + ares_strerror(rc)); }

uint32_t addr_ttl(int ttl) { return ttl < 0 ? 0u : static_cast<uint32_t>(ttl); }

Answer parse_mx(std::span<const unsigned char> reply, const ReplyTtls& ttls) {
  ares_mx_reply* head = nullptr;
  int rc = ares_parse_mx_reply(reply.data(), static_cast<int>(reply.size()), &head);
  if (rc == ARES_ENODATA) return negative(Answer::Kind::nodata, ttls);
  if (rc != ARES_SUCCESS) return malformed(rc);
  Answer a;
  a.kind = Answer::Kind::records;
  for (ares_mx_reply* p = head; p; p = p->next) a.mx.push_back({normalize_host(p->host), p->priority});
  ares_free_data(head);
  // Only CNAMEs in the answer (to a name without MX): the same as NODATA.
  if (a.mx.empty()) return negative(Answer::Kind::nodata, ttls);
  a.ttl = ttls.answer.value_or(0);
  return a;
}

// A and AAAA answers differ only in the c-ares parser and record type.
template <typename Rec>
Answer parse_addresses(std::span<const unsigned char> reply, const ReplyTtls& ttls,
                       int (*parse)(const unsigned char*, int, hostent**, Rec*, int*)) {
  Rec found[kMaxAddresses];
  int n = kMaxAddresses;
  int rc = parse(reply.data(), static_cast<int>(reply.size()), nullptr, found, &n);
  if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && n <= 0)) return negative(Answer::Kind::nodata, ttls);
  if (rc != ARES_SUCCESS) return malformed(rc);
  Answer a;
  a.kind = Answer::Kind::records;
  a.ttl = std::numeric_limits<uint32_t>::max();
  for (int i = 0; i < n; ++i) {
    net::IpAddress ip;
    if constexpr (std::is_same_v<Rec, ares_addrttl>) {
      ip.family = net::IpAddress::Family::v4;
      std::memcpy(ip.bytes.data(), &found[i].ipaddr, 4);
    } else {
      ip.family = net::IpAddress::Family::v6;
      std::memcpy(ip.bytes.data(), &found[i].ip6addr, 16);
    }
    a.addresses.push_back(ip);
    a.ttl = std::min(a.ttl, addr_ttl(found[i].ttl));
  }
  return a;
}

}  // namespace

const char* to_string(QueryType t) {
  switch (t) {
    case QueryType::a: return "A";
    case QueryType::mx: return "MX";
    case QueryType::aaaa: return "AAAA";
  }
  return "?";
}

Answer temporary_answer(std::string error) {
  Answer a;
  a.kind = Answer::Kind::temporary;
  a.error = std::move(error);
  return a;
}

std::optional<ReplyTtls> reply_ttls(std::span<const unsigned char> reply) {
  Reader r(reply);
  uint16_t id = 0, flags = 0, qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
  if (!r.u16(id) || !r.u16(flags) || !r.u16(qdcount) || !r.u16(ancount) || !r.u16(nscount) ||
      !r.u16(arcount))
    return std::nullopt;
  for (unsigned i = 0; i < qdcount; ++i)
    if (!r.skip_name() || !r.skip(4)) return std::nullopt;
  ReplyTtls out;
  Rr rr;
  for (unsigned i = 0; i < ancount; ++i) {
    if (!read_rr(r, rr)) return std::nullopt;
    keep_min(out.answer, rr.ttl);
  }
  for (unsigned i = 0; i < nscount; ++i) {
    if (!read_rr(r, rr)) return std::nullopt;
    // SOA RDATA: MNAME, RNAME, then five 32-bit numbers, MINIMUM last.
    if (rr.type != kTypeSoa || rr.rdlength < 22) continue;
    Reader min(reply.subspan(rr.rdata + rr.rdlength - 4, 4));
    uint32_t minimum = 0;
    if (!min.u32(minimum)) return std::nullopt;
    if (minimum > 0x7fffffffu) minimum = 0;
    keep_min(out.negative, std::min(rr.ttl, minimum));
  }
  return out;
}

Answer interpret_reply(QueryType type, int status, std::span<const unsigned char> reply) {
  std::optional<ReplyTtls> ttls;
  if (!reply.empty()) ttls = reply_ttls(reply);
  switch (status) {
    case ARES_SUCCESS: break;
    case ARES_ENODATA: return negative(Answer::Kind::nodata, ttls);
    case ARES_ENOTFOUND: return negative(Answer::Kind::nxdomain, ttls);
    case ARES_ESERVFAIL: return temporary_answer("server failure (SERVFAIL)");
    case ARES_EREFUSED: return temporary_answer("query refused (REFUSED)");
    case ARES_ENOTIMP: return temporary_answer("not implemented by the server (NOTIMP)");
    case ARES_EFORMERR: return temporary_answer("format error (FORMERR)");
    case ARES_ETIMEOUT: return temporary_answer("timed out");
    case ARES_ECONNREFUSED:
      // c-ares 1.18 also says this when every server answered SERVFAIL or REFUSED.
      return temporary_answer("no usable answer from any DNS server (unreachable, SERVFAIL or REFUSED)");
    case ARES_EBADRESP: return temporary_answer("malformed reply");
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION: return temporary_answer("cancelled");
    case ARES_EBADNAME: {
      Answer a;
      a.kind = Answer::Kind::permanent;
      a.error = "not a valid domain name";
      return a;
    }
    default: return temporary_answer(ares_strerror(status));
  }
  if (!ttls) return temporary_answer("malformed reply");
  switch (type) {
    case QueryType::mx: return parse_mx(reply, *ttls);
    case QueryType::a: return parse_addresses<ares_addrttl>(reply, *ttls, ares_parse_a_reply);
    case QueryType::aaaa:
      return parse_addresses<ares_addr6ttl>(reply, *ttls, ares_parse_aaaa_reply);
  }
  return temporary_answer("unexpected query type");
}

std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::size_t cap,
                               const std::function<uint32_t(uint32_t)>& random) {
  std::erase_if(records, [](const MxRecord& r) { return r.host.empty(); });
  std::sort(records.begin(), records.end(), [](const MxRecord& x, const MxRecord& y) {
    return x.preference != y.preference ? x.preference < y.preference : x.host < y.host;
  });
  std::unordered_set<std::string> seen;
  std::erase_if(records, [&](const MxRecord& r) { return !seen.insert(r.host).second; });
  // Fisher-Yates within each run of equal preference.
  for (size_t begin = 0; begin < records.size();) {
    size_t end = begin + 1;
    while (end < records.size() && records[end].preference == records[begin].preference) ++end;
    for (size_t i = end - 1; i > begin; --i) {
      auto bound = static_cast<uint32_t>(i - begin + 1);
      size_t j = begin + random(bound) % bound;
      std::swap(records[i], records[j]);
    }
    begin = end;
  }
  if (records.size() > cap) records.resize(cap);
  return records;
}

}  // namespace sluice::dns
