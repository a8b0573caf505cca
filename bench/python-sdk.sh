#!/usr/bin/env bash
# allot's Python SDK (sdks/python), per host (issue 12 req 5): nanoseconds per in-process
# evaluation from Python (one flag; each of 20 flags), the Rust core on the same snapshot and
# contexts in the same process (`Client._time_rust`: allot-sdk's evaluate in a Rust loop, no
# Python in it), and an OFREP single-flag round trip on loopback against `allot serve` (keep-alive
# HTTP/1.1 from Python), all in one run. Targets: <= 2 us per evaluation from Python, >= 50x cheaper
# than the round trip.
#
# Builds the release `allot` and the release module (maturin develop --release) into the
# virtualenv PYTHON_SDK_VENV (default target/python-sdk-bench/venv, created with maturin pinned),
# starts `allot serve` on a fresh SQLite store with the 20-experiment configuration of bench/lib.sh,
# then runs bench/python_sdk.py. Not run by CI (.ci/run).
#
# Usage, from the repository root:  bash bench/python-sdk.sh
# Environment: N (evaluations per measurement, default 200000), ROUND_TRIPS (default 5000),
#              PORT (default 18191), PYTHON_SDK_VENV, CARGO_TARGET_DIR as usual.
set -euo pipefail

PORT=${PORT:-18191}
N=${N:-200000}
ROUND_TRIPS=${ROUND_TRIPS:-5000}
KEY=bench-admin-key-0123456789abcdef0123
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need python3 "apt-get install -y python3 python3-venv"
need curl "apt-get install -y curl"

VENV=${PYTHON_SDK_VENV:-$ROOT/target/python-sdk-bench/venv}
if [ ! -x "$VENV/bin/maturin" ]; then
  echo "== creating $VENV (maturin pinned)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q maturin==1.9.6
fi
bench_build
echo "== building the release module into $VENV"
VIRTUAL_ENV=$VENV PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release --quiet -m sdks/python/Cargo.toml
bench_workdir python-sdk-bench
bench_config values > "$WORK/allot.yaml"
bench_serve "$PORT" "$WORK/serve.log"
echo "== load before: $(bench_load)"
"$VENV/bin/python" bench/python_sdk.py "http://127.0.0.1:$PORT" "$KEY" "$N" "$ROUND_TRIPS"
echo "== load after: $(bench_load)"
