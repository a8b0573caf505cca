"""The golden suite of every SDK (spec/assign/README.md): the state compiled by this SDK gives
exactly `expected.jsonl` for the contexts of `units.jsonl`, and under `resalted.state.json`
exactly the buckets of `buckets-resalted.jsonl` (and still `expected.jsonl`). A mismatch fails."""

from __future__ import annotations

import json
import pathlib

import pytest

import allot


@pytest.mark.parametrize("state", ["allot.state.json", "resalted.state.json"])
def test_golden_assignments_and_buckets(spec: pathlib.Path, state: str) -> None:
    d = spec / "assign"
    c = allot.Client.offline((d / state).read_text())
    units = (d / "units.jsonl").read_text().splitlines()
    expected = (d / "expected.jsonl").read_text().splitlines()
    buckets = (d / "buckets-resalted.jsonl").read_text().splitlines()
    assert len(units) == len(expected) == len(buckets) == 2000
    compared = 0
    for n, (line, want, bucket) in enumerate(zip(units, expected, buckets), start=1):
        ctx = json.loads(line)
        want = json.loads(want)
        for exp, w in want["assignments"].items():
            e = c.evaluate(exp, ctx)
            assert {"variant": e.variant, "reason": e.reason} == w, f"{state} line {n}: {exp}"
            compared += 1
        if state == "resalted.state.json":
            assert c.buckets(ctx) == json.loads(bucket), f"{state} line {n}"
    assert compared >= 2000 * 8, compared
