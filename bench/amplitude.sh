#!/usr/bin/env bash
# allot's Amplitude adapter beside Amplitude's own engine, in the same run, on the same work:
# every flag of spec/amplitude/generated-cases.json over its contexts (31,800 flag evaluations a
# round). allot: the `amplitude_evaluate` criterion bench (its "ns per flag on CPU" line); the
# engine: bench/amplitude-oracle.mjs under Node (@amplitude/experiment-core, pinned as in
# .ci/run). Prints both figures and the ratio.
#   bash bench/amplitude.sh [NODE_MODULES_DIR]   (default: installs the engine into target/)
set -euo pipefail
cd "$(dirname "$0")/.."
modules="${1:-${ALLOT_AMPLITUDE_NODE_MODULES:-}}"
if [ -z "$modules" ]; then
  npm install --silent --no-audit --no-fund --prefix target/amplitude-oracle @amplitude/experiment-core@0.13.6 > /dev/null
  modules="$(cd target/amplitude-oracle/node_modules && pwd)"
fi
allot=$(cargo bench -q -p allot-compat --bench compat -- --warm-up-time 1 --measurement-time 3 amplitude_evaluate 2>/dev/null \
  | sed -n 's/^amplitude_evaluate: \([0-9.]*\) ns per flag on CPU.*/\1/p' | head -1)
engine=$(node bench/amplitude-oracle.mjs "$modules" 50)
echo "allot adapter: ${allot} ns per flag on CPU"
echo "Amplitude's engine: ${engine}"
cpu=$(sed -n 's/.*"cpu_ns_per_flag":\([0-9.]*\).*/\1/p' <<< "$engine")
awk -v a="$allot" -v e="$cpu" 'BEGIN { if (a > 0) printf "the engine costs %.1fx allot per flag (CPU)\n", e / a }'
