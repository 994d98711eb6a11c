// options_test.cpp — sluice-sendmail's command line: supported, ignored and
// refused options, clustering, attached and separate values, program names.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mta/sendmail/options.hpp"

using sluice::sendmail::Mode;
using sluice::sendmail::Options;
using sluice::sendmail::parse_options;

namespace {

Options ok(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/sbin/sendmail");
  auto o = parse_options(args);
  INFO((o ? std::string() : o.error()));
  REQUIRE(o);
  return *o;
}

std::string bad(std::vector<std::string> args) {
  args.insert(args.begin(), "sendmail");
  auto o = parse_options(args);
  REQUIRE_FALSE(o);
  return o.error();
}

}  // namespace

TEST_CASE("no options: send to the arguments") {
  Options o = ok({"bob@example.com", "carol@example.org"});
  CHECK(o.mode == Mode::send);
  CHECK_FALSE(o.extract_recipients);
  CHECK_FALSE(o.ignore_dots);
  CHECK_FALSE(o.sender);
  CHECK_FALSE(o.full_name);
  CHECK_FALSE(o.config);
  CHECK(o.recipients == std::vector<std::string>{"bob@example.com", "carol@example.org"});
}

TEST_CASE("-t and -i, alone and clustered") {
  Options a = ok({"-t", "-i"});
  CHECK(a.extract_recipients);
  CHECK(a.ignore_dots);
  Options b = ok({"-ti"});
  CHECK(b.extract_recipients);
  CHECK(b.ignore_dots);
  Options c = ok({"-it"});
  CHECK(c.extract_recipients);
  CHECK(c.ignore_dots);
  CHECK(c.recipients.empty());
}

TEST_CASE("-oi and -O IgnoreDots") {
  CHECK(ok({"-oi", "x@y"}).ignore_dots);
  CHECK(ok({"-o", "i", "x@y"}).ignore_dots);
  CHECK(ok({"-O", "IgnoreDots", "x@y"}).ignore_dots);
  CHECK(ok({"-OIgnoreDots=true", "x@y"}).ignore_dots);
  CHECK_FALSE(ok({"-OIgnoreDots=false", "x@y"}).ignore_dots);
  CHECK_FALSE(ok({"-odb", "x@y"}).ignore_dots);  // -o with another option
}

TEST_CASE("-f and -r: attached, separate, empty and <>") {
  CHECK(ok({"-f", "alice@example.com", "b@c"}).sender == "alice@example.com");
  CHECK(ok({"-falice@example.com", "b@c"}).sender == "alice@example.com");
  CHECK(ok({"-r", "<alice@example.com>", "b@c"}).sender == "<alice@example.com>");
  CHECK(ok({"-ralice", "b@c"}).sender == "alice");
  CHECK(ok({"-f", "", "b@c"}).sender == "");
  CHECK(ok({"-f", "<>", "b@c"}).sender == "<>");
  // The value takes the rest of the cluster: -tf means -t then -f VALUE.
  Options o = ok({"-tfbob@x", "c@d"});
  CHECK(o.extract_recipients);
  CHECK(o.sender == "bob@x");
  CHECK(o.recipients == std::vector<std::string>{"c@d"});
}

TEST_CASE("-F full name and -C configuration") {
  Options o = ok({"-F", "Cron Daemon", "-C", "/etc/other.toml", "root"});
  CHECK(o.full_name == "Cron Daemon");
  CHECK(o.config == "/etc/other.toml");
  CHECK(o.recipients == std::vector<std::string>{"root"});
  CHECK(ok({"-FCronDaemon", "root"}).full_name == "CronDaemon");
  CHECK(bad({"-C", ""}).find("-C") != std::string::npos);
}

TEST_CASE("harmless classic options are accepted and ignored") {
  Options o = ok({"-odi", "-odb", "-odq", "-oem", "-oee", "-oep", "-oeq", "-oew", "-om",
                  "-oXanything", "-bm", "-v", "-h", "17", "-N", "success,failure", "-R", "hdrs",
                  "-V", "envid123", "-B", "8BITMIME", "-L", "tag", "-U", "-em", "-ep", "-m",
                  "-n", "-G", "-X", "/tmp/log", "-pESMTP", "-Am", "bob@example.com"});
  CHECK(o.mode == Mode::send);
  CHECK_FALSE(o.ignore_dots);
  CHECK_FALSE(o.extract_recipients);
  CHECK(o.recipients == std::vector<std::string>{"bob@example.com"});
}

TEST_CASE("-- ends the options; options and recipients mix") {
  Options o = ok({"bob@x", "-i", "--", "-t", "-odd@y"});
  CHECK(o.ignore_dots);
  CHECK_FALSE(o.extract_recipients);
  CHECK(o.recipients == std::vector<std::string>{"bob@x", "-t", "-odd@y"});
}

TEST_CASE("modes: -bp, -bi, program names") {
  CHECK(ok({"-bp"}).mode == Mode::mailq);
  CHECK(ok({"-bi"}).mode == Mode::newaliases);
  CHECK(ok({"-b", "m", "a@b"}).mode == Mode::send);
  auto mailq = parse_options({"/usr/bin/mailq"});
  REQUIRE(mailq);
  CHECK(mailq->mode == Mode::mailq);
  auto newaliases = parse_options({"newaliases"});
  REQUIRE(newaliases);
  CHECK(newaliases->mode == Mode::newaliases);
  auto plain = parse_options({"/usr/sbin/sendmail", "x@y"});
  REQUIRE(plain);
  CHECK(plain->mode == Mode::send);
  // The base name only: a directory called mailq does not count.
  auto dir = parse_options({"/opt/mailq/sendmail", "x@y"});
  REQUIRE(dir);
  CHECK(dir->mode == Mode::send);
}

TEST_CASE("-bs: SMTP on standard input, as Symfony Mailer and Laravel run it") {
  CHECK(ok({"-bs"}).mode == Mode::smtp);
  Options laravel = ok({"-bs", "-i"});
  CHECK(laravel.mode == Mode::smtp);
  CHECK(laravel.recipients.empty());
  CHECK(ok({"-b", "s", "-C", "/etc/x.toml"}).mode == Mode::smtp);
  CHECK(bad({"-bs", "bob@example.com"}).find("RCPT TO") != std::string::npos);
}

TEST_CASE("unsupported modes and options are usage errors") {
  for (const char* mode : {"-bd", "-bD", "-bv", "-bt", "-bh", "-bH", "-ba", "-bP", "-bz"}) {
    INFO(mode);
    CHECK(bad({mode}).find(mode) != std::string::npos);
  }
  CHECK(bad({"-q"}).find("sluicectl queue flush") != std::string::npos);
  CHECK(bad({"-q30m"}).find("sluicectl") != std::string::npos);
  CHECK(bad({"-I"}).find("-I") != std::string::npos);
  CHECK(bad({"-Z"}) == "unknown option -Z");
  CHECK(bad({"-tZ"}) == "unknown option -Z");
  CHECK(bad({"--help"}).find("--help") != std::string::npos);
  CHECK(bad({"-"}).find("\"-\"") != std::string::npos);
  CHECK(bad({"-f"}) == "option -f needs a value");
  CHECK(bad({"a@b", "-F"}) == "option -F needs a value");
}
