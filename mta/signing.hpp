// signing.hpp — DKIM signing in the daemon (SPEC "Signing: DKIM"): the keys
// of the [[dkim]] tables, loaded under the key-file rules, and the decision
// and signatures for one message. The intake (mta/intake.hpp) owns the
// when: it feeds each message's content to a dkim::Scan while it streams
// into the spool and, before the commit, asks plan() which tables sign it
// and sign() for the fields, which it prepends (a HEAD record, so retries
// never sign again). The how is dkim/ (pure).
//
// Which tables sign: those of the longest [[dkim]] domain that is the
// author's domain (dkim::author: the one From mailbox) or a parent of it —
// mail from news.example.com is signed by example.com's tables, d=
// example.com, unless news.example.com has its own. Not signed: no single
// From mailbox; an authenticated login whose From address it may not use as
// a sender (auth::may_send_as, the MAIL FROM rule); a table whose own
// signature (same d= and s=) the message already carries and which
// verifies; a header section over dkim::kMaxHeaderSection.
//
// Keys: a key file must be a regular file, not a link, owned by root or the
// daemon's account, not readable or writable by other accounts, and
// readable by group only when the group is the daemon's (so
// root:sluice 0640, as `sluicectl dkim keygen` writes it). A Signing is
// immutable once loaded and shared between the loop and the thread pool;
// a reload builds a new one (all keys or none).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "dkim/dkim.hpp"
#include "dkim/message.hpp"

namespace sluice::mta {

class Signing {
 public:
  struct Signer {
    conf::Dkim table;
    dkim::Key key;
    std::vector<std::string_view> names;  // the h= candidates (into table.headers or the defaults)
  };
  // The account that may read key files besides root.
  struct Reader {
    uid_t uid = 0;
    gid_t gid = 0;
  };

  // Every table's key, or one problem per bad table, each naming the table
  // and the file ("[[dkim]] 2 (example.com, selector s2026e): /etc/...: ...").
  static std::expected<std::shared_ptr<const Signing>, std::vector<std::string>> load(
      const std::vector<conf::Dkim>& tables, Reader reader);

  bool empty() const { return signers_.empty(); }
  const std::vector<Signer>& signers() const { return signers_; }
  // The tables that sign mail from `domain` (see above); empty: none.
  std::vector<const Signer*> for_domain(std::string_view domain) const;

  // A Signing from keys already in memory (tests).
  explicit Signing(std::vector<Signer> signers);

 private:
  std::vector<Signer> signers_;
};

// Whether an authenticated login may use an address as its sender; empty
// for sources without a login (relay, the maildrop).
using FromRule = std::function<bool(std::string_view address)>;

// What plan() decided for one message.
struct SignPlan {
  std::shared_ptr<const Signing> signing;  // keeps the signers alive
  std::vector<const Signing::Signer*> signers;  // empty: not signed
  std::string author;  // the From address
  std::string why_not;  // when not signed for a reason worth a log line
};

// Cheap (no signature made): which tables would sign the scanned message.
// Call after the last Scan::feed.
SignPlan plan(std::shared_ptr<const Signing> signing, dkim::Scan& scan, const FromRule& rule);

// The DKIM-Signature fields for `plan` (in table order, each with its
// CRLF), skipping a table whose valid signature the message already has;
// `now_s` is t=. Costly for RSA: the intake runs it off the loop. Errors
// (a key that cannot sign) are returned per table in `failures`.
struct Signatures {
  std::string fields;
  std::vector<std::string> signed_by;  // "d=example.com s=s2026a a=rsa-sha256"
  std::vector<std::string> already;    // tables whose signature was there and valid
  std::vector<std::string> failures;
};
Signatures sign(const SignPlan& plan, dkim::Scan& scan, int64_t now_s);

}  // namespace sluice::mta
