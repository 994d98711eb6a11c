// commands.hpp — sluicectl's two commands that need no running daemon
// (docs/control.md, "Keys and DNS records"):
//   keygen       a new DKIM key in a new file, and what to publish and paste;
//   dns_records  the records to publish for each sending domain, and with
//                --check whether DNS publishes them.
// They read the configuration themselves (keygen only for `user`) and write
// to `out` (results) and `err` (problems). Exit codes: 0 done (and with
// --check, every record right); 1 --check found a record not right; 2 bad
// command line (also: no sending domain); 3 the configuration, a key, the
// key file or DNS set-up failed.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace sluice::dnsrec {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotRight = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitFailed = 3;

struct KeygenArgs {
  std::string config_path;  // conf::config_path() of --config
  std::string domain;
  std::string selector;
  std::string type = "rsa";  // "rsa" or "ed25519"
  int bits = 2048;           // RSA only
  std::string out;           // "": /etc/sluice/dkim/DOMAIN.SELECTOR.key
};
int keygen(const KeygenArgs& args, std::ostream& out, std::ostream& err);

struct DnsRecordsArgs {
  std::string config_path;
  std::vector<std::string> domains;  // --domain; none: the [[dkim]] domains
  std::vector<std::string> ips;      // --ip; none: the machine's global addresses
  bool check = false;
  bool json = false;
};
int dns_records(const DnsRecordsArgs& args, std::ostream& out, std::ostream& err);

}  // namespace sluice::dnsrec
