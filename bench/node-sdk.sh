#!/usr/bin/env bash
# The Node SDK (sdks/node, release build) in process beside the Rust SDK on the same snapshot and
# an OFREP single-flag round trip on loopback, in one run: bench/lib.sh's 20 experiments served by
# `allot serve`; ns per evaluation of one flag and per flag of 20 (bench/node-sdk.cjs), the same
# from Rust (crates/allot-sdk/examples/evaluate_snapshot.rs), and the round trip from the same
# Node process. Targets (DESIGN.md): ≤ 2 µs per flag from Node, ≥ 50× cheaper than the round trip.
#   bash bench/node-sdk.sh            (ROUNDS=… overrides 5 timed rounds per figure)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need node "Node.js 18 or later"
need curl "the readiness check"
KEY=bench-admin-key-for-the-node-sdk-bench-01
PORT=${PORT:-18471}
# One cargo command for the three (the binary, the addon, the Rust side), so that their shared
# dependencies are built once, with the same features.
echo "== building allot, the addon (allot-node) and the Rust side, release"
cargo build --release --quiet -p allot-cli -p allot-node -p allot-sdk --bins --lib --examples
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$target_dir/release/allot"
ADDON="$target_dir/release/liballot_node.so"
[ -x "$BIN" ] && [ -f "$ADDON" ] || { echo "error: no $BIN or $ADDON" >&2; exit 1; }
bench_workdir node-sdk
bench_config values > "$WORK/allot.yaml"
bench_serve "$PORT" "$WORK/serve.log"
curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/snapshot" > "$WORK/snapshot.json"
echo "== load before: $(bench_load)"
rust=$("$target_dir/release/examples/evaluate_snapshot" "$WORK/snapshot.json" home-2)
node=$(ALLOT_NODE_ADDON="$ADDON" node bench/node-sdk.cjs "http://127.0.0.1:$PORT" "$KEY" "${ROUNDS:-5}")
echo "== load after: $(bench_load)"
echo "rust: $rust"
echo "node: $node"
r1=$(sed -n 's/.*"rust_one_flag_ns": *\([0-9.]*\).*/\1/p' <<< "$rust")
n1=$(sed -n 's/.*"node_one_flag_ns":\([0-9.]*\).*/\1/p' <<< "$node")
n20=$(sed -n 's/.*"node_20_flags_ns_per_flag":\([0-9.]*\).*/\1/p' <<< "$node")
nall=$(sed -n 's/.*"node_evaluate_all_20_ns_per_flag":\([0-9.]*\).*/\1/p' <<< "$node")
rt=$(sed -n 's/.*"ofrep_round_trip_ns":\([0-9.]*\).*/\1/p' <<< "$node")
awk -v r="$r1" -v n="$n1" -v n20="$n20" -v nall="$nall" -v rt="$rt" 'BEGIN {
  printf "Node, one flag: %d ns (target <= 2000); 20 flags: %d ns per flag (evaluate), %d ns per flag (evaluateAll)\n", n, n20, nall
  printf "Rust SDK, one flag: %d ns (the binding costs %d ns more)\n", r, n - r
  printf "OFREP round trip on loopback from Node: %d ns = %.0fx one in-process flag (target >= 50x)\n", rt, rt / n
}'
