// lookup.hpp — `sluicectl dns-records --check`: asks DNS for every record of
// the blocks and sets each record's verdict (records.hpp judge()).
//
// Runs its own uv loop and dns::Resolver (the configured [dns] servers, or
// resolv.conf's) and returns when every lookup has finished and every
// handle is closed; blocking, for sluicectl only. TXT records through
// resolve_txt; the host's A/AAAA through resolve_addresses; each PTR through
// resolve_ptr, then resolve_addresses of every name it returns (the forward
// half of forward-confirmed reverse DNS). Fails only when the resolver
// cannot be made; lookups that fail become "lookup failed" verdicts.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include "dns/resolver.hpp"
#include "mta/dnsrec/records.hpp"

namespace sluice::dnsrec {

std::expected<void, std::string> check(std::vector<Block>& blocks, const std::string& hostname,
                                       dns::Options options);

}  // namespace sluice::dnsrec
