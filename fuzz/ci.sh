#!/usr/bin/env bash
# CI's short fuzzing run (fuzz/README.md): builds every target with nightly and runs each for
# ALLOT_FUZZ_SECONDS (default 15) on the committed corpus. A crash, a failed assertion, a hang
# past 10 s or 2 GB of memory fails the step. The committed corpus is only read: new inputs go
# to a scratch directory.
set -euo pipefail
cd "$(dirname "$0")"
secs="${ALLOT_FUZZ_SECONDS:-15}"
# 16 codegen units: the build is about twice as fast, the runs a little slower; no sanitizer
# (the code is safe Rust: `unsafe_code = "forbid"`), so no ASan build either.
flags=(-s none --codegen-units 16)
cargo +nightly fuzz build "${flags[@]}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in $(cargo +nightly fuzz list); do
  mkdir -p "$scratch/$t" "corpus/$t"
  echo "fuzz: $t for ${secs}s on $(ls "corpus/$t" | wc -l) corpus inputs"
  cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2> "$scratch/$t.log" \
    || { tail -n 60 "$scratch/$t.log"; echo "fuzz: $t FAILED (the crashing input is in fuzz/artifacts/$t/)"; exit 1; }
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$scratch/$t.log" | tr '\n' ' '
  echo
done
