// smtp_commands.cpp — the server session's commands: one table of rows
// {verb, states in which it is allowed, check, refusal, handler}, and one
// table of ESMTP extensions. Pure, like the rest of Session (see
// smtp_session.hpp).
//
// Dispatch (Commands::dispatch) for a parsed command line:
//   1. no row for the verb (EXPN, BDAT until CHUNKING registers it):
//      502 5.5.1 "Error: command not implemented";
//   2. the row's check, if any: is the command usable on this connection at
//      all (STARTTLS without a certificate, AUTH without a users file)? Its
//      reply comes before any state error;
//   3. the state is not in the row's set: the row's refusal, a function of
//      the state ("send HELO/EHLO first", "nested MAIL command", ...);
//   4. the row's handler.
// Refusals and check failures go through Session::error(), so they count
// towards max_errors and are reported to SessionHost::rejected() under the
// verb's name. Commands only arrive in connected, ready, mail and rcpt: the
// other states are DATA content, SASL lines, a pending commit, password
// check or shaping store answer (mail_limit, auth_limit), a TLS handshake,
// or the end.
//
// An extension row holds everything of one ESMTP extension: its EHLO
// keyword (or none while it is not offered on this connection), its MAIL
// and RCPT parameters, and the verbs it adds. The EHLO reply lists the
// offered keywords in the order of kExtensions. A MAIL or RCPT parameter
// that no extension registers gets "555 5.5.4 Error: unsupported parameter".
// Adding an extension (DSN, CHUNKING) is one row there plus its handlers
// here, as REQUIRETLS (RFC 8689) is: offered only inside TLS, and its MAIL
// parameter outside TLS gets "530 5.7.10" (RFC 3207's "issue STARTTLS first"
// code with RFC 5248's "Encryption Needed" status), with a value "501 5.5.4". Broken invariants of the table (a verb registered twice)
// abort at the first command.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <span>

#include "mta/smtp_session.hpp"

namespace sluice::mta {

using proto::Reply;
using proto::Verb;
using State = Session::State;

namespace {

using StateSet = uint32_t;
constexpr StateSet bit(State s) { return StateSet{1} << static_cast<unsigned>(s); }
// Every state in which a command line is read.
constexpr StateSet kCommandStates =
    bit(State::connected) | bit(State::ready) | bit(State::mail) | bit(State::rcpt);

bool all_digits(std::string_view s) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

const Reply kNotImplemented{502, "5.5.1", "Error: command not implemented"};
const Reply kOk{250, "2.0.0", "Ok"};

// What a MAIL or RCPT parameter's handler may change.
struct ParamContext {
  const SessionConfig& cfg;
  queue::Envelope& env;            // MAIL: the new envelope; RCPT: the transaction's
  queue::Recipient* rcpt;          // RCPT: the recipient being added; MAIL: null
  bool in_tls = false;             // the session is protected by TLS
  uint64_t declared_size = 0;      // MAIL SIZE=
};

}  // namespace

struct Session::Commands {
  struct Row {
    Verb verb;
    StateSet states;                                  // where the handler may run
    std::optional<Reply> (*check)(const Session&);    // before the state; may be null
    Reply (*refuse)(const Session&);                  // state not in `states`; null if never
    void (*proceed)(Session&, const proto::Command&);
  };
  struct Param {
    std::string_view keyword;                         // upper case
    std::optional<Reply> (*apply)(ParamContext&, const proto::Param&);  // a reply refuses
  };
  struct Extension {
    std::string_view name;
    std::string (*keyword)(const Session&);           // EHLO line; "" when not offered now
    std::span<const Param> mail_params;
    std::span<const Param> rcpt_params;
    std::span<const Row> commands;                    // verbs the extension adds
  };

  static const Row kBase[];
  static const Extension kExtensions[];
  static const Param kSizeParams[], kBodyParams[], kUtf8Params[], kRequireTlsParams[];
  static const Row kStarttlsRows[], kAuthRows[];

  static constexpr size_t kMaxVerbs = 32;
  static const std::array<const Row*, kMaxVerbs>& rows();
  static const Row* find(Verb v);
  static const Param* find_param(std::span<const Param> Extension::*which, std::string_view kw);
  static void dispatch(Session& s, const proto::Command& c);

  // Base commands (RFC 5321).
  static void ehlo(Session& s, const proto::Command& c) { hello(s, c, true); }
  static void helo(Session& s, const proto::Command& c) { hello(s, c, false); }
  static void hello(Session& s, const proto::Command& c, bool extended);
  static Reply mail_refused(const Session& s);
  static void mail(Session& s, const proto::Command& c);
  static Reply rcpt_refused(const Session&) { return {503, "5.5.1", "Error: need MAIL command"}; }
  static void rcpt(Session& s, const proto::Command& c);
  static std::vector<queue::Recipient> alias_recipients(const Session& s,
                                                        const proto::Mailbox& path,
                                                        const queue::Recipient& rcpt,
                                                        const std::vector<std::string>& targets);
  static Reply data_refused(const Session& s);
  static void data(Session& s, const proto::Command& c);
  static void rset(Session& s, const proto::Command&) {
    s.reset_transaction();
    s.reply(kOk);
  }
  static void noop(Session& s, const proto::Command&) { s.reply(kOk); }
  static void quit(Session& s, const proto::Command& c);
  static void vrfy(Session& s, const proto::Command&) {
    s.reply(Reply{252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"});
  }
  static void help(Session& s, const proto::Command&) {
    s.reply(Reply{214, "2.0.0",
                  "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP; see RFC 5321"});
  }

  // STARTTLS (RFC 3207).
  static std::string starttls_keyword(const Session& s) {
    return s.cfg_.tls_offered && !s.in_tls_ ? "STARTTLS" : "";
  }
  static std::optional<Reply> starttls_check(const Session& s);
  static Reply starttls_refused(const Session&) {
    return {503, "5.5.1", "Error: STARTTLS not allowed during a mail transaction"};
  }
  static void starttls(Session& s, const proto::Command& c);

  // AUTH (RFC 4954).
  static std::string auth_keyword(const Session& s) {
    return s.auth_allowed() && s.auth_login_.empty() ? fmt::format("AUTH {}", auth::kMechanisms)
                                                     : "";
  }
  static std::optional<Reply> auth_check(const Session& s);
  static std::optional<Reply> auth_not_now(const Session& s);
  static Reply auth_refused(const Session& s);
  static void auth(Session& s, const proto::Command& c);

  // Keywords and parameters of the other extensions.
  static std::string size_keyword(const Session& s) {
    return fmt::format("SIZE {}", s.cfg_.max_message_size);
  }
  static std::optional<Reply> size_param(ParamContext& ctx, const proto::Param& p);
  static std::optional<Reply> body_param(ParamContext& ctx, const proto::Param& p);
  static std::optional<Reply> smtputf8_param(ParamContext& ctx, const proto::Param& p);

  // REQUIRETLS (RFC 8689): only inside TLS.
  static std::string requiretls_keyword(const Session& s) {
    return s.in_tls_ ? "REQUIRETLS" : "";
  }
  static std::optional<Reply> requiretls_param(ParamContext& ctx, const proto::Param& p);
};

// The base commands: verb, states, check, refusal, handler. EXPN and BDAT
// have no row: "502 5.5.1 Error: command not implemented".
const Session::Commands::Row Session::Commands::kBase[] = {
    {Verb::ehlo, kCommandStates, nullptr, nullptr, &ehlo},
    {Verb::helo, kCommandStates, nullptr, nullptr, &helo},
    {Verb::mail, bit(State::ready), nullptr, &mail_refused, &mail},
    {Verb::rcpt, bit(State::mail) | bit(State::rcpt), nullptr, &rcpt_refused, &rcpt},
    {Verb::data, bit(State::rcpt), nullptr, &data_refused, &data},
    {Verb::rset, kCommandStates, nullptr, nullptr, &rset},
    {Verb::noop, kCommandStates, nullptr, nullptr, &noop},
    {Verb::quit, kCommandStates, nullptr, nullptr, &quit},
    {Verb::vrfy, kCommandStates, nullptr, nullptr, &vrfy},
    {Verb::help, kCommandStates, nullptr, nullptr, &help},
};

// The ESMTP extensions, in EHLO order: name, EHLO keyword, MAIL parameters,
// RCPT parameters, verbs. Adding one is a row here, its handlers declared
// in Session::Commands above and defined below.
const Session::Commands::Param Session::Commands::kSizeParams[] = {{"SIZE", &size_param}};
const Session::Commands::Param Session::Commands::kBodyParams[] = {{"BODY", &body_param}};
const Session::Commands::Param Session::Commands::kUtf8Params[] = {{"SMTPUTF8", &smtputf8_param}};
const Session::Commands::Param Session::Commands::kRequireTlsParams[] = {
    {"REQUIRETLS", &requiretls_param}};
const Session::Commands::Row Session::Commands::kStarttlsRows[] = {
    {Verb::starttls, bit(State::connected) | bit(State::ready), &starttls_check,
     &starttls_refused, &starttls}};
const Session::Commands::Row Session::Commands::kAuthRows[] = {
    {Verb::auth, bit(State::ready), &auth_check, &auth_refused, &auth}};

const Session::Commands::Extension Session::Commands::kExtensions[] = {
    {"PIPELINING", [](const Session&) { return std::string("PIPELINING"); }, {}, {}, {}},
    {"SIZE", &size_keyword, kSizeParams, {}, {}},
    {"ENHANCEDSTATUSCODES", [](const Session&) { return std::string("ENHANCEDSTATUSCODES"); },
     {}, {}, {}},
    {"8BITMIME", [](const Session&) { return std::string("8BITMIME"); }, kBodyParams, {}, {}},
    {"SMTPUTF8", [](const Session&) { return std::string("SMTPUTF8"); }, kUtf8Params, {}, {}},
    {"STARTTLS", &starttls_keyword, {}, {}, kStarttlsRows},
    {"AUTH", &auth_keyword, {}, {}, kAuthRows},
    {"REQUIRETLS", &requiretls_keyword, kRequireTlsParams, {}, {}},
};

const std::array<const Session::Commands::Row*, Session::Commands::kMaxVerbs>&
Session::Commands::rows() {
  static const auto table = [] {
    std::array<const Row*, kMaxVerbs> t{};
    auto add = [&t](const Row& r) {
      const auto i = static_cast<size_t>(r.verb);
      if (i >= t.size() || t[i] != nullptr) std::abort();  // the table is broken
      t[i] = &r;
    };
    for (const Row& r : kBase) add(r);
    for (const Extension& e : kExtensions)
      for (const Row& r : e.commands) add(r);
    return t;
  }();
  return table;
}

const Session::Commands::Row* Session::Commands::find(Verb v) {
  const auto i = static_cast<size_t>(v);
  return i < kMaxVerbs ? rows()[i] : nullptr;
}

const Session::Commands::Param* Session::Commands::find_param(
    std::span<const Param> Extension::*which, std::string_view kw) {
  for (const Extension& e : kExtensions)
    for (const Param& p : e.*which)
      if (p.keyword == kw) return &p;
  return nullptr;
}

void Session::Commands::dispatch(Session& s, const proto::Command& c) {
  const Row* row = find(c.verb);
  if (row == nullptr) {
    s.error(proto::to_string(c.verb), kNotImplemented);
    return;
  }
  if (row->check != nullptr) {
    if (auto r = row->check(s)) {
      s.error(proto::to_string(c.verb), *r);
      return;
    }
  }
  if ((row->states & bit(s.state_)) == 0) {
    if (row->refuse == nullptr) std::abort();  // a row allowed in some states needs a refusal
    s.error(proto::to_string(c.verb), row->refuse(s));
    return;
  }
  row->proceed(s, c);
}

void Session::handle_line(std::string_view line) {
  auto parsed = proto::parse_command(line);
  if (!parsed) {
    error("command", parsed.error());
    return;
  }
  Commands::dispatch(*this, *parsed);
}

bool Session::allowed(Verb verb, State s) {
  const Commands::Row* row = Commands::find(verb);
  return row != nullptr && (row->states & bit(s)) != 0;
}

std::vector<std::string_view> Session::extensions() {
  std::vector<std::string_view> v;
  for (const Commands::Extension& e : Commands::kExtensions) v.push_back(e.name);
  return v;
}

void Session::Commands::hello(Session& s, const proto::Command& c, bool extended) {
  s.reset_transaction();
  s.helo_ = c.arg;
  s.esmtp_ = extended;
  s.enter(State::ready);
  Reply r;
  r.code = 250;
  r.lines.reserve(extended ? std::size(kExtensions) + 1 : 1);
  r.lines.push_back(s.cfg_.hostname);
  if (extended) {
    for (const Extension& e : kExtensions) {
      std::string kw = e.keyword(s);
      if (!kw.empty()) r.lines.push_back(std::move(kw));
    }
  }
  s.reply(r);
}

Reply Session::Commands::mail_refused(const Session& s) {
  if (s.state_ == State::connected) return {503, "5.5.1", "Error: send HELO/EHLO first"};
  return {503, "5.5.1", "Error: nested MAIL command"};
}

void Session::Commands::mail(Session& s, const proto::Command& c) {
  const SessionConfig& cfg = s.cfg_;
  if (cfg.mode != Mode::relay && s.auth_login_.empty()) {
    // Submission ports: AUTH is required before MAIL (RFC 6409 §4.3).
    s.error("MAIL", Reply{530, "5.7.0", "Authentication required"});
    return;
  }
  queue::Envelope env;
  ParamContext ctx{cfg, env, nullptr, s.in_tls_};
  for (const auto& p : c.params) {
    if (!s.esmtp_) {
      s.error("MAIL", Reply{555, "5.5.4", "Error: parameters need EHLO"});
      return;
    }
    const Param* handler = find_param(&Extension::mail_params, p.keyword);
    if (handler == nullptr) {
      s.error("MAIL", Reply{555, "5.5.4", fmt::format("Error: unsupported parameter {}", p.keyword)});
      return;
    }
    if (auto r = handler->apply(ctx, p)) {
      s.error("MAIL", *r);
      return;
    }
  }
  if (!env.smtputf8 && c.path.utf8()) {
    s.error("MAIL", Reply{553, "5.6.7", "Error: non-ASCII address needs SMTPUTF8"});
    return;
  }
  if (cfg.min_free_space > 0) {
    // The free-space reserve (Postfix's 1.5 x message_size_limit): refuse
    // before the disk is full, not after. Temporary, and not a client error.
    const uint64_t need = cfg.min_free_space + ctx.declared_size;
    if (s.host_.spool_free_space(need) < need) {
      const Reply r{452, "4.3.1", "Insufficient system storage"};
      s.host_.rejected(fmt::format("MAIL <{}>", c.path.str()), r);
      s.reply(r);
      return;
    }
  }
  env.sender = c.path.str();
  if (!s.auth_login_.empty()) {
    if (env.sender.empty() && cfg.mode != Mode::relay) {
      s.error("MAIL <>", Reply{553, "5.7.1", "<>: Sender address rejected: null sender not allowed on submission"});
      return;
    }
    if (!env.sender.empty() && !s.host_.sender_allowed(s.auth_login_, env.sender)) {
      s.error(fmt::format("MAIL <{}>", env.sender),
              Reply{553, "5.7.1",
                    fmt::format("<{}>: Sender address rejected: not owned by user {}", env.sender,
                                s.auth_login_)});
      return;
    }
    env.auth_user = s.auth_login_;
  }
  env.client_address = cfg.client_address;
  env.helo = s.helo_;
  s.env_ = std::move(env);
  if (!s.auth_login_.empty() && !cfg.messages_per_login.unlimited()) {
    // Last, so that a MAIL refused for anything else is not counted.
    s.enter(State::mail_limit);
    s.host_.check_limit("login:" + s.auth_login_, cfg.messages_per_login,
                        cfg.messages_per_login.count, true);
    return;
  }
  s.enter(State::mail);
  s.reply(Reply{250, "2.1.0", "Ok"});
}

void Session::Commands::rcpt(Session& s, const proto::Command& c) {
  queue::Recipient rcpt;
  ParamContext ctx{s.cfg_, s.env_, &rcpt, s.in_tls_};
  // No EHLO check here, unlike MAIL: without registered RCPT parameters every
  // one is "unsupported", after HELO too.
  for (const auto& p : c.params) {
    const Param* handler = find_param(&Extension::rcpt_params, p.keyword);
    if (handler == nullptr) {
      s.error("RCPT", Reply{555, "5.5.4", fmt::format("Error: unsupported parameter {}", p.keyword)});
      return;
    }
    if (auto r = handler->apply(ctx, p)) {
      s.error("RCPT", *r);
      return;
    }
  }
  if (!s.env_.smtputf8 && c.path.utf8()) {
    s.error("RCPT", Reply{553, "5.6.7", "Error: non-ASCII address needs SMTPUTF8"});
    return;
  }
  // [aliases]: a local name is replaced by its entry's addresses (one
  // expansion, checked at configuration load never to end in a local name).
  aliases::Resolution local;
  if (s.cfg_.aliases) local = aliases::resolve(*s.cfg_.aliases, s.cfg_.hostname, c.path.str());
  // RFC 5321 §4.5.1: postmaster is accepted from any client — when it has
  // somewhere to go; otherwise an untrusted client is refused as for any
  // recipient (nothing about the table is told to it).
  const bool postmaster =
      local.kind == aliases::Resolution::Kind::alias && local.name == "postmaster";
  if (!s.cfg_.trusted && s.auth_login_.empty() && !postmaster) {
    ++s.rejected_rcpts_;
    s.error(fmt::format("RCPT <{}>", c.path.str()),
            Reply{554, "5.7.1", fmt::format("<{}>: Relay access denied", c.path.str())});
    return;
  }
  if (local.kind == aliases::Resolution::Kind::unknown) {
    ++s.rejected_rcpts_;
    s.error(fmt::format("RCPT <{}> (no [aliases] entry for the local name {})", c.path.str(),
                        local.name),
            Reply{550, "5.1.1",
                  fmt::format("<{}>: Recipient address rejected: no such local user", c.path.str())},
            true);
    return;
  }
  std::vector<queue::Recipient> add;
  if (local.kind == aliases::Resolution::Kind::alias) {
    add = alias_recipients(s, c.path, rcpt, *local.targets);
  } else {
    rcpt.address = c.path.str();
    add.push_back(std::move(rcpt));
  }
  if (!add.empty() && s.env_.recipients.size() + add.size() > s.cfg_.max_recipients) {
    // Not an error at first: RFC 5321 §4.5.3.1.10 expects clients to send
    // the rest in a later transaction. Logged once per transaction; beyond
    // kRecipientOvershoot more (Postfix's smtpd_recipient_overshoot_limit)
    // each one counts towards max_errors, so a flood ends in 421.
    Reply r{452, "4.5.3", "Error: too many recipients"};
    if (++s.overshoot_ > kRecipientOvershoot) {
      s.error("RCPT", r);
      return;
    }
    if (s.overshoot_ == 1) s.host_.rejected("RCPT (and any further ones in this transaction)", r);
    s.reply(r);
    return;
  }
  for (auto& r : add) s.env_.recipients.push_back(std::move(r));
  s.enter(State::rcpt);
  s.reply(Reply{250, "2.1.5", "Ok"});
}

// The recipients an alias stands for: one per target not already in the
// transaction (root and postmaster often go to the same address), each
// keeping the address the client named as its DSN original recipient
// (RFC 3461 ORCPT, "rfc822;" and the address in xtext) unless RCPT gave one.
std::vector<queue::Recipient> Session::Commands::alias_recipients(
    const Session& s, const proto::Mailbox& path, const queue::Recipient& rcpt,
    const std::vector<std::string>& targets) {
  std::string orcpt = rcpt.orcpt;
  if (orcpt.empty() && !path.utf8())
    orcpt = aliases::orcpt(path.domain.empty() ? fmt::format("{}@{}", path.local, s.cfg_.hostname)
                                               : path.str());
  std::vector<queue::Recipient> out;
  for (const std::string& t : targets) {
    auto same = [&t](const queue::Recipient& r) { return r.address == t; };
    if (std::any_of(s.env_.recipients.begin(), s.env_.recipients.end(), same) ||
        std::any_of(out.begin(), out.end(), same))
      continue;
    queue::Recipient r = rcpt;
    r.address = t;
    r.orcpt = orcpt;
    out.push_back(std::move(r));
  }
  return out;
}

Reply Session::Commands::data_refused(const Session& s) {
  if (s.state_ == State::mail && s.rejected_rcpts_ > 0)
    return {554, "5.5.1", "Error: no valid recipients"};
  return {503, "5.5.1",
          s.state_ == State::mail ? "Error: need RCPT command" : "Error: need MAIL command"};
}

void Session::Commands::data(Session& s, const proto::Command&) {
  s.env_.arrival_us = s.host_.now_us();
  s.env_.id = s.host_.begin_message(s.trace());
  s.data_ = proto::DataReader(s.cfg_.max_message_size);
  s.enter(State::data);
  s.reply(Reply{354, "", "End data with <CR><LF>.<CR><LF>"});
}

void Session::Commands::quit(Session& s, const proto::Command&) {
  s.reply(Reply{221, "2.0.0", "Bye"});
  s.enter(State::quitting);
  s.pending_.clear();
  s.host_.close();
}

std::optional<Reply> Session::Commands::starttls_check(const Session& s) {
  if (!s.cfg_.tls_offered) return kNotImplemented;
  if (s.in_tls_) return Reply{554, "5.5.1", "Error: TLS already active"};
  return std::nullopt;
}

void Session::Commands::starttls(Session& s, const proto::Command&) {
  s.reply(Reply{220, "2.0.0", "Ready to start TLS"});
  s.enter(State::tls_handshake);
  s.lines_.reset();
  s.pending_.clear();
  s.host_.start_tls();
}

// Never log the AUTH argument: it may hold a password (the initial response).
std::optional<Reply> Session::Commands::auth_check(const Session& s) {
  if (!s.cfg_.auth_offered) return Reply{503, "5.5.1", "Error: authentication not enabled"};
  if (!s.auth_allowed())
    return Reply{538, "5.7.11", "Encryption required for requested authentication mechanism"};
  return std::nullopt;
}

// Refusals that hold in the ready state too.
std::optional<Reply> Session::Commands::auth_not_now(const Session& s) {
  if (s.state_ == State::connected || !s.esmtp_) return Reply{503, "5.5.1", "Error: send EHLO first"};
  if (!s.auth_login_.empty()) return Reply{503, "5.5.1", "Error: already authenticated"};
  return std::nullopt;
}

Reply Session::Commands::auth_refused(const Session& s) {
  if (auto r = auth_not_now(s)) return *r;
  return {503, "5.5.1", "Error: MAIL transaction in progress"};
}

void Session::Commands::auth(Session& s, const proto::Command& c) {
  if (auto r = auth_not_now(s)) {
    s.error("AUTH", *r);
    return;
  }
  s.auth_step(s.sasl_.start_command(c.arg));
}

std::optional<Reply> Session::Commands::size_param(ParamContext& ctx, const proto::Param& p) {
  if (!p.value || !all_digits(*p.value)) return Reply{501, "5.5.4", "Error: bad SIZE parameter"};
  ctx.declared_size = std::stoull(*p.value);
  if (ctx.declared_size > ctx.cfg.max_message_size)
    return Reply{552, "5.3.4", "Message size exceeds fixed limit"};
  return std::nullopt;
}

std::optional<Reply> Session::Commands::body_param(ParamContext& ctx, const proto::Param& p) {
  std::string v = p.value.value_or("");
  for (auto& ch : v) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
  if (v == "7BIT") {
    ctx.env.body = queue::BodyType::seven_bit;
  } else if (v == "8BITMIME") {
    ctx.env.body = queue::BodyType::eight_bit_mime;
  } else {
    return Reply{501, "5.5.4", "Error: BODY must be 7BIT or 8BITMIME"};
  }
  return std::nullopt;
}

std::optional<Reply> Session::Commands::smtputf8_param(ParamContext& ctx, const proto::Param& p) {
  if (p.value) return Reply{501, "5.5.4", "Error: SMTPUTF8 takes no value"};
  ctx.env.smtputf8 = true;
  return std::nullopt;
}

// RFC 8689 §4.1: the flag goes with the envelope to the intake's commit
// (queue::Envelope::requiretls), which then ignores any TLS-Required: No.
std::optional<Reply> Session::Commands::requiretls_param(ParamContext& ctx, const proto::Param& p) {
  if (p.value) return Reply{501, "5.5.4", "Error: REQUIRETLS takes no value"};
  if (!ctx.in_tls)
    return Reply{530, "5.7.10", "Error: REQUIRETLS needs a TLS session; issue STARTTLS first"};
  ctx.env.requiretls = true;
  return std::nullopt;
}

}  // namespace sluice::mta
