#!/usr/bin/env bash
# check_install.sh BUILD_DIR — stages `cmake --install` into a temporary
# DESTDIR and checks the layout docs/install.md promises: the three binaries,
# the commented configuration (and that a second install keeps an edited
# one), the systemd unit with its sandboxing, and that the installed
# configuration passes `sluiced --check` once pointed at writable paths.
set -euo pipefail
build="$1"
stage="$(mktemp -d "${TMPDIR:-/tmp}/sluice-install.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
fail() { echo "check_install: $*" >&2; exit 1; }

DESTDIR="$stage" cmake --install "$build" --prefix /usr/local >"$stage.log" 2>&1 || { cat "$stage.log"; fail "install failed"; }
rm -f "$stage.log"
for b in sluiced sluicectl sluice-sendmail; do
  [ -x "$stage/usr/local/sbin/$b" ] || fail "missing sbin/$b"
done
cfg="$stage/etc/sluice/sluice.toml"
[ -f "$cfg" ] || fail "missing /etc/sluice/sluice.toml"
[ -f "$stage/etc/sluice/sluice.toml.example" ] || fail "missing sluice.toml.example"
grep -q '^#' "$cfg" || fail "the installed configuration has no comments"
unit="$stage/usr/local/lib/systemd/system/sluiced.service"
[ -f "$unit" ] || fail "missing the systemd unit"
for key in "ExecStart=/usr/local/sbin/sluiced --config /etc/sluice/sluice.toml" "ProtectSystem=strict" \
           "NoNewPrivileges=yes" "ReadWritePaths=/var/spool/sluice" "ExecReload=/bin/kill -HUP \$MAINPID"; do
  grep -qF "$key" "$unit" || fail "the unit lacks: $key"
done
[ -f "$stage/usr/local/share/doc/sluice/operations.md" ] || fail "missing docs/operations.md"

# A second install keeps the admin's edits.
echo '# edited by the admin' >> "$cfg"
DESTDIR="$stage" cmake --install "$build" --prefix /usr/local >/dev/null 2>&1 || fail "second install failed"
grep -q 'edited by the admin' "$cfg" || fail "a second install overwrote sluice.toml"

# The shipped configuration is valid (paths moved into the stage).
# --check loads the files it names, as the start does: the certificate pair
# at the default place (tls/ beside the file) is made at start, so its
# absence is fine; the users file is the administrator's to write
# (docs/install.md), and an empty one stands for it here.
sed -e "s|/var/spool/sluice|$stage/spool|; s|/run/sluice|$stage/run|; s|/etc/sluice|$stage/etc/sluice|g" \
  "$cfg" > "$stage/etc/sluice/check.toml"
# It runs as the `sluice` account postinst makes; without that account
# --check must say so (an unknown user is fatal), and the rest is checked
# with user = "root".
if ! getent passwd sluice >/dev/null; then
  if out="$("$stage/usr/local/sbin/sluiced" --check --config "$stage/etc/sluice/check.toml" 2>&1)"; then
    fail "sluiced --check accepts user = \"sluice\" with no such account"
  fi
  grep -q 'user: "sluice": no such account' <<<"$out" || fail "--check did not name the missing account: $out"
  sed -i 's|^user = "sluice"|user = "root"|' "$stage/etc/sluice/check.toml"
fi
if out="$("$stage/usr/local/sbin/sluiced" --check --config "$stage/etc/sluice/check.toml" 2>&1)"; then
  fail "sluiced --check accepts a users file that does not exist"
fi
grep -q 'auth.users_file: .*/etc/sluice/users: cannot open' <<<"$out" \
  || fail "--check did not name the missing users file: $out"
: > "$stage/etc/sluice/users"
"$stage/usr/local/sbin/sluiced" --check --config "$stage/etc/sluice/check.toml" || fail "sluiced --check refuses the installed configuration"
echo "check_install: ok"
