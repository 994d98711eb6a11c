// key_command.hpp — `sluicectl api-key new NAME [--senders LIST]`
// (docs/control.md, "API keys"): needs no running daemon. Makes a key
// (api::new_key: "sluice_" + 43 base64url characters of 32 random bytes),
// appends "NAME:sha256hex[:senders]" to [http] api_keys_file and prints the
// key once on `out` (nothing else goes there); notes go to `err`.
// The file is made when missing: 0640 root:<the daemon's group> when run as
// root (sluiced reads it after dropping privileges), else 0600; opened
// without following a link (conf/safe_file.hpp), O_APPEND, under flock, and
// fsynced. A NAME already in the file (ASCII case ignored) or not a valid
// name (A-Z a-z 0-9 . _ @ + -, at most 64) is refused.
// Exit codes as sluicectl's offline commands: 0 done, 2 bad command line,
// 3 the configuration or the file failed.
#pragma once

#include <ostream>
#include <string>

namespace sluice::api {

struct KeyNewArgs {
  std::string config_path;  // conf::config_path() of --config
  std::string name;
  std::string senders;      // --senders "a@b.example,@c.example"; "" none
};
int key_new(const KeyNewArgs& args, std::ostream& out, std::ostream& err);

}  // namespace sluice::api
