use super::*;

// ---------------------------------------------------------------------------------------------
// Invariant 5: independence
// ---------------------------------------------------------------------------------------------

/// Upper 1e-4 quantiles of the chi-square distribution with 1 to 4 degrees of freedom.
pub(super) const CHI2_1E4: [f64; 4] = [15.137, 18.421, 21.108, 23.513];

pub(super) fn chi2_critical(df: usize) -> f64 {
    CHI2_1E4[df.clamp(1, 4) - 1]
}

/// Chi-square goodness of fit of `counts` to `probs`.
pub(super) fn chi2_gof(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = n as f64 * p;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Chi-square statistic of independence of an r×c contingency table (empty rows and columns
/// dropped); returns it with its degrees of freedom.
pub(super) fn chi2_independence(table: &[Vec<usize>]) -> (f64, usize) {
    let rows: Vec<&Vec<usize>> = table.iter().filter(|r| r.iter().sum::<usize>() > 0).collect();
    let cols: Vec<usize> = (0..table[0].len()).filter(|&j| rows.iter().map(|r| r[j]).sum::<usize>() > 0).collect();
    let n: usize = rows.iter().map(|r| r.iter().sum::<usize>()).sum();
    let mut stat = 0.0;
    for r in &rows {
        let rs: usize = r.iter().sum();
        for &j in &cols {
            let cs: usize = rows.iter().map(|r| r[j]).sum();
            let e = rs as f64 * cs as f64 / n as f64;
            stat += (r[j] as f64 - e).powi(2) / e;
        }
    }
    (stat, (rows.len().max(1) - 1) * (cols.len().max(1) - 1))
}

#[derive(Clone, Debug)]
pub(super) struct IndependenceCase {
    pub(super) buckets: u32,
    pub(super) old_share_pm: u64,
    pub(super) reuse_pm: u64,
    pub(super) holdout_pm: u64,
    pub(super) old_weights: (u32, u32),
    pub(super) new_weights: Vec<u32>,
    pub(super) new_targeted: bool,
    pub(super) resalt: bool,
    /// The new experiment's `salt:` — none (its id), another word, or the bucket space's own
    /// salt (`user`), which would make the variant a function of the bucket.
    pub(super) new_salt: Option<&'static str>,
}

pub(super) fn independence_case() -> impl Strategy<Value = IndependenceCase> {
    (
        prop_oneof![Just(20_000u32), Just(40_000), Just(50_000), Just(1_000_000)],
        300u64..=700,
        100u64..=300,
        50u64..=250,
        (1u32..=4, 1u32..=4),
        proptest::collection::vec(1u32..=4, 2..=3),
        any::<bool>(),
        proptest::bool::weighted(0.25),
        prop_oneof![Just(None), Just(Some("fresh")), Just(Some("user"))],
    )
        .prop_map(
            |(
                buckets,
                old_share_pm,
                reuse_pm,
                holdout_pm,
                old_weights,
                new_weights,
                new_targeted,
                resalt,
                new_salt,
            )| {
                IndependenceCase {
                    buckets,
                    old_share_pm,
                    reuse_pm,
                    holdout_pm,
                    old_weights,
                    new_weights,
                    new_targeted,
                    resalt,
                    new_salt,
                }
            },
        )
}

pub(super) fn independence_config(c: &IndependenceCase, old_state: &str, new_state: &str) -> Value {
    let b = u64::from(c.buckets);
    let old = b * c.old_share_pm / 1000;
    let hold = b * c.holdout_pm / 1000;
    // The new experiment needs all never-used buckets and `reuse` of the old one's.
    let never_used = b - old - hold;
    let new = (never_used + (b * c.reuse_pm / 1000).min(old)).min(b - hold);
    let new_vars: Map<String, Value> =
        c.new_weights.iter().enumerate().map(|(i, w)| (VARIANTS[i].to_string(), json!(w))).collect();
    let mut cfg = json!({
        "units": {"user": {"attribute": "user_id", "buckets": c.buckets}},
        "surfaces": ["home"],
        "holdouts": {"hold": {"unit": "user", "share": share_text(hold, b, true), "applies_to": ["home"]}},
        "experiments": {
            "old": {"unit": "user", "surfaces": ["home"], "share": share_text(old, b, false),
                    "variants": {"control": c.old_weights.0, "treatment": c.old_weights.1}, "state": old_state},
            "new": {"unit": "user", "surfaces": ["home"], "share": share_text(new, b, true),
                    "variants": new_vars, "state": new_state},
        }
    });
    if c.new_targeted {
        cfg["experiments"]["new"]["targeting"] = json!({"attribute": "country", "in": ["SE", "NO", "US"]});
    }
    if let Some(salt) = c.new_salt {
        cfg["experiments"]["new"]["salt"] = json!(salt);
    }
    cfg
}

pub(super) fn apply_raw(state: &State, raw: &Value) -> Result<State, TestCaseError> {
    let cfg = config::validate(raw).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    match plan::apply(state, &cfg, raw, &opts(false)) {
        Ok(p) => Ok(p.state),
        Err(e) => Err(TestCaseError::fail(outcome(&Err(e)))),
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// Invariant 5 — Independence: an experiment that reuses the buckets a stopped experiment on
    /// the same surface released spreads the reused units over its variants by weight (chi-square
    /// goodness of fit, p > 1e-4) and independently of the old variant (chi-square test of
    /// independence); over all its units the variant does not depend on the bucket (which half of
    /// the space); holdout membership is independent of a targeting attribute (country). Spaces
    /// of 20,000 to 1,000,000 buckets, with or without the salt machine run in between, and with
    /// a split salt that is the experiment id, another word, or the bucket space's own salt.
    #[test]
    fn independence(c in independence_case()) {
        if c.new_salt == Some("user") {
            // A split salted like the bucket space would follow the bucket: refused by
            // validation, with the field named.
            let raw = independence_config(&c, "running", "draft");
            // If validation accepts it, the split must still be independent of the bucket, below.
            if let Err(es) = config::validate(&raw) {
                prop_assert!(es.iter().any(|e| e.path == "experiments.new.salt"), "{es:?}");
                return Ok(());
            }
        }
        let s1 = apply_raw(&State::default(), &independence_config(&c, "running", "draft"))?;
        let before = evaluate(&s1, BIG_UNITS);
        let s2 = apply_raw(&s1, &independence_config(&c, "stopped", "draft"))?;
        let s2 = if c.resalt {
            salt::resalt(&s2, "user", TIME, None, None).map_err(|e| TestCaseError::fail(format!("{e:?}")))?.0
        } else {
            s2
        };
        let s3 = apply_raw(&s2, &independence_config(&c, "stopped", "running"))?;
        let after = evaluate(&s3, BIG_UNITS);
        let old_set = s1.live(OwnerKind::Experiment, "old").map(|a| a.current()).unwrap_or_else(|| BucketBitmap::empty(1));
        let new_set = live(&s3, OwnerKind::Experiment, "new").unwrap_or_else(|| BucketBitmap::empty(1));
        let reused = old_set.intersection_len(&new_set);
        prop_assert!(reused > 0, "the new experiment reuses none of the old one's buckets");

        // Units assigned in the old experiment and now in the new one.
        let k = c.new_weights.len();
        let mut table = vec![vec![0usize; k]; 2];
        let mut counts = vec![0usize; k];
        let (ro, rn) = (&before.exps["old"], &after.exps["new"]);
        for u in 0..BIG_UNITS {
            let (a, b) = (ro.res[u], rn.res[u]);
            if let (Reason::Assigned, Reason::Assigned, Some(va), Some(vb)) = (a.reason, b.reason, a.variant, b.variant) {
                table[va as usize][vb as usize] += 1;
                counts[vb as usize] += 1;
            }
        }
        let n: usize = counts.iter().sum();
        prop_assert!(n >= 200, "too few carried-over units ({}) for a test", n);
        let total: u32 = c.new_weights.iter().sum();
        let probs: Vec<f64> = c.new_weights.iter().map(|w| f64::from(*w) / f64::from(total)).collect();
        let gof = chi2_gof(&counts, &probs);
        prop_assert!(gof < chi2_critical(k - 1), "reused units do not follow the new weights: chi2 {gof:.2} df {} counts {counts:?} probs {probs:?}", k - 1);
        let (ind, df) = chi2_independence(&table);
        prop_assert!(ind < chi2_critical(df), "the new variant depends on the old one: chi2 {ind:.2} df {df} table {table:?}");

        // The new variant against the bucket (which half of the space), over all its units.
        let mut halves = vec![vec![0usize; k]; 2];
        for u in 0..BIG_UNITS {
            if let (Reason::Assigned, Some(v)) = (rn.res[u].reason, rn.res[u].variant) {
                halves[usize::from(after.buckets["user"][u] >= c.buckets / 2)][v as usize] += 1;
            }
        }
        let (hb, hbdf) = chi2_independence(&halves);
        prop_assert!(hb < chi2_critical(hbdf), "the variant depends on the bucket: chi2 {hb:.2} df {hbdf} table {halves:?}");

        // Holdout membership against country, over the whole population.
        let hold = &after.exps["new"];
        let mut t = vec![vec![0usize; 2]; 2];
        for u in 0..BIG_UNITS {
            let row = match country(u) { "SE" => 0, "US" => 1, _ => continue };
            t[row][usize::from(hold.res[u].reason == Reason::Holdout)] += 1;
        }
        let (hs, hdf) = chi2_independence(&t);
        prop_assert!(hs < chi2_critical(hdf), "holdout membership depends on country: chi2 {hs:.2} table {t:?}");
        let p = c.holdout_pm as f64 / 1000.0;
        for row in &t {
            prop_assert!(within_tolerance(row[1], row[0] + row[1], p), "holdout share {p} but {row:?}");
        }
    }
}
