// daemon.hpp — sluiced's life cycle: spool, listeners, signals, shutdown.
//
// run_daemon() opens the spool (recovering every committed message), starts
// delivery (mta/delivery.hpp), binds the listeners, and runs the libuv loop
// on the calling thread until SIGTERM or SIGINT: then it stops accepting and
// delivering, lets sessions finish the message they are in (up to a grace
// period), drains the spool writer and returns.
// SIGHUP re-reads the configuration file and applies what can change without
// re-binding (limits, trusted networks, hostname for new sessions).
#pragma once

#include <string>

#include "conf/config.hpp"

namespace sluice::mta {

// Returns the process exit code.
int run_daemon(conf::Config config);

}  // namespace sluice::mta
