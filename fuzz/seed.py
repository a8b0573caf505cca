#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/ from the repository's own
examples, specification data and test configurations. The committed corpus (fuzz/corpus/) is
these seeds after fuzzing and `cargo fuzz cmin`; rerun this only to re-seed."""
import hashlib, json, pathlib, re

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "seeds"

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)

# config: the examples, the specification's configuration, and every YAML configuration written
# in the Rust tests (raw strings that declare units).
for p in ["examples/allot.yaml", "examples/advanced.yaml", "examples/analysis/allot.yaml", "spec/assign/allot.yaml"]:
    put("config", (root / p).read_text())
raw = re.compile(r'r(#+)"(.*?)"\1', re.S)
for rs in sorted(root.glob("crates/*/tests/**/*.rs")) + sorted(root.glob("crates/*/src/**/*.rs")):
    for m in raw.finditer(rs.read_text()):
        text = m.group(2)
        if "units:" in text and len(text) < 8000:
            put("config", text)

# state: the specification's recorded state.
put("state", (root / "spec/assign/allot.state.json").read_text())

# evaluate_body / ofrep_body: the first byte picks the content type (evaluate) or the endpoint
# (OFREP: even = bulk, odd = one flag, bit 7 = If-None-Match).
bodies = [
    {"context": {"user_id": "u1"}},
    {"context": {"user_id": "alice", "country": "SE", "age": 30}},
    {"context": {"user_id": "u2", "device_id": "d1"}, "experiments": ["banner", "onboarding"]},
    {"context": {"user_id": "u3"}, "experiments": ["nope"], "log_exposures": True},
    {"context": {"device_id": "d2", "country": ["SE"]}, "log_exposures": True},
    {"context": {}},
    {"context": {"user_id": 7}},
]
for b in bodies:
    put("evaluate_body", b"\x02" + json.dumps(b).encode())
put("evaluate_body", b"\x00" + b'{"context": {"user_id": "u1"}} trailing')
ofrep = [
    {"context": {"targetingKey": "u1"}},
    {"context": {"targetingKey": "alice", "country": "NO", "age": 17}},
    {"context": {"user_id": "u1", "device_id": "d1"}},
    {"context": {"targetingKey": 5}},
    {"context": None},
    {},
]
for b in ofrep:
    for pick in (0, 1, 3, 7, 9, 0x80):
        put("ofrep_body", bytes([pick]) + json.dumps(b).encode())

# compat_confidence: the specification's requests (against its state), and its state alone.
for t in json.loads((root / "spec/confidence/tests.json").read_text()):
    put("compat_confidence", json.dumps(t["resolveRequest"]))
put("compat_confidence", "\0" + (root / "spec/confidence/state.json").read_text())

# compat_amplitude: the SDK's flags, a few generated configurations with their contexts, and
# contexts alone (read against the SDK's flags).
put("compat_amplitude", (root / "spec/amplitude/flags.json").read_text())
cases = json.loads((root / "spec/amplitude/generated-cases.json").read_text())["cases"]
for c in cases[:30:3]:
    put("compat_amplitude", json.dumps(c["flags"]) + "\0" + "\n".join(json.dumps(x) for x in c["contexts"][:8]))
for c in json.loads((root / "spec/amplitude/expectations.json").read_text())["cases"]:
    put("compat_amplitude", json.dumps(c["context"]))
