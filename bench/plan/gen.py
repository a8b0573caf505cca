#!/usr/bin/env python3
"""Writes a configuration of N running experiments for the planning benchmark (bench/plan.sh).

20 surfaces, 2 groups of 10 slots, a holdout; experiments spread over surfaces (some in group
slots), each a small exact share, a third with country targeting (some through a segment), so
that planning exercises exclusion, groups, holdouts and the disjointness prover at scale.
Usage: gen.py N > allot.yaml
"""
import sys

n = int(sys.argv[1])
surfaces = [f"s{i}" for i in range(20)]
out = []
out.append("units:\n  user: {attribute: user_id, stable: [country]}\n")
out.append("surfaces: [" + ", ".join(surfaces) + "]\n")
out.append("segments:\n  nordics: {attribute: country, in: [SE, NO, DK, FI]}\n  na: {attribute: country, in: [US, CA]}\n")
out.append("holdouts:\n  global: {unit: user, share: 1%, applies_to: [all]}\n")
out.append("groups:\n")
out.append("  g0: {unit: user, share: 10%, slots: [" + ", ".join(["10%"] * 10) + "], surfaces: [s0]}\n")
out.append("  g1: {unit: user, share: 10%, slots: [" + ", ".join(["10%"] * 10) + "], surfaces: [s1]}\n")
out.append("experiments:\n")
countries = ["SE", "US", "DE", "FR", "JP", "BR"]
for i in range(n):
    s = surfaces[2 + i % 18]
    # Small enough that N of them fit: each surface fills about 90% of the space.
    per_surface = max(1, (n + 17) // 18)
    share = max(1, 900000 // per_surface - 10) / 10000
    line = f"  e{i}: {{unit: user, surfaces: [{s}], share: {share:.4f}%, variants: {{c: 1, t: 1}}, state: running"
    k = i % 6
    if k == 0:
        line += ", targeting: {segment: nordics}"
    elif k == 1:
        line += f", targeting: {{attribute: country, eq: {countries[i % len(countries)]}}}"
    elif k == 2:
        line += ", targeting: {all: [{segment: na}, {attribute: age, gte: 18}]}"
    out.append(line + "}\n")
for i in range(20):
    g = f"g{i % 2}"
    out.append(f"  m{i}: {{unit: user, group: {g}, slots: [{i // 2 + 1}], variants: {{c: 1, t: 1}}, state: running}}\n")
sys.stdout.write("".join(out))
