"""Generates spec/stats/golden.json: reference values for every formula in allot-stats.

Run: pip install -r spec/stats/requirements.txt && python3 spec/stats/generate.py
The output is committed; CI does not run Python. Values come from scipy and statsmodels
(Welch t-test and interval, chi-square, normal power, HC2 OLS, multipletests), or from numpy on
the raw data where no library function exists (delta method, CUPED theta), so that the Rust code,
which works on streamed sufficient statistics, is checked against computations on raw arrays.
"""
import json
import os

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, normal_power_het

rng = np.random.default_rng(20261121)
out = {"versions": {"numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__}}


def fl(a):
    return [float(v) for v in a]


# ---- Welch and delta method on raw arrays ----
welch = []
for i, (n1, n0, kind, alpha) in enumerate([
    (40, 50, "normal", 0.05), (200, 180, "normal", 0.05), (25, 300, "lognormal", 0.1),
    (500, 500, "binary", 0.05), (60, 61, "poisson", 0.01), (1000, 800, "binary", 0.05),
    (30, 30, "normal", 0.2), (150, 90, "lognormal", 0.05),
]):
    if kind == "normal":
        t = rng.normal(10.3, 2.0, n1); c = rng.normal(10.0, 3.0, n0)
    elif kind == "lognormal":
        t = rng.lognormal(1.1, 0.8, n1); c = rng.lognormal(1.0, 0.7, n0)
    elif kind == "binary":
        t = (rng.random(n1) < 0.13).astype(float); c = (rng.random(n0) < 0.11).astype(float)
    else:
        t = rng.poisson(3.4, n1).astype(float); c = rng.poisson(3.0, n0).astype(float)
    r = stats.ttest_ind(t, c, equal_var=False)
    ci = r.confidence_interval(1 - alpha)
    m1, m0 = t.mean(), c.mean()
    v1, v0 = t.var(ddof=1) / n1, c.var(ddof=1) / n0
    lift = m1 / m0 - 1
    se_rel = np.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4)
    z = stats.norm.ppf(1 - alpha / 2)
    welch.append({
        "name": f"{kind}-{n1}-{n0}", "alpha": alpha, "treatment": fl(t), "control": fl(c),
        "diff": float(m1 - m0), "t": float(r.statistic), "df": float(r.df), "p_value": float(r.pvalue),
        "ci": [float(ci.low), float(ci.high)],
        "relative": float(lift), "relative_se": float(se_rel),
        "relative_ci": [float(lift - z * se_rel), float(lift + z * se_rel)],
    })
out["welch"] = welch

# ---- CUPED: theta from pooled within-arm covariance, Welch on adjusted arrays ----
cuped = []
for i, (n1, n0, rho, alpha) in enumerate([(300, 280, 0.7, 0.05), (100, 120, 0.3, 0.05), (1000, 1000, 0.9, 0.1),
                                           (50, 70, 0.0, 0.05)]):
    def arm(n, lift):
        x = rng.normal(5, 2, n)
        y = 5 + lift + rho * (x - 5) + np.sqrt(1 - rho**2) * rng.normal(0, 2, n)
        return y, x
    yt, xt = arm(n1, 0.3); yc, xc = arm(n0, 0.0)
    sxy = ((yt - yt.mean()) * (xt - xt.mean())).sum() + ((yc - yc.mean()) * (xc - xc.mean())).sum()
    sxx = ((xt - xt.mean()) ** 2).sum() + ((xc - xc.mean()) ** 2).sum()
    theta = sxy / sxx
    xbar = np.concatenate([xt, xc]).mean()
    at, ac = yt - theta * (xt - xbar), yc - theta * (xc - xbar)
    raw = stats.ttest_ind(yt, yc, equal_var=False)
    adj = stats.ttest_ind(at, ac, equal_var=False)
    ci = adj.confidence_interval(1 - alpha)
    se_raw = (yt.mean() - yc.mean()) / raw.statistic
    se_adj = (at.mean() - ac.mean()) / adj.statistic
    cuped.append({
        "name": f"cuped-{n1}-{n0}-{rho}", "alpha": alpha,
        "treatment_y": fl(yt), "treatment_x": fl(xt), "control_y": fl(yc), "control_x": fl(xc),
        "theta": float(theta), "diff": float(at.mean() - ac.mean()), "p_value": float(adj.pvalue),
        "ci": [float(ci.low), float(ci.high)], "variance_reduction": float(1 - se_adj**2 / se_raw**2),
    })
out["cuped"] = cuped

# ---- SRM: chi-square goodness of fit ----
srm = []
for counts, weights in [([5000, 5100], [1, 1]), ([5000, 5300], [1, 1]), ([1000, 2050, 980], [1, 2, 1]),
                        ([49000, 51000], [1, 1]), ([300, 310, 290, 400], [1, 1, 1, 1]), ([70, 30], [7, 3]),
                        ([100000, 101500], [1, 1])]:
    w = np.array(weights, float)
    exp = np.sum(counts) * w / w.sum()
    r = stats.chisquare(counts, exp)
    srm.append({"counts": counts, "weights": fl(w), "chi2": float(r.statistic), "p_value": float(r.pvalue)})
out["srm"] = srm

# ---- corrections ----
corr = []
for p in [[0.01, 0.04, 0.03, 0.005], [0.2, 0.001, 0.049, 0.5, 0.03, 0.03], [0.9], [0.04, 0.04, 0.04],
          list(rng.uniform(0, 0.2, 12))]:
    case = {"p": fl(p)}
    for name, method in [("bonferroni", "bonferroni"), ("holm", "holm"), ("bh", "fdr_bh")]:
        case[name] = fl(multipletests(p, method=method)[1])
    corr.append(case)
out["corrections"] = corr

# ---- power, sample size, MDE (normal approximation) ----
# Reference power: statsmodels normal_power_het with std_null = std_alternative = sqrt(v0 + v1/ratio)
# per control unit, nobs = n0, alpha per comparison. For means it is also NormalIndPower.


def ref_power(kind, base, sd, delta, n_total, weights, alpha, sides, rho):
    k = len(weights) - 1
    a = alpha / k
    W = sum(weights)
    n0 = n_total * weights[0] / W
    if kind == "proportion":
        v0, v1 = base * (1 - base), (base + delta) * (1 - base - delta)
    else:
        v0 = v1 = sd * sd
    powers = []
    for w in weights[1:]:
        ratio = w / weights[0]
        std = np.sqrt((1 - rho**2) * (v0 + v1 / ratio))
        alt = "two-sided" if sides == "two" else "larger"
        powers.append(float(normal_power_het(delta, n0, a, std_null=std, std_alternative=std, alternative=alt)))
    return min(powers)


power = []
cases = [
    ("proportion", 0.10, None, 0.01, 20000, [1, 1], 0.05, "two", 0.0),
    ("proportion", 0.10, None, 0.01, 20000, [1, 1], 0.05, "one", 0.0),
    ("proportion", 0.03, None, 0.003, 150000, [1, 1, 1], 0.05, "two", 0.0),
    ("proportion", 0.5, None, 0.02, 30000, [2, 1], 0.05, "two", 0.5),
    ("proportion", 0.2, None, 0.01, 50000, [1, 1, 1, 1], 0.1, "one", 0.3),
    ("mean", 10.0, 4.0, 0.2, 8000, [1, 1], 0.05, "two", 0.0),
    ("mean", 10.0, 4.0, 0.2, 8000, [1, 1], 0.05, "two", 0.6),
    ("mean", 3.0, 9.0, 0.15, 100000, [3, 1, 1], 0.01, "two", 0.0),
    ("mean", 50.0, 20.0, 1.0, 3000, [1, 1], 0.05, "one", 0.8),
]
for kind, base, sd, delta, n, weights, alpha, sides, rho in cases:
    p = ref_power(kind, base, sd, delta, n, weights, alpha, sides, rho)
    target = 0.8
    n_req = optimize.brentq(lambda x: ref_power(kind, base, sd, delta, x, weights, alpha, sides, rho) - target,
                            1.0, 1e12, xtol=1e-10, rtol=1e-14, maxiter=1000)
    hi = (1 - base) * (1 - 1e-12) if kind == "proportion" else 100 * sd
    d_req = optimize.brentq(lambda d: ref_power(kind, base, sd, d, n, weights, alpha, sides, rho) - target,
                            1e-12, hi, xtol=1e-15, rtol=1e-14, maxiter=1000)
    case = {"kind": kind, "baseline": base, "sd": sd, "mde": delta, "n_total": n, "weights": weights,
            "alpha": alpha, "sides": sides, "rho": rho, "power": p, "target_power": target,
            "sample_size": float(n_req), "mde_at_n": float(d_req)}
    if kind == "mean" and len(weights) == 2:
        # Independent check through statsmodels' NormalIndPower (effect size d = delta/sd).
        eff = delta / (sd * np.sqrt(1 - rho**2))
        ratio = weights[1] / weights[0]
        alt = "two-sided" if sides == "two" else "larger"
        nobs1 = n * weights[0] / sum(weights)
        case["statsmodels_power"] = float(NormalIndPower().power(eff, nobs1, alpha, ratio=ratio, alternative=alt))
    power.append(case)
out["power"] = power

# ---- interaction contrasts: OLS with full dummies, HC2 ----
inter = []
for k, m, ns in [(2, 2, 80), (3, 2, 60), (2, 3, 120)]:
    a = rng.integers(0, k, ns * k * m)
    b = rng.integers(0, m, ns * k * m)
    y = 1.0 + 0.3 * a + 0.2 * b + 0.25 * (a * b == 1) + rng.normal(0, 1 + 0.3 * a, a.size)
    cols = [np.ones(a.size)]
    names = ["const"]
    for i in range(1, k):
        cols.append((a == i).astype(float)); names.append(f"a{i}")
    for j in range(1, m):
        cols.append((b == j).astype(float)); names.append(f"b{j}")
    for i in range(1, k):
        for j in range(1, m):
            cols.append(((a == i) & (b == j)).astype(float)); names.append(f"a{i}b{j}")
    fit = sm.OLS(y, np.column_stack(cols)).fit(cov_type="HC2")
    contrasts = []
    for i in range(1, k):
        for j in range(1, m):
            idx = names.index(f"a{i}b{j}")
            contrasts.append({"a": i, "b": j, "estimate": float(fit.params[idx]), "se": float(fit.bse[idx]),
                              "p_value": float(fit.pvalues[idx])})
    inter.append({"k": k, "m": m, "a": [int(v) for v in a], "b": [int(v) for v in b], "y": fl(y),
                  "contrasts": contrasts})
out["interaction"] = inter

# ---- end to end: the committed example of `allot analyze` (examples/analysis) ----
# Per-unit sums of the metric, 0 for units without a row; CUPED with theta pooled over the arms.
import csv as _csv

here = os.path.dirname(os.path.abspath(__file__))
ex_dir = os.path.join(here, "..", "..", "examples", "analysis")


def read(name):
    with open(os.path.join(ex_dir, name)) as f:
        return list(_csv.DictReader(f))


exposures, metric_rows, cov_rows = read("exposures.csv"), read("metrics.csv"), read("covariates.csv")
e2e = []
for exp, metric in [("home-feed", "revenue"), ("search-rank", "revenue"), ("search-rank", "clicks")]:
    variants = {}
    for r in exposures:
        if r["experiment"] == exp:
            variants.setdefault(r["unit"], set()).add(r["variant"])
    units = {u: next(iter(v)) for u, v in variants.items() if len(v) == 1}  # variant jumpers excluded
    y = {u: 0.0 for u in units}
    x = {u: 0.0 for u in units}
    for r in metric_rows:
        if r["metric"] == metric and r["unit"] in y:
            y[r["unit"]] += float(r["value"])
    for r in cov_rows:
        if r["metric"] == metric and r["unit"] in x:
            x[r["unit"]] += float(r["value"])
    arms = sorted(set(units.values()))
    arr = {v: (np.array([y[u] for u in units if units[u] == v]), np.array([x[u] for u in units if units[u] == v]))
           for v in arms}
    sxy = sum(((a - a.mean()) * (b - b.mean())).sum() for a, b in arr.values())
    sxx = sum(((b - b.mean()) ** 2).sum() for a, b in arr.values())
    theta = sxy / sxx if sxx > 0 else None  # no covariate: no CUPED
    cases = []
    for v in arms:
        if v == "control":
            continue
        (yt, xt), (yc, xc) = arr[v], arr["control"]
        r = stats.ttest_ind(yt, yc, equal_var=False)
        ci = r.confidence_interval(0.95)
        case = {}
        if theta is not None:
            adj = stats.ttest_ind(yt - theta * xt, yc - theta * xc, equal_var=False)
            aci = adj.confidence_interval(0.95)
            case = {"cuped_diff": float((yt - theta * xt).mean() - (yc - theta * xc).mean()),
                    "cuped_p_value": float(adj.pvalue), "cuped_ci": [float(aci.low), float(aci.high)]}
        cases.append(case | {"experiment": exp, "metric": metric, "variant": v, "n": len(yt), "mean": float(yt.mean()),
                      "diff": float(yt.mean() - yc.mean()), "p_value": float(r.pvalue),
                      "ci": [float(ci.low), float(ci.high)], "relative": float(yt.mean() / yc.mean() - 1)})
    e2e += cases
out["analyze_example"] = e2e

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, allow_nan=False)
    f.write("\n")
print("wrote", path)
