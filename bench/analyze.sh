#!/usr/bin/env bash
# Scale check of `allot analyze` (issue 4, item 6): 10 million exposure rows.
# Generates 5,000,000 units, each exposed to 2 of 4 experiments (10M exposure rows), one metric
# row and one covariate row per unit, then times the analysis and reports the maximum RSS.
# Usage: bench/analyze.sh [ROWS]   (needs awk and GNU time; builds the release binary)
set -euo pipefail
ROWS=${1:-10000000}
UNITS=$((ROWS / 2))
DIR=${BENCH_DIR:-/tmp/allot-bench-analyze}
mkdir -p "$DIR"
cd "$(dirname "$0")/.."
cargo build --release -p allot-cli --quiet
BIN=$(realpath "${CARGO_TARGET_DIR:-target}/release/allot")
if [ ! -s "$DIR/exposures-$ROWS.csv" ]; then
  echo "generating $ROWS exposure rows in $DIR ..." >&2
  awk -v n="$UNITS" -v dir="$DIR" -v rows="$ROWS" 'BEGIN {
    srand(42);
    e = dir "/exposures-" rows ".csv"; m = dir "/metrics-" rows ".csv"; c = dir "/covariates-" rows ".csv";
    print "unit,experiment,variant,timestamp" > e; print "unit,metric,value" > m; print "unit,metric,value" > c;
    split("home-a home-b search-a search-b", X, " ");
    for (i = 0; i < n; i++) {
      u = "u" i; h = (rand() < 0.5) ? 1 : 2; s = (rand() < 0.5) ? 3 : 4;
      vh = (rand() < 0.5) ? "control" : "treatment"; vs = (rand() < 0.5) ? "control" : "treatment";
      t = 1763700000 + int(rand() * 86400);
      print u "," X[h] "," vh "," t > e; print u "," X[s] "," vs "," t + 60 > e;
      x = 5 + 2 * rand(); y = 0.8 * x + rand() + (vh == "treatment" ? 0.05 : 0);
      printf "%s,revenue,%.4f\n", u, y > m; printf "%s,revenue,%.4f\n", u, x > c;
    }
  }'
fi
ls -la "$DIR"/*-"$ROWS".csv >&2
# No allot.yaml in $DIR: analysed without a configuration (even split, no exclusivity check).
cd "$DIR"
/usr/bin/time -v "$BIN" analyze \
  --exposures "$DIR/exposures-$ROWS.csv" --metrics "$DIR/metrics-$ROWS.csv" --covariates "$DIR/covariates-$ROWS.csv" \
  --format json > "$DIR/report.json" 2> "$DIR/time.txt" || { cat "$DIR/time.txt" >&2; exit 1; }
grep -E "Elapsed \(wall|Maximum resident" "$DIR/time.txt"
