# shellcheck shell=bash
# Shared by bench/cli.sh, bench/http.sh and bench/exposures.sh; sourced, not run:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Sourcing it changes to the repository root (ROOT) and installs an EXIT trap that runs the
# commands registered with `at_exit`, last registered first.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

# --- cleanup ---------------------------------------------------------------------------------
BENCH_AT_EXIT=()
# at_exit COMMAND...: run COMMAND (as one shell string) on exit; failures are ignored.
at_exit() { BENCH_AT_EXIT+=("$*"); }
bench_cleanup() {
  local i
  for ((i = ${#BENCH_AT_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${BENCH_AT_EXIT[i]}" || true
  done
  BENCH_AT_EXIT=()
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# need COMMAND HINT: fail clearly when COMMAND is missing.
need() { command -v "$1" > /dev/null || { echo "error: $1 is not installed ($2)" >&2; exit 1; }; }

# bench_workdir NAME: a temporary directory in WORK, removed on exit.
bench_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/allot-$1.XXXXXX")
  at_exit "rm -rf '$WORK'"
}

# --- the binary ------------------------------------------------------------------------------
# bench_build: builds the release `allot` and sets BIN (honours CARGO_TARGET_DIR).
bench_build() {
  echo "== building the release binary"
  cargo build --release --quiet -p allot-cli
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  BIN="$target_dir/release/allot"
  [ -x "$BIN" ] || { echo "error: no binary at $BIN" >&2; exit 1; }
}

# --- the configuration -----------------------------------------------------------------------
# bench_config [values]: prints the 20 running experiments of the benchmarks: 8 on `home` (under
# a 5% holdout), 8 on `search`, 4 in a 4-slot mutual exclusion group, some targeting on country.
# Experiments and variants: home-1..8 (control, treatment), search-1..8 (control, a, b),
# checkout-1..4 (control, treatment). With `values`, the home-* variants carry boolean values
# (false, true) so that they serve as boolean OFREP flags; otherwise the value is the name. With
# STICKY=1 in the environment, the 4 checkout-* experiments are sticky (evaluation then reads and
# writes the unit's sticky assignments in the store).
bench_config() {
  local home_variants='{control: 1, treatment: 1}'
  [ "${1:-}" = values ] && home_variants='{control: {weight: 1, value: false}, treatment: {weight: 1, value: true}}'
  local sticky=''
  [ "${STICKY:-0}" = 1 ] && sticky='    sticky: true\n'
  cat <<'YAML'
units:
  user: {attribute: user_id}
surfaces: [home, search]
holdouts:
  home-holdback: {unit: user, share: 5%, applies_to: [home]}
groups:
  checkout: {unit: user, share: 40%, slots: [25%, 25%, 25%, 25%]}
experiments:
YAML
  local i
  for i in $(seq 1 8); do
    printf '  home-%d:\n    unit: user\n    surfaces: [home]\n    share: 10%%\n    variants: %s\n    state: running\n' "$i" "$home_variants"
    if [ $((i % 2)) -eq 0 ]; then printf '    targeting: {attribute: country, in: [SE, NO, DK]}\n'; fi
    printf '  search-%d:\n    unit: user\n    surfaces: [search]\n    share: 12%%\n    variants: {control: 1, a: 1, b: 1}\n    state: running\n' "$i"
    if [ $((i % 3)) -eq 0 ]; then printf '    targeting: {attribute: country, not_in: [US]}\n'; fi
  done
  for i in 1 2 3 4; do
    printf '  checkout-%d:\n    unit: user\n    group: checkout\n    slots: [%d]\n    variants: {control: 1, treatment: 1}\n'"$sticky"'    state: running\n' "$i" "$i"
  done
}

# --- the server ------------------------------------------------------------------------------
# bench_serve PORT LOG [serve options...]: starts `$BIN serve --config allot.yaml` in $WORK on
# 127.0.0.1:PORT with ALLOT_BOOTSTRAP_ADMIN_KEY=$KEY, stopped on exit; sets SERVER_PID; returns
# when /readyz answers (or fails with the log).
bench_serve() {
  local port=$1 log=$2
  shift 2
  echo "== starting allot serve on 127.0.0.1:$port"
  (cd "$WORK" && ALLOT_BOOTSTRAP_ADMIN_KEY=$KEY RUST_LOG=warn exec "$BIN" serve --config allot.yaml --listen "127.0.0.1:$port" "$@" 2> "$log") &
  SERVER_PID=$!
  at_exit "kill $SERVER_PID 2> /dev/null && wait $SERVER_PID 2> /dev/null"
  bench_wait_ready "$port" "$log"
}

# bench_wait_ready PORT LOG: waits up to 30 s for GET /readyz; on failure prints LOG and exits.
bench_wait_ready() {
  local _
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$1/readyz" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "error: allot serve on port $1 is not ready after 30 s; its log:" >&2
  cat "$2" >&2
  exit 1
}

# bench_load: the load average, "1-min 5-min 15-min".
bench_load() { cut -d' ' -f1-3 /proc/loadavg; }
