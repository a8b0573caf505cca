#!/usr/bin/env bash
# Load benchmark of `allot serve` over loopback with wrk (DESIGN.md: "OFREP single-flag evaluation
# over HTTP on loopback ≥ 30,000 req/s, p99 ≤ 5 ms").
#
# Builds the release binary, starts `allot serve` on a fresh SQLite store in a temporary directory
# with the 20-experiment configuration of bench/cli.sh, then drives three endpoints with wrk, each
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
KEY=bench-admin-key
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v wrk > /dev/null || { echo "error: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

echo "== building the release binary"
cargo build --release --quiet -p allot-cli
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release/allot"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/allot-http-bench.XXXXXX")
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

{
  cat <<'YAML'
units:
  user: {attribute: user_id}
surfaces: [home, search]
holdouts:
  home-holdback: {unit: user, share: 5%, applies_to: [home]}
groups:
  checkout: {unit: user, share: 40%, slots: [25%, 25%, 25%, 25%]}
experiments:
YAML
  for i in $(seq 1 8); do
    printf '  home-%d:\n    unit: user\n    surfaces: [home]\n    share: 10%%\n    variants: {control: {weight: 1, value: false}, treatment: {weight: 1, value: true}}\n    state: running\n' "$i"
    if [ $((i % 2)) -eq 0 ]; then printf '    targeting: {attribute: country, in: [SE, NO, DK]}\n'; fi
    printf '  search-%d:\n    unit: user\n    surfaces: [search]\n    share: 12%%\n    variants: {control: 1, a: 1, b: 1}\n    state: running\n' "$i"
    if [ $((i % 3)) -eq 0 ]; then printf '    targeting: {attribute: country, not_in: [US]}\n'; fi
  done
  for i in 1 2 3 4; do
    printf '  checkout-%d:\n    unit: user\n    group: checkout\n    slots: [%d]\n    variants: {control: 1, treatment: 1}\n    state: running\n' "$i" "$i"
  done
} > "$WORK/allot.yaml"

echo "== starting allot serve on 127.0.0.1:$PORT"
(cd "$WORK" && ALLOT_BOOTSTRAP_ADMIN_KEY=$KEY RUST_LOG=warn exec "$BIN" serve --config allot.yaml --listen "127.0.0.1:$PORT" 2> "$WORK/serve.log") &
SERVER=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null || { cat "$WORK/serve.log" >&2; exit 1; }

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
