// options.hpp — sluice-sendmail's command line: the classic sendmail
// options local programs use (cron, PHP mail(), mail(1), monitoring
// scripts). Pure: argv in, Options or an error message out; nothing is
// read from the environment here.
//
// parse_options(args) takes the whole argv (args[0] is the program name:
// its base name "mailq" selects Mode::mailq, "newaliases" Mode::newaliases,
// anything else sendmail). Options are single letters after "-", several may
// share one argument ("-ti"); an option that takes a value takes the rest of
// its argument or, when nothing is left, the next argument ("-fbob",
// "-f bob"). Options and recipients may be mixed in any order; "--" ends the
// options. See docs/sendmail.md for the full table.
//   supported: -t -i -oi -O IgnoreDots -f -r -F -C -bm -bp -bi -bs (with -bs,
//              no recipient arguments; -t -i -f -F mean nothing: SMTP says it all)
//   accepted and ignored: -v -m -n -U -G -oANYTHING -O... -e? -h N -N dsn
//                         -R ret -V envid -B type -L tag -X file -p proto -A?
//   refused (an Error): -bd -bD -bv -bt -bh -bH -ba -bP and other -b
//                       modes, -I, -q..., unknown options, missing values.
// Errors are one line without the program name; sluice-sendmail prints
// "sluice-sendmail: MESSAGE" and exits EX_USAGE.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace sluice::sendmail {

enum class Mode {
  send,        // read a message and queue it (default, -bm)
  mailq,       // list the queue (-bp, or invoked as "mailq")
  newaliases,  // check [aliases] (-bi, or invoked as "newaliases")
  smtp,        // SMTP on standard input and output (-bs; bs.hpp)
};

struct Options {
  Mode mode = Mode::send;
  bool extract_recipients = false;       // -t
  bool ignore_dots = false;              // -i, -oi: a lone "." line does not end the input
  std::optional<std::string> sender;     // -f / -r as written ("" or "<>": null sender)
  std::optional<std::string> full_name;  // -F
  std::optional<std::string> config;     // -C (never empty)
  std::vector<std::string> recipients;   // the other arguments, as written
};

std::expected<Options, std::string> parse_options(const std::vector<std::string>& args);

// One line for error messages: "usage: sendmail [-t] [-i] ...".
std::string_view usage();

}  // namespace sluice::sendmail
