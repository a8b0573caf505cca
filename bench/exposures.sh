#!/usr/bin/env bash
# Exposure intake into PostgreSQL over HTTP, per node (issue 6: "≥ 20,000 exposures/s per node").
#
# Builds the release binary, creates a fresh schema in DATABASE_URL, starts `allot serve` on it
# with the 20-experiment configuration of bench/lib.sh, waits for /readyz, then drives with wrk:
#   - POST /api/v1/exposures: each request a batch of BATCH new exposures (every unit id is new:
#     run, node, wrk thread and a counter; experiments and variants from the configuration);
#   - POST /api/v1/evaluate with "log_exposures": true: a new unit per request, all 20
#     experiments; every assignment with a variant is an exposure (about 1.9 per request).
# The figure that counts is exposures landed in PostgreSQL per second: the growth of
# `SELECT count(*) FROM <schema>.exposures` over the run divided by wrk's measured duration. When
# rows are still arriving after wrk stops (a node that writes after answering), the count is
# polled until it stops changing and that drain time is added to the duration. Also printed:
# requests/s, p50/p99 latency, non-2xx responses and socket errors, and the exposures the nodes
# acknowledged (sum of "new" in the answers; for evaluate, the assignments with a variant). The
# run fails (exit 1, after the table) on any non-2xx or socket error, on more exposures
# acknowledged than landed (requests in flight when wrk stops may land unacknowledged, not the
# other way round), or on exposures a node reports buffered or dropped in /metrics
# (allot_exposures_buffered, allot_exposures_dropped_total). Warnings in the node logs are
# summarised at the end.
# With TWO_NODES=1, a second node is then started on the same schema and both nodes are driven at
# once (one wrk per node), to check whether the per-node figure holds with two nodes.
# Each measurement is run RUNS times; the median is compared with the target. The servers are
# stopped and the schema dropped on exit (also on failure or Ctrl-C). Uses only the HTTP API
# and the row count. Not run by CI (.ci/run).
#
# Usage, from the repository root:  bash bench/exposures.sh
# Environment: DURATION (default 10s), CONNECTIONS (per node, default 32), THREADS (wrk threads
#   per node, default 2), PORT (default 18281; the second node PORT+1), BATCH (exposures per
#   request, default 100, at most 1000), RUNS (default 3), WARMUP (default 2s; 0 to skip),
#   TWO_NODES (default 0), ENDPOINTS (default "exposures evaluate"), STICKY (1: the 4 checkout
#   experiments are sticky, so evaluate also reads and writes sticky assignments), DATABASE_URL (default
#   postgres://postgres@127.0.0.1:5432/test; the role needs CREATE on the database),
#   CARGO_TARGET_DIR as usual. Needs wrk, psql and curl.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18281}
BATCH=${BATCH:-100}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-2s}
TWO_NODES=${TWO_NODES:-0}
ENDPOINTS=${ENDPOINTS:-exposures evaluate}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
TARGET=20000
KEY=bench-admin-key-0123456789abcdef0123
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk "apt-get install -y wrk"
need psql "apt-get install -y postgresql-client"
need curl "apt-get install -y curl"
for e in $ENDPOINTS; do
  case $e in exposures | evaluate) ;; *) echo "error: ENDPOINTS: 'exposures' and/or 'evaluate', not '$e'" >&2; exit 1 ;; esac
done
if ! [[ "$BATCH" =~ ^[0-9]+$ ]] || [ "$BATCH" -lt 1 ] || [ "$BATCH" -gt 1000 ]; then
  echo "error: BATCH must be 1..1000 (the most one POST /api/v1/exposures takes), not $BATCH" >&2
  exit 1
fi

sql() { psql -X -At -v ON_ERROR_STOP=1 -q -c "$1" "$DATABASE_URL"; }
if ! err=$(sql 'select 1' 2>&1); then
  echo "error: PostgreSQL is not reachable at $DATABASE_URL: $err" >&2
  exit 1
fi

bench_build
bench_workdir exposures-bench
bench_config > "$WORK/allot.yaml"

SCHEMA=allot_bench_$(date +%Y%m%d%H%M%S)_$$
case $DATABASE_URL in *\?*) NODE_URL="$DATABASE_URL&schema=$SCHEMA" ;; *) NODE_URL="$DATABASE_URL?schema=$SCHEMA" ;; esac
at_exit "sql 'drop schema if exists $SCHEMA cascade' > /dev/null 2>&1"   # runs after the servers stop
echo "== schema $SCHEMA (dropped on exit)"
bench_serve "$PORT" "$WORK/node1.log" --database-url "$NODE_URL"
NODE_PIDS=("$SERVER_PID")
count() { sql "select count(*) from $SCHEMA.exposures"; }

# Sanity: both endpoints answer 200 and their exposures reach the table.
post() { # path body -> the answer; fails on a status other than 200
  local code
  code=$(curl -s -o "$WORK/answer" -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$2" "http://127.0.0.1:$PORT$1")
  [ "$code" = 200 ] || { echo "error: POST $1 answered $code: $(cat "$WORK/answer")" >&2; exit 1; }
  cat "$WORK/answer"
}
before=$(count)
answer=$(post /api/v1/exposures '{"exposures": [{"unit": "sanity-1", "experiment": "home-1", "variant": "control"}, {"unit": "sanity-1", "experiment": "search-1", "variant": "b"}]}')
[ "$answer" = '{"received":2,"new":2}' ] || { echo "error: POST /api/v1/exposures answered $answer" >&2; exit 1; }
answer=$(post /api/v1/evaluate '{"context": {"user_id": "sanity-2", "country": "SE"}, "log_exposures": true}')
variants=$(grep -o '"variant":"' <<< "$answer" | wc -l)
[ "$(grep -o '"reason"' <<< "$answer" | wc -l)" -eq 20 ] || { echo "error: evaluate did not answer 20 experiments" >&2; exit 1; }
for _ in $(seq 1 50); do [ "$(count)" -eq $((before + 2 + variants)) ] && break; sleep 0.1; done
[ "$(count)" -eq $((before + 2 + variants)) ] ||
  { echo "error: expected $((before + 2 + variants)) exposure rows after the sanity requests, found $(count)" >&2; exit 1; }

# The wrk scripts. Unit ids: "<prefix>-<wrk thread>-<counter>", the prefix "m<measurement>n<node>"
# (warm-up: "w<script><port>"), so that in the fresh schema every exposure is new. done() prints
# the exposures the answers acknowledged.
common_lua() { # path
  cat <<LUA
wrk.method = "POST"
wrk.path = "$1"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end
prefix, n, acked = "", 0, 0
function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("acked") or 0) end
  io.write(string.format("acknowledged %d\n", total))
end
LUA
}
{
  common_lua /api/v1/exposures
  cat <<LUA
local experiments = {}
for i = 1, 8 do
  experiments[#experiments + 1] = {"home-" .. i, {"control", "treatment"}}
  experiments[#experiments + 1] = {"search-" .. i, {"control", "a", "b"}}
end
for i = 1, 4 do experiments[#experiments + 1] = {"checkout-" .. i, {"control", "treatment"}} end
local parts = {}
function request()
  for i = 1, $BATCH do
    n = n + 1
    local e = experiments[n % #experiments + 1]
    parts[i] = '{"unit":"' .. prefix .. n .. '","experiment":"' .. e[1] .. '","variant":"' .. e[2][math.random(#e[2])] .. '"}'
  end
  return wrk.format(nil, nil, nil, '{"exposures":[' .. table.concat(parts, ",") .. ']}')
end
function response(status, headers, body)
  if status == 200 then acked = acked + (tonumber(body:match('"new"%s*:%s*(%d+)')) or 0) end
end
LUA
} > "$WORK/exposures.lua"
{
  common_lua /api/v1/evaluate
  cat <<'LUA'
local countries = {"SE", "NO", "DK", "US", "DE"}
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"context":{"user_id":"' .. prefix .. n .. '","country":"' .. countries[n % 5 + 1] .. '"},"log_exposures":true}')
end
function response(status, headers, body)
  if status == 200 then
    local _, k = body:gsub('"variant":"', "")
    acked = acked + k
  end
end
LUA
} > "$WORK/evaluate.lua"

# wrk's durations ("10.00s", "850.00ms", "1.00m") in seconds.
seconds() { awk -v t="$1" 'BEGIN { v = t + 0; if (t ~ /us$/) v /= 1e6; else if (t ~ /ms$/) v /= 1e3; else if (t ~ /m$/) v *= 60; else if (t ~ /h$/) v *= 3600; print v }'; }
# wrk_field FILE WHAT
wrk_field() {
  case $2 in
    rps) awk '/^Requests\/sec/ {print $2}' "$1" ;;
    p50) awk '$1 == "50%" {print $2}' "$1" ;;
    p99) awk '$1 == "99%" {print $2}' "$1" ;;
    duration) seconds "$(awk '/requests in/ {sub(",", "", $4); print $4}' "$1")" ;;
    non2xx) awk '/Non-2xx/ {print $NF}' "$1" | grep . || echo 0 ;;
    sockerr) awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$1" | grep . || echo 0 ;;
    acked) awk '/^acknowledged/ {print $2}' "$1" ;;
  esac
}

# measure LABEL SCRIPT RUN PORT...: one wrk per port, at once; waits for the rows to stop arriving;
# prints a row of the table and appends it to $WORK/rows (the last field: landed/s per node).
FAILED=0
SEQ=0
TCK=$(getconf CLK_TCK)
# cpu_ticks PID...: user + system CPU ticks used so far by these processes.
cpu_ticks() { local p; for p in "$@"; do cat "/proc/$p/stat" 2> /dev/null; done | awk '{ s += $14 + $15 } END { print s + 0 }'; }
# pg_ticks: "pid ticks" for each process of the local PostgreSQL (none when it runs elsewhere:
# its column is then 0). pg_cpu BEFORE AFTER: seconds used by the processes found in both.
pg_ticks() { local p; for p in $(pgrep -x postgres || true); do awk -v p="$p" '{ print p, $14 + $15 }' "/proc/$p/stat" 2> /dev/null || true; done; }
pg_cpu() { awk -v t="$TCK" 'NR == FNR { a[$1] = $2; next } $1 in a { s += $2 - a[$1] } END { print s / t }' "$1" "$2"; }
# metric PORT NAME: a value from the node's /metrics.
metric() { curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
measure() {
  local label=$1 script=$2 run=$3
  shift 3
  local ports=("$@") nodes=$# load c0 c1 c2 t0 t_end t_last now pids=() i out n0 n1
  SEQ=$((SEQ + 1))
  load=$(bench_load)
  c0=$(count)
  n0=$(cpu_ticks "${NODE_PIDS[@]}"); pg_ticks > "$WORK/pg0"; t0=$(date +%s.%N)
  for i in "${!ports[@]}"; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/$script.lua" "http://127.0.0.1:${ports[i]}" \
      -- "m${SEQ}n$i" > "$WORK/wrk-$i.txt" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  t_end=$(date +%s.%N); n1=$(cpu_ticks "${NODE_PIDS[@]}"); pg_ticks > "$WORK/pg1"
  # Rows still arriving after wrk stopped: poll until the count holds for 0.5 s (at most 60 s).
  c1=$(count); t_last=$t_end
  for _ in $(seq 1 120); do
    sleep 0.5
    c2=$(count); now=$(date +%s.%N)
    [ "$c2" -eq "$c1" ] && break
    c1=$c2; t_last=$now
  done
  local rps=0 p50="" p99="" dur=0 errors=0 acked=0 d e
  for i in "${!ports[@]}"; do
    out="$WORK/wrk-$i.txt"
    grep -q 'requests in' "$out" || { echo "error: wrk failed:" >&2; cat "$out" >&2; exit 1; }
    rps=$(awk -v a="$rps" -v b="$(wrk_field "$out" rps)" 'BEGIN { print a + b }')
    p50="$p50${p50:+/}$(wrk_field "$out" p50)"
    p99="$p99${p99:+/}$(wrk_field "$out" p99)"
    d=$(wrk_field "$out" duration)
    dur=$(awk -v a="$dur" -v b="$d" 'BEGIN { print (b > a) ? b : a }')
    e=$(($(wrk_field "$out" non2xx) + $(wrk_field "$out" sockerr)))
    errors=$((errors + e))
    acked=$((acked + $(wrk_field "$out" acked)))
  done
  # Exposures a node answered for but kept in memory (store unreachable) or dropped: not landed.
  local held
  for i in "${ports[@]}"; do
    held=$(($(metric "$i" allot_exposures_buffered) + $(metric "$i" allot_exposures_dropped_total)))
    [ "$held" -eq 0 ] || { FAILED=1; echo "warning: node on port $i holds or dropped $held exposures (/metrics)" >&2; }
  done
  [ "$errors" -eq 0 ] || { FAILED=1; echo "warning: $errors non-2xx responses or socket errors:" >&2; cat "$WORK"/wrk-*.txt >&2; }
  local drain landed
  landed=$((c1 - c0))
  # Requests still in flight when wrk stops land without being counted as acknowledged; the other
  # way round, acknowledged exposures that did not land, would be lost.
  [ "$acked" -le "$landed" ] || { FAILED=1; echo "warning: $acked exposures acknowledged, only $landed landed" >&2; }
  drain=$(awk -v a="$t_end" -v b="$t_last" 'BEGIN { printf "%.2f", b - a }')
  awk -v l="$label" -v r="$run" -v la="$load" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v err="$errors" \
    -v ack="$acked" -v landed="$landed" -v dur="$dur" -v drain="$drain" -v nodes="$nodes" \
    -v node="$(awk -v a="$n0" -v b="$n1" -v t="$TCK" 'BEGIN { print (b - a) / t }')" \
    -v pg="$(pg_cpu "$WORK/pg0" "$WORK/pg1")" \
    -v wall="$(awk -v a="$t0" -v b="$t_end" 'BEGIN { print b - a }')" 'BEGIN {
      rate = landed / (dur + drain);
      printf "%-30s %3s %14s %10.0f %17s %17s %6d %10d %10d %6.2f %6.2f %6.2f %6.2f %6.1f %11.0f %11.0f\n",
        l, r, la, rps, p50, p99, err, ack, landed, dur, drain, node / wall / nodes, pg / wall,
        landed ? node * 1e6 / landed : 0, rate, rate / nodes }' | tee -a "$WORK/rows"
}

header() {
  printf '\n%-30s %3s %14s %10s %17s %17s %6s %10s %10s %6s %6s %6s %6s %6s %11s %11s\n' \
    "measurement" run "load average" "requests/s" p50 p99 errors acked landed "s" drain node pg "us/exp" "landed/s" "per node/s"
}
warm() { # script port...
  [ "$WARMUP" = 0 ] && return 0
  local script=$1 p pids=()
  shift
  for p in "$@"; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$WORK/$script.lua" "http://127.0.0.1:$p" -- "w$script$p" > /dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done # not a bare `wait`: the servers are children too
}

echo "== $(nproc) cores; wrk: $THREADS threads, $CONNECTIONS connections, $DURATION per run, $RUNS run(s); BATCH=$BATCH"
: > "$WORK/rows"
label_of() { # script nodes
  case $1 in
    exposures) echo "exposures, batch $BATCH, $2 node$([ "$2" = 1 ] || echo s)" ;;
    evaluate) echo "evaluate+log, $2 node$([ "$2" = 1 ] || echo s)" ;;
  esac
}
series() { # port...: every endpoint, RUNS times, with one wrk per port at once
  local script r
  header
  for script in $ENDPOINTS; do
    warm "$script" "$@"
    for r in $(seq 1 "$RUNS"); do measure "$(label_of "$script" $#)" "$script" "$r" "$@"; done
  done
}
series "$PORT"
if [ "$TWO_NODES" = 1 ]; then
  bench_serve $((PORT + 1)) "$WORK/node2.log" --database-url "$NODE_URL"
  NODE_PIDS+=("$SERVER_PID")
  series "$PORT" $((PORT + 1))
fi

cat <<EOF

Columns: requests/s (summed over the nodes), p50/p99 (per node), errors (non-2xx responses and
socket errors; must be 0), acked (exposures the answers acknowledged as new / assignments with a
variant), landed (rows added to $SCHEMA.exposures), s (wrk's measured duration), drain (seconds
rows kept arriving after wrk stopped), node (CPU cores used per node while wrk ran), pg (CPU cores
used by the local PostgreSQL's processes), us/exp (node CPU microseconds per exposure landed,
all nodes), landed/s = landed / (s + drain), per node/s = landed/s divided by the number of nodes.

Medians over $RUNS run(s), exposures landed in PostgreSQL per second per node:
EOF
cut -c1-30 "$WORK/rows" | sort -u | while read -r label; do
  median=$(grep -F "$label" "$WORK/rows" | awk '{ print $NF }' | sort -g |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  verdict=$(awk -v m="$median" -v t="$TARGET" 'BEGIN { print (m >= t) ? "met" : "MISSED" }')
  printf '  %-30s %9.0f /s  (target >= %d: %s)\n' "$label" "$median" "$TARGET" "$verdict"
done
for log in "$WORK"/node*.log; do
  n=$(grep -cE ' (WARN|ERROR) ' "$log" || true)
  [ "$n" -eq 0 ] && continue
  echo "$(basename "$log" .log): $n warning/error lines in its log, by message:"
  grep -E ' (WARN|ERROR) ' "$log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -n 5
done
echo
echo "target (issue 6): >= 20,000 exposures/s landed in PostgreSQL per node; load average now $(bench_load)"
[ "$FAILED" = 0 ] || { echo "error: some requests failed (see the warnings above)" >&2; exit 1; }
