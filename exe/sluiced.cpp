// sluiced — the Sluice daemon. Thin: parse flags, load the configuration,
// hand over to mta::run_daemon().
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "conf/config.hpp"
#include "conf/log.hpp"
#include "mta/daemon.hpp"

int main(int argc, char** argv) {
  CLI::App app{"sluiced: the Sluice mail server"};
  std::string config_flag;
  bool check = false;
  app.add_option("-c,--config", config_flag, "configuration file (else $SLUICE_CONFIG, else /etc/sluice/sluice.toml)");
  app.add_flag("--check", check, "validate the configuration, print each problem, and exit");
  app.set_version_flag("--version", SLUICE_VERSION);
  CLI11_PARSE(app, argc, argv);

  sluice::log::set_program("sluiced");
  std::string path = sluice::conf::config_path(config_flag);
  auto config = sluice::conf::load_file(path);
  if (!config) {
    for (const auto& p : config.error()) fmt::print(stderr, "{}\n", p.str(path));
    if (!check) fmt::print(stderr, "sluiced: configuration has errors; not starting\n");
    return 1;
  }
  // An unknown `user` stops sluiced (and fails --check): never a silent
  // run as root.
  if (auto account = sluice::conf::lookup_user(*config); !account) {
    fmt::print(stderr, "{}\n", account.error().str(path));
    if (!check) fmt::print(stderr, "sluiced: configuration has errors; not starting\n");
    return 1;
  }
  if (check) {
    if (auto w = sluice::aliases::root_warning(config->aliases))
      fmt::print(stderr, "{}: warning: {}\n", path, *w);
    // The files it names, loaded as the start loads them.
    const auto problems = sluice::mta::check_files(*config);
    for (const auto& p : problems) fmt::print(stderr, "{}: {}\n", path, p);
    if (!problems.empty()) return 1;
    fmt::print("{}: configuration ok\n", path);
    return 0;
  }
  return sluice::mta::run_daemon(std::move(*config));
}
