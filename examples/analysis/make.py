"""Generates the small analysis example (exposures, metrics, covariates, identities).

Deterministic; run from this directory: python3 make.py. Plants: a treatment effect on
home-feed, a sample-ratio mismatch on home-banner, an interaction between home-feed and
search-rank, an included unit and a sequential exposure across the exclusive home experiments,
a variant jumper, and two unit ids of one person in exclusive experiments.
"""
import csv
import random

rng = random.Random(7)
exp_rows, met_rows, cov_rows = [], [], []
t0 = 1_763_700_000
for i in range(1200):
    u = f"u{i:04d}"
    pre = max(0.0, rng.gauss(5, 2))
    cov_rows.append((u, "revenue", round(pre, 4)))
    assigned = {}
    r = rng.random()
    if r < 0.45:
        assigned["home-feed"] = rng.choice(["control", "treatment"])
    elif r < 0.85:
        # banner: an SRM, 60/40 instead of 50/50
        assigned["home-banner"] = "control" if rng.random() < 0.6 else "treatment"
    if rng.random() < 0.6:
        assigned["search-rank"] = rng.choices(["control", "bm25", "neural"], [2, 1, 1])[0]
    for e, v in assigned.items():
        exp_rows.append((u, e, v, t0 + rng.randrange(86400)))
    eff = 0.0
    if assigned.get("home-feed") == "treatment":
        eff += 0.8
    if assigned.get("search-rank") == "neural":
        eff += 0.3
        if assigned.get("home-feed") == "treatment":
            eff += 0.9
    y = max(0.0, 0.8 * pre + 1 + eff + rng.gauss(0, 1.5))
    if assigned:
        met_rows.append((u, "revenue", round(y * 0.6, 4)))
        met_rows.append((u, "revenue", round(y * 0.4, 4)))   # summed per unit
        if rng.random() < 0.3:
            met_rows.append((u, "clicks", rng.randrange(1, 9)))
# Planted exposure issues.
exp_rows += [
    ("u-included", "home-feed", "treatment", t0 + 100), ("u-included", "home-banner", "control", t0 + 200),
    ("u-moved", "home-feed", "control", t0 + 100), ("u-moved", "home-banner", "treatment", t0 + 5 * 86400),
    ("u-jumper", "search-rank", "control", t0 + 100), ("u-jumper", "search-rank", "neural", t0 + 300),
    ("u-phone", "home-feed", "control", t0 + 10), ("u-laptop", "home-banner", "treatment", t0 + 20),
    ("u-both", "home-feed", "control", t0 + 10), ("u-both", "home-banner", "control", t0 + 20),
    ("u-both", "home-feed", "control", t0 + 30),
]
for w, rows, header in [("exposures.csv", exp_rows, "unit,experiment,variant,timestamp"),
                        ("metrics.csv", met_rows, "unit,metric,value"),
                        ("covariates.csv", cov_rows, "unit,metric,value")]:
    with open(w, "w", newline="") as f:
        f.write(header + "\n")
        csv.writer(f, lineterminator="\n").writerows(rows)
with open("identities.csv", "w") as f:
    f.write("unit,person\nu-phone,p-ann\nu-laptop,p-ann\nu0001,p-bob\n")
