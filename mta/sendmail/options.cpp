// options.cpp — see options.hpp. Pure.
#include "mta/sendmail/options.hpp"

#include <fmt/format.h>

#include <string_view>

#include "mta/sendmail/addresses.hpp"

namespace sluice::sendmail {

namespace {

// Options that stand alone; all but -t and -i are accepted and ignored:
// -v verbose, -m "me too", -n no aliasing, -U initial user submission,
// -G gateway submission.
constexpr std::string_view kFlags = "tivmnUG";
// Options that take a value (attached or as the next argument).
constexpr std::string_view kWithValue = "ABCFLNORVXbefhopr";

std::string_view base_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// -b MODE. Returns an error for modes Sluice does not provide.
std::expected<void, std::string> apply_mode(std::string_view v, Options& o) {
  if (v == "m") {
    o.mode = Mode::send;
  } else if (v == "p") {
    o.mode = Mode::mailq;
  } else if (v == "i") {
    o.mode = Mode::newaliases;
  } else if (v == "d" || v == "D") {
    return std::unexpected(fmt::format(
        "-b{}: daemon mode is not provided by sluice-sendmail; run sluiced", v));
  } else if (v == "s") {
    o.mode = Mode::smtp;
  } else if (v == "v" || v == "t" || v == "h" || v == "H" || v == "a" || v == "P") {
    return std::unexpected(fmt::format("-b{}: this mode is not supported by sluice-sendmail", v));
  } else {
    return std::unexpected(fmt::format("-b{}: unknown mode", v));
  }
  return {};
}

// -O Option=value: only IgnoreDots means anything to us.
void apply_long_option(std::string_view v, Options& o) {
  const size_t eq = v.find('=');
  const std::string_view name = v.substr(0, eq);
  if (!iequals(name, "IgnoreDots")) return;
  if (eq == std::string_view::npos) {
    o.ignore_dots = true;
    return;
  }
  const std::string_view value = v.substr(eq + 1);
  o.ignore_dots = !(iequals(value, "false") || iequals(value, "f") || iequals(value, "no") ||
                    value == "0");
}

std::expected<void, std::string> apply_value(char opt, std::string_view v, Options& o) {
  switch (opt) {
    case 'b':
      return apply_mode(v, o);
    case 'C':
      if (v.empty()) return std::unexpected("-C needs a file name");
      o.config = std::string(v);
      break;
    case 'F':
      o.full_name = std::string(v);
      break;
    case 'f':
    case 'r':
      o.sender = std::string(v);
      break;
    case 'o':
      // -oi is IgnoreDots; -odb, -odi, -oem, -oep, -om, -oXanything... are
      // delivery and error-reporting modes that make no difference here.
      if (v == "i") o.ignore_dots = true;
      break;
    case 'O':
      apply_long_option(v, o);
      break;
    default:
      // -A, -B, -L, -N, -R, -V, -X, -e, -h, -p: accepted and ignored.
      break;
  }
  return {};
}

}  // namespace

std::string_view usage() {
  return "usage: sendmail [-t] [-i] [-f sender] [-F full-name] [-C config] [recipient ...]";
}

std::expected<Options, std::string> parse_options(const std::vector<std::string>& args) {
  Options o;
  bool options_done = false;
  for (size_t k = 1; k < args.size(); ++k) {
    const std::string& arg = args[k];
    if (options_done || arg.empty() || arg[0] != '-') {
      o.recipients.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-") return std::unexpected("\"-\" is not an option");
    if (arg.size() > 2 && arg[1] == '-')
      return std::unexpected(fmt::format("unknown option \"{}\"", arg));

    for (size_t p = 1; p < arg.size(); ++p) {
      const char c = arg[p];
      if (kFlags.find(c) != std::string_view::npos) {
        if (c == 't') o.extract_recipients = true;
        if (c == 'i') o.ignore_dots = true;
        continue;
      }
      if (c == 'q')
        return std::unexpected(
            "-q: sluiced runs the queue itself; use \"sluicectl queue flush\" to retry now");
      if (c == 'I')
        return std::unexpected("-I: Sluice has no alias database to initialize");
      if (kWithValue.find(c) == std::string_view::npos) {
        const unsigned char u = static_cast<unsigned char>(c);
        return std::unexpected(
            u > 0x20 && u < 0x7f ? fmt::format("unknown option -{}", c)
                                 : fmt::format("unknown option \\x{:02x}", static_cast<unsigned>(u)));
      }
      std::string_view value;
      if (p + 1 < arg.size()) {
        value = std::string_view(arg).substr(p + 1);
      } else if (k + 1 < args.size()) {
        value = args[++k];
      } else {
        return std::unexpected(fmt::format("option -{} needs a value", c));
      }
      if (auto r = apply_value(c, value, o); !r) return std::unexpected(r.error());
      break;  // the value used up the rest of this argument
    }
  }

  if (!args.empty()) {
    const std::string_view name = base_name(args[0]);
    if (name == "mailq") o.mode = Mode::mailq;
    if (name == "newaliases") o.mode = Mode::newaliases;
  }
  if (o.mode == Mode::smtp && !o.recipients.empty())
    return std::unexpected("-bs: the recipients come in RCPT TO commands, not as arguments");
  return o;
}

}  // namespace sluice::sendmail
