// sluice-sendmail — the sendmail interface for local programs (cron, PHP
// mail(), scripts). Also `mailq` and `newaliases` when invoked under those
// names, and `-bs` (SMTP on standard input and output, Symfony Mailer and
// Laravel). Thin: parse argv, load the configuration, read the message, hand
// the rules to mta/sendmail (submit.hpp, bs.hpp) and the file to
// write_maildrop().
// It never talks to the daemon: the message goes into <spool_dir>/maildrop,
// which sluiced picks up now or when it next starts.
//
// Installed setgid group sluicedrop (docs/sendmail.md, Postfix's postdrop
// model), so it trusts nothing from the caller: descriptors 0-2 are made
// safe, the umask is fixed, a caller-chosen configuration (-C or
// SLUICE_CONFIG) costs the privilege for anyone but root, and the privilege
// is given up as soon as the file is written. Exit codes from sysexits.h,
// each failure explained on standard error as "sluice-sendmail: ...";
// stopped by a signal or a resource limit it exits EX_TEMPFAIL and leaves
// no partial file behind (maildrop_io.hpp, install_cleanup_handlers).
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "mta/sendmail/bs.hpp"
#include "mta/sendmail/maildrop.hpp"
#include "mta/sendmail/maildrop_io.hpp"
#include "mta/sendmail/message.hpp"
#include "mta/sendmail/options.hpp"
#include "mta/sendmail/submit.hpp"

#include "mta/control/client.hpp"
#include "mta/control/format.hpp"

namespace sm = sluice::sendmail;

namespace {

constexpr const char* kProgram = "sluice-sendmail";

int fail(int code, std::string_view message) {
  fmt::print(stderr, "{}: {}\n", kProgram, message);
  return code;
}

int fail(const sm::IoError& e) { return fail(e.exit_code, e.message); }

// Standard input through InputReader; the limit is checked while reading.
int read_message(sm::InputReader& reader) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(EX_IOERR, fmt::format("cannot read standard input: {}", std::strerror(errno)));
    }
    const auto status =
        n == 0 ? reader.finish() : reader.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
    switch (status) {
      case sm::InputReader::Status::more:
        continue;
      case sm::InputReader::Status::done:
        return EX_OK;
      case sm::InputReader::Status::too_big:
        return fail(EX_DATAERR, "the message is larger than limits.max_message_size");
      case sm::InputReader::Status::nul:
        return fail(EX_DATAERR, "the message contains a NUL octet");
    }
  }
}

int run_mailq(const sluice::conf::Config& config) {
  // sluicectl's exit codes, translated to sysexits.h like the rest of sendmail.
  switch (sluice::control::list_queue(config.control_socket, false, std::cout, std::cerr)) {
    case sluice::control::kExitOk:
      return EX_OK;
    case sluice::control::kExitUsage:
      return EX_USAGE;
    default:  // no daemon, or it refused: "mail system is down"
      return EX_UNAVAILABLE;
  }
}

// newaliases: there is no database to build; say where aliases live and
// whether mail to root has somewhere to go.
int run_newaliases(const sluice::conf::Config& config, const std::string& path) {
  fmt::print("{}: aliases live in the [aliases] table of {} ({} name{}); sluiced reads them at "
             "start and on SIGHUP, there is nothing to rebuild\n",
             kProgram, path, config.aliases.size(), config.aliases.size() == 1 ? "" : "s");
  if (auto w = sluice::aliases::root_warning(config.aliases))
    fmt::print("{}: warning: {}\n", kProgram, *w);
  return EX_OK;
}

sm::Stamp stamp_now(const std::string& hostname) {
  sm::Stamp s;
  s.unix_us = sm::wall_clock_us();
  s.utc_offset_s = sm::utc_offset_at(s.unix_us / 1'000'000);
  s.pid = static_cast<uint32_t>(::getpid());
  s.random = sm::random64();
  s.hostname = hostname;
  return s;
}

// -bs: the BsIo of the real program — descriptors 0 and 1, the maildrop.
class StdIo final : public sm::BsIo {
 public:
  StdIo(std::string maildrop, std::string hostname)
      : maildrop_(std::move(maildrop)), hostname_(std::move(hostname)) {}
  bool failed = false;  // standard output is gone

  void write(std::string_view bytes) override {
    while (!bytes.empty() && !failed) {
      const ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failed = true;
        break;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  std::expected<std::string, sm::IoError> drop(std::string_view file) override {
    return sm::write_maildrop(maildrop_, file);
  }
  sm::Stamp stamp() override { return stamp_now(hostname_); }
  int64_t now_us() override { return sm::wall_clock_us(); }
  void report(std::string_view line) override { fail(0, line); }

 private:
  std::string maildrop_;
  std::string hostname_;
};

int run_smtp(const sluice::conf::Config& config, sm::Context context) {
  ::signal(SIGPIPE, SIG_IGN);  // a client that goes away is EPIPE, not death
  StdIo io(config.spool_dir + "/maildrop", config.hostname);
  auto table = std::make_shared<const sluice::aliases::Table>(config.aliases);
  auto session = sm::bs_session_config(config.hostname, config.limits.max_message_size,
                                       config.limits.max_recipients, std::move(table));
  session.command_timeout = config.limits.command_timeout;
  session.data_timeout = config.limits.data_timeout;
  session.max_hops = config.limits.max_hops;
  sm::BsDialogue dialogue(std::move(session), std::move(context), io);
  dialogue.start();
  std::vector<char> buf(64 * 1024);
  while (!dialogue.done() && !io.failed) {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const auto ms = dialogue.timeout().count();
    const int r = ::poll(&p, 1, ms > INT32_MAX ? INT32_MAX : static_cast<int>(ms));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(EX_IOERR, fmt::format("poll: {}", std::strerror(errno)));
    if (r == 0) {
      dialogue.on_timeout();
      break;
    }
    const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      dialogue.end_of_input();
      break;
    }
    dialogue.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  return io.failed ? fail(EX_IOERR, "standard output was closed") : EX_OK;
}

}  // namespace

int main(int argc, char** argv) {
  if (!sm::ensure_standard_descriptors()) return EX_OSERR;
  ::umask(022);

  const std::vector<std::string> args(argv, argv + argc);
  auto options = sm::parse_options(args);
  if (!options) {
    fail(EX_USAGE, options.error());
    if (options.error().starts_with("unknown option")) fmt::print(stderr, "{}\n", sm::usage());
    return EX_USAGE;
  }
  // A file size limit or a stop signal must not leave a partial file in the
  // maildrop: SIGXFSZ ignored (write() fails with EFBIG, handled), and
  // INT/TERM/HUP/QUIT remove the temporary file and exit EX_TEMPFAIL.
  if (options->mode == sm::Mode::send || options->mode == sm::Mode::smtp)
    sm::install_cleanup_handlers();

  // A configuration the caller chose must not be read with our privilege.
  const char* env_config = std::getenv("SLUICE_CONFIG");
  const bool caller_config = options->config || (env_config != nullptr && *env_config != '\0');
  if (caller_config && ::getuid() != 0) {
    if (auto r = sm::drop_setgid(); !r) return fail(r.error());
  }
  const std::string path = sluice::conf::config_path(options->config.value_or(""));
  auto config = sluice::conf::load_file(path);
  if (!config) {
    for (const auto& p : config.error()) fmt::print(stderr, "{}: {}\n", kProgram, p.str(path));
    return fail(EX_CONFIG, fmt::format("the configuration {} has errors", path));
  }

  if (options->mode == sm::Mode::mailq) {
    if (auto r = sm::drop_setgid(); !r) return fail(r.error());
    return run_mailq(*config);
  }

  if (options->mode == sm::Mode::newaliases) {
    if (auto r = sm::drop_setgid(); !r) return fail(r.error());
    return run_newaliases(*config, path);
  }

  sm::Context context;
  context.login = sm::login_name(::getuid());
  context.max_message_size = config->limits.max_message_size;
  context.aliases = &config->aliases;
  context.add_missing_headers = config->relay.add_missing_headers;
  context.max_hops = config->limits.max_hops;
  if (options->mode == sm::Mode::smtp) {
    context.stamp = stamp_now(config->hostname);
    const int rc = run_smtp(*config, context);
    if (auto r = sm::drop_setgid(); !r) fail(r.error().exit_code, "warning: " + r.error().message);
    return rc;
  }

  sm::InputReader reader(config->limits.max_message_size, options->ignore_dots);
  if (int rc = read_message(reader); rc != EX_OK) return rc;
  context.stamp = stamp_now(config->hostname);

  const std::string content = reader.take();
  auto drop = sm::build_maildrop(*options, content, context);
  if (!drop) return fail(drop.error().exit_code, drop.error().message);
  auto file = sm::encode_maildrop(*drop);
  if (!file) return fail(EX_SOFTWARE, "internal error: " + file.error());

  auto written = sm::write_maildrop(config->spool_dir + "/maildrop", *file);
  // Done with the privilege. The message is queued (or not) either way, so
  // a failure here only warns: exiting non-zero would invite a duplicate.
  if (auto r = sm::drop_setgid(); !r) fail(r.error().exit_code, "warning: " + r.error().message);
  if (!written) return fail(written.error());
  return EX_OK;
}
