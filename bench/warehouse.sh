#!/usr/bin/env bash
# Scale of the warehouse path (issue 13, requirement 6): `allot analyze --warehouse` on
# PostgreSQL with EXPOSURES exposure rows (4 experiments, each unit in all four) and a metric
# table of METRICS rows (default five times larger), generated in SQL with generate_series into
# unlogged tables of a scratch schema (dropped at the end). Reports the wall time and allot's
# peak RSS (GNU time), which stays constant in the rows: only one row per experiment × variant
# leaves the database.
# Usage: bench/warehouse.sh [EXPOSURES] [METRICS]   (needs psql and /usr/bin/time; builds the
# release binary unless ALLOT_BIN names one; ALLOT_BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail
EXPOSURES=${1:-10000000}
METRICS=${2:-$((EXPOSURES * 5))}
UNITS=$((EXPOSURES / 4))
URL=${ALLOT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=allot_bench_wh_$$
cd "$(dirname "$0")/.."
# ALLOT_BIN: another build of allot (the time is the database's; allot only waits for the rows).
if [ -z "${ALLOT_BIN:-}" ]; then
  cargo build --release -p allot-cli --quiet
fi
BIN=$(realpath "${ALLOT_BIN:-${CARGO_TARGET_DIR:-target}/release/allot}")
DIR=$(mktemp -d)
trap 'psql -q "$URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
echo "generating $EXPOSURES exposure rows ($UNITS units) and $METRICS metric rows in schema $SCHEMA ..." >&2
start=$(date +%s.%N)
psql -q -v ON_ERROR_STOP=1 "$URL" <<SQL
CREATE SCHEMA $SCHEMA;
-- Unit u in experiment e: variant by a fixed hash of both, exposed on day 0 at a spread time.
CREATE UNLOGGED TABLE $SCHEMA.exposures AS
  SELECT 'u' || (i % $UNITS) AS unit, 'exp' || (i / $UNITS) AS experiment,
         CASE WHEN ((i % $UNITS) * 2654435761 + (i / $UNITS)) % 2 = 0 THEN 'control' ELSE 'treatment' END AS variant,
         1767225600.0 + ((i % $UNITS) * 7919 % 86400) AS time
  FROM generate_series(0::bigint, $EXPOSURES - 1) AS i;
-- Purchases: most after exposure (days 1 to 8), one in ten in the pre-period.
CREATE UNLOGGED TABLE $SCHEMA.events AS
  SELECT 'u' || (i % $UNITS) AS unit, 'purchase' AS event, ((i * 31) % 97) / 4.0 AS amount,
         CASE WHEN i % 10 = 0 THEN 1767225600.0 - 86400 * 5 ELSE 1767225600.0 + 86400 + (i * 13 % 604800) END AS time
  FROM generate_series(0::bigint, $METRICS - 1) AS i;
ANALYZE $SCHEMA.exposures;
ANALYZE $SCHEMA.events;
SQL
gen=$(echo "$(date +%s.%N) - $start" | bc)
cat > "$DIR/tables.yaml" <<YAML
exposures: {table: $SCHEMA.exposures, time_type: epoch_seconds}
metrics:
  revenue: {table: $SCHEMA.events, time_type: epoch_seconds, aggregate: sum, value: amount, where: {column: event, equals: purchase}, window: {delay: 0s, duration: 14d}, cuped: {days: 14}}
  orders: {table: $SCHEMA.events, time_type: epoch_seconds, aggregate: count, window: {delay: 0s, duration: 14d}}
YAML
/usr/bin/time -v "$BIN" analyze --warehouse "$URL" --tables "$DIR/tables.yaml" --format json > "$DIR/report.json" 2> "$DIR/time.txt" || {
  cat "$DIR/time.txt" >&2
  exit 1
}
wall=$(grep 'Elapsed (wall clock)' "$DIR/time.txt" | awk '{print $NF}')
rss=$(grep 'Maximum resident set size' "$DIR/time.txt" | awk '{print $NF}')
units=$(python3 -c "import json,sys; r=json.load(open('$DIR/report.json')); print(sum(v['metrics']['revenue']['variants'][k]['n'] for v in r['experiments'].values() for k in v['variants']))")
echo "generated in ${gen}s"
echo "exposure rows: $EXPOSURES, metric rows: $METRICS, unit-experiments analysed: $units"
echo "allot analyze --warehouse: wall $wall, peak RSS ${rss} KB"
