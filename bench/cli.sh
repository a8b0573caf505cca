#!/usr/bin/env bash
# End-to-end bulk assignment benchmark of the `allot` CLI (DESIGN.md: "bulk assignment, 1M units ×
# 20 experiments, CLI end to end ≤ 5 s wall").
#
# Builds the release binary, writes a configuration with 20 running experiments (two surfaces, a
# holdout, a mutual exclusion group, targeting on country) and 1,000,000 unit contexts (JSON lines
# with user_id and country) into a temporary directory, runs `allot apply`, then times
# `allot assign --units FILE > /dev/null` in JSON lines and in CSV. Prints wall seconds and
# maximum resident set size per run. Everything it writes is removed on exit.
#
# Usage, from the repository root:  bash bench/cli.sh
# Environment: UNITS (default 1000000), RUNS per format (default 3), CARGO_TARGET_DIR as usual.
set -euo pipefail

UNITS=${UNITS:-1000000}
RUNS=${RUNS:-3}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_build
bench_workdir cli-bench
bench_config > "$WORK/allot.yaml"

echo "== generating $UNITS unit contexts"
awk -v n="$UNITS" 'BEGIN {
  srand(42); split("SE NO DK US DE FR GB", c, " ");
  for (i = 0; i < n; i++) printf "{\"user_id\":\"u%09d%04x\",\"country\":\"%s\"}\n", i, int(rand() * 65536), c[1 + int(rand() * 7)]
}' > "$WORK/units.jsonl"
echo "   $(wc -l < "$WORK/units.jsonl") lines, $(du -h "$WORK/units.jsonl" | cut -f1)B, e.g. $(head -n 1 "$WORK/units.jsonl")"

echo "== allot apply (20 running experiments)"
"$BIN" -c "$WORK/allot.yaml" apply > "$WORK/apply.txt"
# Sanity: a small sample assigns one line per unit, with every experiment in it.
head -n 1000 "$WORK/units.jsonl" | "$BIN" -c "$WORK/allot.yaml" assign > "$WORK/sample.jsonl"
[ "$(wc -l < "$WORK/sample.jsonl")" -eq 1000 ] || { echo "error: sample assignment is not 1000 lines" >&2; exit 1; }
[ "$(head -n 1 "$WORK/sample.jsonl" | grep -o '"reason"' | wc -l)" -eq 20 ] || { echo "error: not 20 experiments" >&2; exit 1; }
echo "   reasons over the first 1000 units:" $(grep -o '"reason":"[A-Z_]*"' "$WORK/sample.jsonl" | cut -d'"' -f4 | sort | uniq -c | sort -rn | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')

# Runs "$@" with stdout to /dev/null; prints "<wall s> <max RSS MB> <user+sys CPU s>" (? when
# /usr/bin/time is missing).
measure() {
  if [ -x /usr/bin/time ] && /usr/bin/time -v true 2> /dev/null; then
    /usr/bin/time -v -o "$WORK/time.txt" "$@" > /dev/null
    awk -F': ' '
      /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
      /Maximum resident set size/ { rss = $2 / 1024 }
      /User time \(seconds\)|System time \(seconds\)/ { cpu += $2 }
      END { printf "%.2f %.1f %.2f\n", s, rss, cpu }' "$WORK/time.txt"
  else
    local t0 t1
    t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f ? ?\n", b - a }'
  fi
}

echo "== allot assign, $UNITS units x 20 experiments, $RUNS run(s) per format ($(nproc) cores)"
for format in jsonl csv; do
  walls=()
  for r in $(seq 1 "$RUNS"); do
    read -r wall rss cpu < <(measure "$BIN" -c "$WORK/allot.yaml" assign --units "$WORK/units.jsonl" --format "$format")
    printf '%-5s run %d: %6.2f s wall, %s s CPU, max RSS %s MB\n' "$format" "$r" "$wall" "$cpu" "$rss"
    walls+=("$wall")
  done
  median=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  verdict=$(awk -v m="$median" 'BEGIN { print (m <= 5.0) ? "met" : "MISSED" }')
  printf '%-5s median: %.2f s wall (target for 1M units <= 5 s: %s)\n' "$format" "$median" "$verdict"
done
