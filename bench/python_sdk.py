"""Nanoseconds per evaluation from Python (allot's Python SDK), beside the Rust core on the same
snapshot and contexts in the same process, and an OFREP single-flag round trip on loopback.
Run by bench/python-sdk.sh: python bench/python_sdk.py URL KEY."""

from __future__ import annotations

import http.client
import json
import random
import sys
import time
import urllib.parse

import allot

URL, KEY = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
ROUND_TRIPS = int(sys.argv[4]) if len(sys.argv) > 4 else 5_000

rng = random.Random(7)
COUNTRIES = ["SE", "NO", "DK", "US", "DE"]
contexts = [
    {"user_id": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10)), "country": rng.choice(COUNTRIES)}
    for _ in range(4096)
]
FLAGS = [f"home-{i}" for i in range(1, 9)] + [f"search-{i}" for i in range(1, 9)] + [f"checkout-{i}" for i in range(1, 5)]
assert len(FLAGS) == 20

client = allot.Client(URL, KEY, poll_interval=None)
for f in FLAGS:
    assert client.evaluate(f, contexts[0]).reason is not None, f


def best_of(runs: int, f) -> float:  # type: ignore[no-untyped-def]
    return min(f() for _ in range(runs))


def one_flag() -> float:
    ev = client.evaluate
    cs = contexts
    m = len(cs)
    t = time.perf_counter_ns()
    for i in range(N):
        ev("home-2", cs[i % m])
    return (time.perf_counter_ns() - t) / N


def twenty_flags() -> float:
    ev = client.evaluate
    cs = contexts
    m = len(cs)
    rounds = N // 20
    t = time.perf_counter_ns()
    for i in range(rounds):
        c = cs[i % m]
        for f in FLAGS:
            ev(f, c)
    return (time.perf_counter_ns() - t) / (rounds * 20)


def loop_only() -> float:
    """The Python loop and indexing alone, for reference."""
    cs = contexts
    m = len(cs)
    t = time.perf_counter_ns()
    for i in range(N):
        cs[i % m]
    return (time.perf_counter_ns() - t) / N


def round_trip() -> float:
    u = urllib.parse.urlparse(URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bodies = [json.dumps({"context": {"targetingKey": c["user_id"], "country": c["country"]}}) for c in contexts]
    t = time.perf_counter_ns()
    for i in range(ROUND_TRIPS):
        conn.request("POST", "/ofrep/v1/evaluate/flags/home-2", bodies[i % len(bodies)], headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    ns = (time.perf_counter_ns() - t) / ROUND_TRIPS
    conn.close()
    return ns


py_one = best_of(3, one_flag)
py_twenty = best_of(3, twenty_flags)
loop = best_of(3, loop_only)
rust_one = best_of(3, lambda: client._time_rust(["home-2"], contexts, N))
rust_twenty = best_of(3, lambda: client._time_rust(FLAGS, contexts, N // 20))
rtt = best_of(2, round_trip)
client.close()

print(f"python, one flag:         {py_one:8.0f} ns per evaluation (Python loop alone {loop:.0f} ns)")
print(f"python, 20 flags:         {py_twenty:8.0f} ns per evaluation ({py_twenty * 20 / 1000:.1f} us per 20)")
print(f"rust core, one flag:      {rust_one:8.0f} ns per evaluation (same snapshot and contexts, no Python)")
print(f"rust core, 20 flags:      {rust_twenty:8.0f} ns per evaluation")
print(f"OFREP round trip:         {rtt:8.0f} ns per single-flag request (loopback, keep-alive)")
print(f"round trip / python one:  {rtt / py_one:8.1f}x (target >= 50x; python target <= 2000 ns)")
print(json.dumps({"python_one_ns": round(py_one), "python_20_ns": round(py_twenty), "rust_one_ns": round(rust_one),
                  "rust_20_ns": round(rust_twenty), "ofrep_round_trip_ns": round(rtt), "ratio": round(rtt / py_one, 1)}))
