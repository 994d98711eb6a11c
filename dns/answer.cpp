// answer.cpp — turning c-ares replies into Answers, reading TTLs, MX order.
//
// Pure and thread-safe. The record parsing is c-ares' own
// (ares_parse_mx_reply, ares_parse_a_reply, ares_parse_aaaa_reply,
// ares_parse_txt_reply_ext, ares_parse_ptr_reply). The wire walking done
// here: reply_ttls(), which needs the TTLs c-ares does not return for MX
// records and the SOA of negative answers; the header (RCODE, AD bit); and
// TLSA, which c-ares 1.18 has no parser for. Every read is
// bounds-checked; a reply that does not parse is a temporary failure.
#include "dns/answer.hpp"

#include <ares.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <unordered_set>

namespace sluice::dns {

namespace {

constexpr uint16_t kTypeSoa = 6;
constexpr uint16_t kTypeTlsa = 52;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kFlagAd = 0x0020;  // in the header's second 16-bit word
// Like kMaxAddresses: a bound on what is kept, not on what is read.
constexpr size_t kMaxTlsa = 64;
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
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;  // offset of the RDATA in the reply
  uint16_t rdlength = 0;
};

bool read_rr(Reader& r, Rr& rr) {
  if (!r.skip_name() || !r.u16(rr.type) || !r.u16(rr.klass) || !r.u32(rr.ttl) || !r.u16(rr.rdlength))
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

// TXT: each record's character-strings joined into one (SPF, DKIM, DMARC
// and TLS-RPT all read a record that way).
Answer parse_txt(std::span<const unsigned char> reply, const ReplyTtls& ttls) {
  ares_txt_ext* head = nullptr;
  int rc = ares_parse_txt_reply_ext(reply.data(), static_cast<int>(reply.size()), &head);
  if (rc == ARES_ENODATA) return negative(Answer::Kind::nodata, ttls);
  if (rc != ARES_SUCCESS) return malformed(rc);
  Answer a;
  a.kind = Answer::Kind::records;
  for (ares_txt_ext* p = head; p; p = p->next) {
    if (p->record_start || a.txt.empty()) a.txt.emplace_back();
    if (p->txt) a.txt.back().append(reinterpret_cast<const char*>(p->txt), p->length);
  }
  ares_free_data(head);
  if (a.txt.empty()) return negative(Answer::Kind::nodata, ttls);  // only CNAMEs
  a.ttl = ttls.answer.value_or(0);
  return a;
}

// PTR: c-ares lists every PTR name of the answer (CNAMEs followed) as an
// alias; the address it asks for is only copied into the hostent.
Answer parse_ptr(std::span<const unsigned char> reply, const ReplyTtls& ttls) {
  hostent* host = nullptr;
  const unsigned char unused[4] = {};
  int rc = ares_parse_ptr_reply(reply.data(), static_cast<int>(reply.size()), unused, sizeof unused,
                                AF_INET, &host);
  if (rc == ARES_ENODATA) return negative(Answer::Kind::nodata, ttls);
  if (rc != ARES_SUCCESS) return malformed(rc);
  Answer a;
  a.kind = Answer::Kind::records;
  for (char** alias = host->h_aliases; alias && *alias; ++alias) a.ptr.push_back(normalize_host(*alias));
  if (a.ptr.empty() && host->h_name) a.ptr.push_back(normalize_host(host->h_name));
  ares_free_hostent(host);
  std::erase(a.ptr, std::string());
  if (a.ptr.empty()) return negative(Answer::Kind::nodata, ttls);
  a.ttl = ttls.answer.value_or(0);
  return a;
}

// The header of a reply: its flags word and section counts.
struct Header {
  uint16_t flags = 0, qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
};

bool read_header(Reader& r, Header& h) {
  uint16_t id = 0;
  return r.u16(id) && r.u16(h.flags) && r.u16(h.qdcount) && r.u16(h.ancount) && r.u16(h.nscount) &&
         r.u16(h.arcount);
}

// An ARES_SUCCESS completion of ares_send() carries whatever RCODE the
// server gave: map it the way ares_query() does. nullopt: the header does
// not parse.
std::optional<int> status_of_reply(std::span<const unsigned char> reply) {
  Reader r(reply);
  Header h;
  if (!read_header(r, h)) return std::nullopt;
  switch (h.flags & 0x000f) {
    case 0: return h.ancount == 0 ? ARES_ENODATA : ARES_SUCCESS;
    case 1: return ARES_EFORMERR;
    case 2: return ARES_ESERVFAIL;
    case 3: return ARES_ENOTFOUND;
    case 4: return ARES_ENOTIMP;
    case 5: return ARES_EREFUSED;
    default: return ARES_EBADRESP;
  }
}

// TLSA: every TLSA record of class IN in the answer section (CNAMEs are the
// server's to follow; their targets' records are in the same section).
Answer parse_tlsa(std::span<const unsigned char> reply, const ReplyTtls& ttls) {
  Reader r(reply);
  Header h;
  if (!read_header(r, h)) return malformed(ARES_EBADRESP);
  for (unsigned i = 0; i < h.qdcount; ++i)
    if (!r.skip_name() || !r.skip(4)) return malformed(ARES_EBADRESP);
  Answer a;
  for (unsigned i = 0; i < h.ancount; ++i) {
    Rr rr;
    if (!read_rr(r, rr)) return malformed(ARES_EBADRESP);
    if (rr.type != kTypeTlsa || rr.klass != kClassIn) continue;
    if (a.tlsa.size() + a.tlsa_malformed >= kMaxTlsa) continue;
    if (auto rec = parse_tlsa_rdata(reply.subspan(rr.rdata, rr.rdlength)))
      a.tlsa.push_back(std::move(*rec));
    else
      ++a.tlsa_malformed;
  }
  if (a.tlsa.empty() && a.tlsa_malformed == 0) return negative(Answer::Kind::nodata, ttls);  // only CNAMEs
  a.kind = Answer::Kind::records;
  a.ttl = ttls.answer.value_or(0);
  return a;
}

bool authenticated(std::span<const unsigned char> reply) {
  Reader r(reply);
  Header h;
  return read_header(r, h) && (h.flags & kFlagAd) != 0;
}

}  // namespace

std::optional<TlsaRecord> parse_tlsa_rdata(std::span<const unsigned char> rdata) {
  if (rdata.size() < 4) return std::nullopt;
  TlsaRecord t;
  t.usage = rdata[0];
  t.selector = rdata[1];
  t.matching_type = rdata[2];
  t.data.assign(rdata.begin() + 3, rdata.end());
  return t;
}

bool requests_ad(QueryType t) { return t == QueryType::tlsa; }

const char* to_string(QueryType t) {
  switch (t) {
    case QueryType::a: return "A";
    case QueryType::mx: return "MX";
    case QueryType::aaaa: return "AAAA";
    case QueryType::txt: return "TXT";
    case QueryType::ptr: return "PTR";
    case QueryType::tlsa: return "TLSA";
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
  Header h;
  if (!read_header(r, h)) return std::nullopt;
  for (unsigned i = 0; i < h.qdcount; ++i)
    if (!r.skip_name() || !r.skip(4)) return std::nullopt;
  ReplyTtls out;
  Rr rr;
  for (unsigned i = 0; i < h.ancount; ++i) {
    if (!read_rr(r, rr)) return std::nullopt;
    keep_min(out.answer, rr.ttl);
  }
  for (unsigned i = 0; i < h.nscount; ++i) {
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

namespace {

Answer interpret_status(QueryType type, int status, std::span<const unsigned char> reply) {
  std::optional<ReplyTtls> ttls;
  if (!reply.empty()) ttls = reply_ttls(reply);
  if (status == ARES_SUCCESS && !reply.empty()) status = status_of_reply(reply).value_or(ARES_EBADRESP);
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
    case QueryType::txt: return parse_txt(reply, *ttls);
    case QueryType::ptr: return parse_ptr(reply, *ttls);
    case QueryType::tlsa: return parse_tlsa(reply, *ttls);
  }
  return temporary_answer("unexpected query type");
}

}  // namespace

Answer interpret_reply(QueryType type, int status, std::span<const unsigned char> reply) {
  Answer a = interpret_status(type, status, reply);
  if (a.cacheable()) a.authenticated = authenticated(reply);
  return a;
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
