#!/usr/bin/env bash
# The memory of a preview of the largest configuration the service accepts (issue 14: previews
# run with a time and memory budget; allot bounds memory by construction — 4 MB bodies, 10,000
# targeting nodes with segments inlined, segments shared, compact bucket sets — and this
# measures the bound instead of extrapolating it).
#
# Builds the release binary, starts `allot serve` (SQLite) over the 20-experiment benchmark
# configuration, and POSTs to /api/v1/changes/preview a configuration of N running experiments
# from bench/plan/gen.py (default 33,000: 3.9 MB, just under the 4 MB body limit), twice:
#  1. with a plan budget long enough for the preview to finish (--plan-budget-ms 600000): the
#     server's peak RSS (VmHWM) before and after, the wall time, the status;
#  2. with the default 10 s budget on a second server: it answers 503 PLAN_TIMEOUT, the plan
#     finishes in the background on the one planner; the peak RSS is the same bound, and
#     evaluation (GET /healthz, an OFREP evaluation) keeps answering meanwhile.
# Then a body just over 4 MB, refused with 413 without growing memory.
#
# Usage, from the repository root:  bash bench/preview-memory.sh [N]
set -euo pipefail
N=${1:-33000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need python3 "the configuration generator is a Python script"
need curl "requests go through curl"
KEY=bench-admin-key-for-the-preview-memory-bench-01

bench_build
bench_workdir preview-memory
bench_config values > "$WORK/allot.yaml"
python3 bench/plan/gen.py "$N" > "$WORK/big.yaml"
bytes=$(wc -c < "$WORK/big.yaml")
echo "== a configuration of $N experiments: $bytes bytes (the body limit is 4,194,304)"
hwm() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }
preview() { # PORT: status and seconds of one preview of big.yaml
  curl -s -o "$WORK/preview.json" -w '%{http_code} %{time_total}\n' -X POST \
    -H "authorization: Bearer $KEY" -H 'content-type: application/yaml' \
    --data-binary @"$WORK/big.yaml" "http://127.0.0.1:$1/api/v1/changes/preview"
}

bench_serve 18931 "$WORK/serve1.log" --plan-budget-ms 600000
echo "   before: peak RSS $(hwm "$SERVER_PID") MB"
read -r code secs < <(preview 18931)
echo "   preview with a budget it fits in: HTTP $code in ${secs} s; peak RSS $(hwm "$SERVER_PID") MB, now $(rss "$SERVER_PID") MB"
[ "$code" = 200 ] || { head -c 400 "$WORK/preview.json"; echo; }
kill "$SERVER_PID"; wait "$SERVER_PID" 2> /dev/null || true

mkdir -p "$WORK/b" && cp "$WORK/allot.yaml" "$WORK/b/" && WORK="$WORK/b" bench_serve 18932 "$WORK/serve2.log"
echo "   before: peak RSS $(hwm "$SERVER_PID") MB"
read -r code secs < <(preview 18932)
echo "   preview with the default 10 s budget: HTTP $code in ${secs} s ($(head -c 120 "$WORK/preview.json"))"
health=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' http://127.0.0.1:18932/healthz)
ofrep=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST -H "authorization: Bearer $KEY" \
  -H 'content-type: application/json' -d '{"context": {"targetingKey": "u1"}}' \
  http://127.0.0.1:18932/ofrep/v1/evaluate/flags/home-1)
echo "   while the plan runs on: /healthz $health s, OFREP evaluation $ofrep s"
# The planner is free again when a small preview gets it (each try waits up to the budget).
for _ in $(seq 1 60); do
  small=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $KEY" \
    -H 'content-type: application/yaml' --data-binary @"$WORK/allot.yaml" \
    http://127.0.0.1:18932/api/v1/changes/preview)
  [ "$small" = 200 ] && break
done
echo "   after the plan finished in the background: peak RSS $(hwm "$SERVER_PID") MB, now $(rss "$SERVER_PID") MB"
head -c 4194400 /dev/zero | tr '\0' ' ' > "$WORK/over.yaml"
over=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $KEY" -H 'content-type: application/yaml' \
  --data-binary @"$WORK/over.yaml" http://127.0.0.1:18932/api/v1/changes/preview)
echo "   a body over 4 MB: HTTP $over; peak RSS $(hwm "$SERVER_PID") MB"
