#!/usr/bin/env bash
# Load benchmark of `allot serve` over loopback with wrk (DESIGN.md: "OFREP single-flag evaluation
# over HTTP on loopback ≥ 30,000 req/s, p99 ≤ 5 ms").
#
# Builds the release binary, starts `allot serve` on a fresh SQLite store in a temporary directory
# with the 20-experiment configuration of bench/lib.sh, then drives three endpoints with wrk, each
# request for a different random unit:
#   - OFREP single flag:   POST /ofrep/v1/evaluate/flags/home-2
#   - OFREP bulk:          POST /ofrep/v1/evaluate/flags   (all 20 flags)
#   - allot evaluate:      POST /api/v1/evaluate           (all 20 experiments)
# and prints requests/s and p99 latency for each. Not run by CI (.ci/run).
#
# Usage, from the repository root:  bash bench/http.sh
# Environment: DURATION (default 10s), CONNECTIONS (default 64), THREADS (wrk threads, default 2),
#              PORT (default 18181), CARGO_TARGET_DIR as usual. Needs `wrk` (apt-get install wrk).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18181}
KEY=bench-admin-key-0123456789abcdef0123
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"

bench_build
bench_workdir http-bench
bench_config values > "$WORK/allot.yaml"
bench_serve "$PORT" "$WORK/serve.log"

# One wrk Lua script per endpoint: POST, a random unit per request.
script() { # path, body prefix, body suffix
  cat > "$WORK/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
local countries = {"SE", "NO", "DK", "US", "DE"}
request = function()
  local body = '$3' .. "u" .. math.random(1, 100000000) .. '", "country": "' .. countries[math.random(1, 5)] .. '"}}'
  return wrk.format(nil, "$2", nil, body)
end
LUA
}
script single /ofrep/v1/evaluate/flags/home-2 '{"context": {"targetingKey": "'
script bulk /ofrep/v1/evaluate/flags '{"context": {"targetingKey": "'
script evaluate /api/v1/evaluate '{"context": {"user_id": "'

# Sanity: each endpoint answers 200.
for p in /ofrep/v1/evaluate/flags/home-2 /ofrep/v1/evaluate/flags; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -d '{"context": {"targetingKey": "u1", "country": "SE"}}' "http://127.0.0.1:$PORT$p")
  [ "$code" = 200 ] || { echo "error: $p answered $code" >&2; exit 1; }
done
n=$(curl -s -H "Authorization: Bearer $KEY" -d '{"context": {"targetingKey": "u1"}}' "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags" | grep -o '"key"' | wc -l)
[ "$n" -eq 20 ] || { echo "error: bulk returned $n flags, not 20" >&2; exit 1; }

printf '\n%-34s %12s %10s %10s\n' "endpoint ($CONNECTIONS conns, $DURATION)" "requests/s" "p50" "p99"
for name in single bulk evaluate; do
  case $name in
    single) label="OFREP single flag" ;;
    bulk) label="OFREP bulk (20 flags)" ;;
    evaluate) label="/api/v1/evaluate (20 exps)" ;;
  esac
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/$name.lua" "http://127.0.0.1:$PORT" > "$WORK/$name.txt"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.txt")
  errors=$(grep -E 'Non-2xx|Socket errors' "$WORK/$name.txt" || true)
  printf '%-34s %12s %10s %10s %s\n' "$label" "$rps" "$p50" "$p99" "$errors"
done
echo
echo "target (DESIGN.md): OFREP single flag >= 30,000 req/s with p99 <= 5 ms on this machine"
