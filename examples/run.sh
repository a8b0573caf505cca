#!/usr/bin/env bash
# Runs the README tour on the example configuration in a scratch directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target="${CARGO_TARGET_DIR:-$root/target}"
# The release binary when it is built and not older than the sources (faster); else a debug build.
if [ -x "$target/release/allot" ] && [ -z "$(find "$root/crates" -newer "$target/release/allot" -name '*.rs' -print -quit)" ]; then
  allot="$target/release/allot"
else
  cargo build -q --manifest-path "$root/Cargo.toml" -p allot-cli
  allot="$target/debug/allot"
fi
cp "$root/examples/allot.yaml" "$root/examples/units.jsonl" "$work/"
cd "$work"
"$allot" check
"$allot" plan
"$allot" apply
"$allot" assign --units units.jsonl
"$allot" audit
"$allot" history
"$allot" history --unit u1
"$allot" resalt --reason "example"
"$allot" assign --units units.jsonl --format csv
# The larger example.
cp "$root/examples/advanced.yaml" "$root/examples/advanced-units.jsonl" "$work/"
"$allot" -c advanced.yaml --state advanced.state.json apply
"$allot" -c advanced.yaml --state advanced.state.json assign --units advanced-units.jsonl
"$allot" -c advanced.yaml --state advanced.state.json audit
# Planning and analysis (docs/stats.md).
a="$root/examples/analysis"
"$allot" -c "$a/allot.yaml" capacity --traffic "$a/traffic.yaml"
"$allot" -c "$a/allot.yaml" analyze --exposures "$a/exposures.csv" --metrics "$a/metrics.csv" \
  --covariates "$a/covariates.csv" --identities "$a/identities.csv" --html "$work/report.html"
# Two sequential looks (the first on the first 800 exposures), bounds from the capacity plan.
head -n 801 "$a/exposures.csv" > "$work/early.csv"
for e in "$work/early.csv" "$a/exposures.csv"; do
  "$allot" -c "$a/allot.yaml" analyze --exposures "$e" --metrics "$a/metrics.csv" \
    --sequential pocock --traffic "$a/traffic.yaml" --planned-looks 4 --looks "$work/looks.json" > /dev/null
done
"$allot" -c "$a/allot.yaml" analyze --exposures "$a/exposures.csv" --metrics "$a/metrics.csv" \
  --sequential pocock --traffic "$a/traffic.yaml" --planned-looks 4 --looks "$work/looks.json" | sed -n '/^Sequential/,$p'
# Keep the report where it can be opened.
mkdir -p "$target/examples"
cp "$work/report.html" "$target/examples/report.html"
echo "report: $target/examples/report.html" >&2
