#!/usr/bin/env bash
# CI's short fuzzing run (fuzz/README.md): builds every target once with nightly, then runs each
# target's binary directly for ALLOT_FUZZ_SECONDS (default 10) on the committed corpus, two
# targets at a time (ALLOT_FUZZ_JOBS, default 2: the machine's cores). A crash, a failed
# assertion, a hang past 10 s or 2 GB of memory fails the step. The committed corpus is only
# read: new inputs go to a scratch directory.
#
# The binaries are run without `cargo fuzz run`, which checks the build again before every
# target; the flags it would pass are passed here (`-artifact_prefix`, the corpus directories).
set -euo pipefail
cd "$(dirname "$0")"
secs="${ALLOT_FUZZ_SECONDS:-10}"
jobs="${ALLOT_FUZZ_JOBS:-2}"
# 16 codegen units: the build is about twice as fast, the runs a little slower; no sanitizer
# (the code is safe Rust: `unsafe_code = "forbid"`), so no ASan build either.
# The build goes to ALLOT_FUZZ_TARGET_DIR (default fuzz/target, which CI keeps: a fresh clone
# builds every dependency with coverage once).
target_dir="${ALLOT_FUZZ_TARGET_DIR:-target}"
flags=(-s none --codegen-units 16)
cargo +nightly fuzz build "${flags[@]}" --target-dir "$target_dir"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$target_dir/$triple/release"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
targets=($(cargo +nightly fuzz list))
[ -x "$bin/${targets[0]}" ] || { echo "fuzz: no binary $bin/${targets[0]} after the build"; exit 1; }
# One target: its binary on a scratch directory (new inputs) and the corpus (read only).
run() {
  local t="$1"
  mkdir -p "$scratch/$t" "corpus/$t" "artifacts/$t"
  if "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 "$scratch/$t" "corpus/$t" 2> "$scratch/$t.log"; then
    echo "fuzz: $t ${secs}s on $(ls "corpus/$t" | wc -l) corpus inputs:" \
      $(grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$scratch/$t.log" | tr '\n' ' ')
  else
    tail -n 60 "$scratch/$t.log"
    echo "fuzz: $t FAILED (the crashing input is in fuzz/artifacts/$t/)"
    return 1
  fi
}
failed=0
pids=()
for t in "${targets[@]}"; do
  run "$t" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do
  wait "$p" || failed=1
done
[ "$failed" = 0 ] || { echo "fuzz: a target failed"; exit 1; }
echo "fuzz: ${#targets[@]} targets passed"
