// sluice-sendmail — the sendmail interface for local programs (cron, PHP
// mail(), scripts). Also `mailq` and `newaliases` when invoked under those
// names. Thin: parse argv, load the configuration, read the message, hand
// the rules to mta/sendmail (submit.hpp) and the file to write_maildrop().
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
  if (options->mode == sm::Mode::newaliases) return EX_OK;  // no alias database
  // A file size limit or a stop signal must not leave a partial file in the
  // maildrop: SIGXFSZ ignored (write() fails with EFBIG, handled), and
  // INT/TERM/HUP/QUIT remove the temporary file and exit EX_TEMPFAIL.
  if (options->mode != sm::Mode::mailq) sm::install_cleanup_handlers();

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

  sm::InputReader reader(config->limits.max_message_size, options->ignore_dots);
  if (int rc = read_message(reader); rc != EX_OK) return rc;

  sm::Context context;
  context.login = sm::login_name(::getuid());
  context.max_message_size = config->limits.max_message_size;
  context.stamp.unix_us = sm::wall_clock_us();
  context.stamp.utc_offset_s = sm::utc_offset_at(context.stamp.unix_us / 1'000'000);
  context.stamp.pid = static_cast<uint32_t>(::getpid());
  context.stamp.random = sm::random64();
  context.stamp.hostname = config->hostname;

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
