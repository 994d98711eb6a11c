// daemon.hpp — sluiced's life cycle: spool, listeners, signals, shutdown.
//
// run_daemon() opens the spool (recovering every committed message), starts
// delivery (mta/delivery.hpp), binds the listeners, and runs the libuv loop
// on the calling thread until SIGTERM or SIGINT: then it stops accepting and
// delivering, lets sessions finish the message they are in (up to a grace
// period), drains the spool writer and returns.
// SIGHUP re-reads the configuration file and applies, all or nothing, what
// can change without re-binding (docs/configuration.md, "Reloading"): the
// certificate, the users, limits, trusted networks, hostname, [delivery] and
// [dns]; what needs a restart is named in the log.
#pragma once

#include <string>
#include <vector>

#include "conf/config.hpp"

namespace sluice::mta {

// Returns the process exit code.
int run_daemon(conf::Config config);

// For `sluiced --check`: the files the configuration names, loaded as the
// start would (certificate and key, and that they match; the users file;
// the relayhost password file; delivery.ca_file). One problem per line,
// each naming its key; empty when all of them load. A missing default
// certificate pair is no problem (the start makes it).
std::vector<std::string> check_files(const conf::Config& config);

}  // namespace sluice::mta
