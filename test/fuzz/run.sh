#!/usr/bin/env bash
# run.sh [SECONDS] — build the libFuzzer targets with clang-16 (ASan+UBSan) in
# build-fuzz/ and run each over a copy of its seed corpus for SECONDS
# (default 60). Exits non-zero if a build fails or any target finds a crash,
# leak, timeout or sanitizer error; crash inputs land in build-fuzz/artifacts/.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build-fuzz"
cxx="${CXX_FUZZ:-clang++-16}"
cc="${CC_FUZZ:-clang-16}"

if ! command -v "$cxx" >/dev/null; then
  echo "run.sh: $cxx not found (apt-get install -y clang-16 libclang-rt-16-dev)" >&2
  exit 2
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" -DSLUICE_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_command fuzz_data fuzz_spool fuzz_dns fuzz_sasl fuzz_reply fuzz_maildrop fuzz_addresses fuzz_config fuzz_control fuzz_bs fuzz_dkim fuzz_sts fuzz_http fuzz_sts_cache fuzz_dane fuzz_tlsrpt fuzz_redis_url fuzz_http_request fuzz_api_request fuzz_webhook_store

work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/artifacts"

status=0
for target in command data spool dns sasl reply maildrop addresses config control bs dkim sts http sts_cache dane tlsrpt redis_url http_request api_request webhook_store; do
  corpus="$work/$target"
  mkdir -p "$corpus"
  cp -r "$here/corpus/$target/." "$corpus/"
  dict=()
  [[ -f "$here/$target.dict" ]] && dict=(-dict="$here/$target.dict")
  echo "== fuzz_$target for ${seconds}s ($(ls "$corpus" | wc -l) seeds)"
  if ! "$build/test/fuzz/fuzz_$target" "${dict[@]}" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$corpus" 2>"$work/$target.log"; then
    echo "!! fuzz_$target failed; log tail:" >&2
    tail -n 60 "$work/$target.log" >&2
    status=1
  else
    grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/$target.log" || true
  fi
done
exit "$status"
