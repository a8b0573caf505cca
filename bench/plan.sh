#!/usr/bin/env bash
# Planning at scale (DESIGN.md: "`allot check` / `plan` of 10,000 experiments ≤ 10 s, growing
# about linearly").
#
# Builds the release binary, writes configurations of N running experiments with
# bench/plan/gen.py (20 surfaces, two groups of 10 slots with members, a 1% holdout for all,
# a third of the experiments targeted on country directly or through segments), and times, for
# each N: `allot check` on an empty state (validation and a plan that draws every allocation),
# `allot apply`, then `allot plan` over the applied state (every experiment kept). Prints wall
# seconds and peak RSS per command. Everything it writes is removed on exit.
#
# Usage, from the repository root:  bash bench/plan.sh
# Environment: SIZES (default "1000 2000 5000 10000"), CARGO_TARGET_DIR as usual.
set -euo pipefail

SIZES=${SIZES:-1000 2000 5000 10000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need python3 "the configuration generator is a Python script"

bench_build
bench_workdir plan-bench
timed() { # LABEL COMMAND...: wall seconds and peak RSS of one run
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/out" 2>&1 || { cat "$WORK/out"; exit 1; }
  read -r secs kb < "$WORK/time"
  printf '   %-28s %6.2f s  %6d MB RSS\n' "$label" "$secs" $((kb / 1024))
}
for n in $SIZES; do
  dir="$WORK/n$n"
  mkdir -p "$dir"
  python3 bench/plan/gen.py "$n" > "$dir/allot.yaml"
  echo "== $n experiments (+20 group members), $(du -h "$dir/allot.yaml" | cut -f1)B of YAML"
  cd "$dir"
  timed "check (empty state)" "$BIN" check
  timed "apply (empty state)" "$BIN" apply
  timed "plan (over the applied state)" "$BIN" plan
  cd "$ROOT"
done
