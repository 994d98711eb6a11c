// submit.cpp — see submit.hpp. Pure.
#include "mta/sendmail/submit.hpp"

#include <sysexits.h>

#include <fmt/format.h>

#include <unordered_set>

#include "mta/sendmail/addresses.hpp"

namespace sluice::sendmail {

namespace {

constexpr size_t kErrorsShown = 5;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Recipients in order, without duplicates, at most kMaxRecipients + 1 kept.
class Recipients {
 public:
  void add(Mailbox m) {
    if (list_.size() > kMaxRecipients) return;
    if (keys_.insert(address_key(m)).second) list_.push_back(std::move(m));
  }
  const std::vector<Mailbox>& list() const { return list_; }

 private:
  std::vector<Mailbox> list_;
  std::unordered_set<std::string> keys_;
};

// Gives a domain-less mailbox "@hostname"; false (with why) when the result
// is no valid address.
bool qualify(Mailbox& m, const Context& c, std::string& why) {
  if (m.domain.empty()) m.domain = c.stamp.hostname;
  if (!valid_address(m.address())) {
    why = fmt::format("{}: not a valid address", m.address().substr(0, 80));
    return false;
  }
  return true;
}

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (size_t i = 0; i < errors.size() && i < kErrorsShown; ++i) {
    if (i > 0) out += "; ";
    out += errors[i];
  }
  if (errors.size() > kErrorsShown) out += fmt::format("; and {} more", errors.size() - kErrorsShown);
  return out;
}

void add_arguments(const Options& o, const Context& c, Recipients& out,
                   std::vector<std::string>& errors) {
  for (const std::string& arg : o.recipients) {
    AddressList list = parse_address_list(arg);
    errors.insert(errors.end(), list.errors.begin(), list.errors.end());
    for (Mailbox& m : list.mailboxes) {
      std::string why;
      if (qualify(m, c, why)) {
        out.add(std::move(m));
      } else {
        errors.push_back(std::move(why));
      }
    }
  }
}

// [aliases]: each local recipient replaced by its entry's addresses, in
// order, duplicates dropped; a local name without an entry is an error.
std::expected<std::vector<Mailbox>, Failure> expand_aliases(const std::vector<Mailbox>& in,
                                                            const Context& c) {
  if (c.aliases == nullptr) return in;
  Recipients out;
  std::vector<std::string> unknown;
  for (const Mailbox& m : in) {
    auto r = aliases::resolve(*c.aliases, c.stamp.hostname, m.address());
    switch (r.kind) {
      case aliases::Resolution::Kind::not_local:
        out.add(m);
        break;
      case aliases::Resolution::Kind::unknown:
        unknown.push_back(m.address().substr(0, 80));
        break;
      case aliases::Resolution::Kind::alias:
        for (const std::string& t : *r.targets) {
          AddressList list = parse_address_list(t);  // checked at configuration load
          for (Mailbox& target : list.mailboxes) out.add(std::move(target));
        }
        break;
    }
  }
  if (!unknown.empty())
    return std::unexpected(Failure{
        EX_NOUSER, fmt::format("no such local user{}: {} (mail to this host goes only to the "
                               "names in the configuration's [aliases])",
                               unknown.size() == 1 ? "" : "s", joined(unknown))});
  return out.list();
}

// The From field added to a message without one: the sender, or the user's
// LOGIN@hostname for the null sender.
std::string header_from(const std::string& sender, const Context& c) {
  if (!sender.empty()) return sender;
  const std::string local = canonical_local_part(c.login);
  return (local.empty() ? std::string("postmaster") : local) + "@" + c.stamp.hostname;
}

std::expected<std::string, Failure> finish_message(Message& msg, const std::string& sender,
                                                   std::string_view full_name, const Context& c) {
  if (const size_t hops = msg.count("Received"); hops > c.max_hops)
    return std::unexpected(Failure{
        EX_DATAERR, fmt::format("the message has {} Received header fields, more than "
                                "limits.max_hops ({}): a mail loop?", hops, c.max_hops)});
  if (c.add_missing_headers) add_missing_headers(msg, c.stamp, header_from(sender, c), full_name);
  std::string message = assemble(msg);
  if (message.size() > c.max_message_size)
    return std::unexpected(Failure{
        EX_DATAERR, fmt::format("the message is {} octets, more than limits.max_message_size ({})",
                                message.size(), c.max_message_size)});
  return message;
}

Failure invalid(const std::vector<std::string>& errors) {
  return {EX_DATAERR, fmt::format("invalid recipient address{}: {}",
                                  errors.size() == 1 ? "" : "es", joined(errors))};
}

}  // namespace

std::expected<std::string, Failure> envelope_sender(const Options& o, const Context& c) {
  if (!o.sender) {
    const std::string local = canonical_local_part(c.login);
    const std::string address = local + "@" + c.stamp.hostname;
    if (local.empty() || !valid_address(address))
      return std::unexpected(Failure{
          EX_USAGE, fmt::format("the login name \"{}\" makes no valid sender address; give one "
                                "with -f",
                                c.login.substr(0, 80))});
    return address;
  }
  const std::string_view v = trim(*o.sender);
  if (v.empty() || v == "<>") return std::string();
  AddressList list = parse_address_list(v);
  std::string why;
  if (!list.errors.empty()) {
    why = list.errors.front();
  } else if (list.mailboxes.size() != 1) {
    why = "one address expected";
  } else if (qualify(list.mailboxes.front(), c, why)) {
    return list.mailboxes.front().address();
  }
  return std::unexpected(Failure{EX_USAGE, fmt::format("-f: invalid sender address: {}", why)});
}

std::expected<std::vector<Mailbox>, Failure> argument_recipients(const Options& o,
                                                                 const Context& c) {
  Recipients r;
  std::vector<std::string> errors;
  add_arguments(o, c, r, errors);
  if (!errors.empty()) return std::unexpected(invalid(errors));
  return r.list();
}

std::expected<Maildrop, Failure> build_maildrop(const Options& o, std::string_view content,
                                                const Context& c) {
  auto sender = envelope_sender(o, c);
  if (!sender) return std::unexpected(sender.error());
  if (o.full_name && o.full_name->size() > kMaxFullName)
    return std::unexpected(
        Failure{EX_USAGE, fmt::format("-F: the full name is longer than {} octets", kMaxFullName)});

  Recipients rcpts;
  std::vector<std::string> errors;
  add_arguments(o, c, rcpts, errors);

  Message msg = split(content);
  bool resent = false;
  if (o.extract_recipients) {
    Extracted ex = extract_recipients(msg);
    resent = ex.resent;
    errors.insert(errors.end(), ex.errors.begin(), ex.errors.end());
    for (Mailbox& m : ex.recipients) {
      std::string why;
      if (qualify(m, c, why)) {
        rcpts.add(std::move(m));
      } else {
        errors.push_back(std::move(why));
      }
    }
  }
  if (!errors.empty()) return std::unexpected(invalid(errors));
  if (rcpts.list().empty()) {
    if (!o.extract_recipients)
      return std::unexpected(Failure{EX_USAGE, "no recipients: give them as arguments, or use -t"});
    return std::unexpected(Failure{
        EX_USAGE, resent ? "no recipients: none as arguments and none in Resent-To, Resent-Cc "
                           "or Resent-Bcc"
                         : "no recipients: none as arguments and none in To, Cc or Bcc"});
  }
  if (rcpts.list().size() > kMaxRecipients)
    return std::unexpected(
        Failure{EX_DATAERR, fmt::format("too many recipients (at most {})", kMaxRecipients)});

  auto expanded = expand_aliases(rcpts.list(), c);
  if (!expanded) return std::unexpected(expanded.error());
  if (expanded->size() > kMaxRecipients)
    return std::unexpected(
        Failure{EX_DATAERR, fmt::format("too many recipients (at most {})", kMaxRecipients)});

  auto message = finish_message(msg, *sender, o.full_name.value_or(""), c);
  if (!message) return std::unexpected(message.error());

  Maildrop m;
  m.sender = std::move(*sender);
  m.recipients.reserve(expanded->size());
  for (const Mailbox& mb : *expanded) m.recipients.push_back(mb.address());
  m.message = std::move(*message);
  return m;
}

std::expected<Maildrop, Failure> smtp_maildrop(const std::string& sender,
                                               const std::vector<std::string>& recipients,
                                               std::string_view content, const Context& c) {
  Maildrop m;
  std::unordered_set<std::string> seen;
  for (const std::string& r : recipients) {
    // same_address(): local parts exact, domains without case.
    const size_t at = r.rfind('@');
    std::string key = r;
    if (at != std::string::npos)
      for (size_t i = at; i < key.size(); ++i)
        if (key[i] >= 'A' && key[i] <= 'Z') key[i] = static_cast<char>(key[i] - 'A' + 'a');
    if (seen.insert(std::move(key)).second) m.recipients.push_back(r);
  }
  if (m.recipients.size() > kMaxRecipients)
    return std::unexpected(
        Failure{EX_DATAERR, fmt::format("too many recipients (at most {})", kMaxRecipients)});
  Message msg = split(content);
  auto message = finish_message(msg, sender, "", c);
  if (!message) return std::unexpected(message.error());
  m.sender = sender;
  m.message = std::move(*message);
  return m;
}

}  // namespace sluice::sendmail
