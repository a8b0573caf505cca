//! Group-sequential bounds against an independent implementation (spotify-confidence's
//! sequential bound solver, a port of R's ldbounds) and against adaptive quadrature
//! (`spec/stats/sequential/`), textbook values, property tests of the spending and the bounds,
//! and the mSPRT.

use allot_stats::dist::norm_ppf;
use allot_stats::power::Sides;
use allot_stats::sequential::{boundaries, exit_probabilities, msprt, Spending};
use proptest::prelude::*;
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("../../../../spec/stats/sequential/spotify-bounds.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn zs(spending: Spending, alpha: f64, sides: Sides, t: &[f64]) -> Vec<f64> {
    boundaries(spending, alpha, sides, t).unwrap().iter().map(|b| b.z).collect()
}

/// Lan-DeMets bounds for five equally spaced looks, two-sided α = 0.05, as tabulated to three
/// decimals (Jennison, Turnbull 2000, table 7.6; DeMets, Lan 1994).
#[test]
fn textbook_five_looks() {
    let t = [0.2, 0.4, 0.6, 0.8, 1.0];
    let obf = zs(Spending::ObrienFleming, 0.05, Sides::Two, &t);
    let poc = zs(Spending::Pocock, 0.05, Sides::Two, &t);
    for (got, want) in obf.iter().zip([4.877, 3.357, 2.680, 2.290, 2.031]) {
        assert!((got - want).abs() < 5e-4, "O'Brien-Fleming {got} vs {want}");
    }
    for (got, want) in poc.iter().zip([2.438, 2.427, 2.410, 2.397, 2.386]) {
        assert!((got - want).abs() < 5e-4, "Pocock {got} vs {want}");
    }
}

/// Two looks against scipy's adaptive quadrature (QUADPACK, epsrel 1e-13) and brentq: to 1e-8
/// in `z` (allot's grid with r = 32 is accurate to about 1e-9; see docs/stats.md).
#[test]
fn two_looks_against_quadrature() {
    let g = golden();
    let cases = g["two_looks"].as_array().unwrap();
    assert_eq!(cases.len(), 48);
    let mut failures = vec![];
    for c in cases {
        let t = floats(&c["fractions"]);
        let a = c["alpha_per_tail"].as_f64().unwrap();
        let rho = c["rho"].as_f64().unwrap();
        let got = zs(Spending::Power { rho }, a, Sides::One, &t);
        for (k, (g, w)) in got.iter().zip(floats(&c["bounds"])).enumerate() {
            if (g - w).abs() > 1e-8 {
                failures.push(format!("t={t:?} α={a} ρ={rho} look {}: {g} vs {w}", k + 1));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// spotify-confidence's bounds (180 cases: 10 fraction sequences × α × ρ × sides). Its solver
/// integrates with the trapezoidal rule on a grid of step 0.05 and searches each bound to 1e-7
/// in probability, so its bounds are off by up to ~1e-5 in crossing probability (on the
/// two-look cases above it is 5e-5 from the quadrature in `z`, where allot is 2e-9). The
/// tolerance is therefore set in probability: each of its bounds must move the crossing
/// probability (by allot's recursion) by at most 2e-5 from allot's bound, i.e.
/// `|Δz| ≤ 2e-5 / (density of the crossing probability at the bound)`; and the first look, an
/// exact normal quantile in both, to 1e-9.
#[test]
fn spotify_confidence_bounds() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 180);
    let mut failures = vec![];
    let mut worst = 0.0_f64;
    for c in cases {
        let t = floats(&c["fractions"]);
        let a = c["alpha_per_tail"].as_f64().unwrap();
        let rho = c["rho"].as_f64().unwrap();
        let want = floats(&c["bounds"]);
        let got = zs(Spending::Power { rho }, a, Sides::One, &t);
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let ok = if k == 0 {
                (g - w).abs() <= 1e-9
            } else {
                // The density of the look-k crossing probability at allot's bound, by a central
                // difference of the recursion (the earlier bounds held at allot's values).
                let at = |z: f64| {
                    let mut b = got[..=k].to_vec();
                    b[k] = z;
                    exit_probabilities(&t[..=k], &b, Sides::One, 0.0).unwrap()[k]
                };
                let h = 1e-4;
                let density = (at(g - h) - at(g + h)) / (2.0 * h);
                let dp = (g - w).abs() * density;
                worst = worst.max(dp);
                dp <= 2e-5
            };
            if !ok {
                failures.push(format!("t={t:?} α={a} ρ={rho} look {}: allot {g} vs spotify {w}", k + 1));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // The tolerance is not idle: the worst case uses a good part of it.
    assert!(worst > 1e-6, "worst {worst}");
}

#[test]
fn bad_fractions_are_named() {
    for t in [&[][..], &[0.5, 0.4][..], &[0.0, 1.0][..], &[0.5, 1.2][..], &[f64::NAN][..]] {
        let e = boundaries(Spending::Pocock, 0.05, Sides::Two, t).unwrap_err();
        assert!(e.to_string().starts_with("fractions:"), "{e}");
    }
    assert!(boundaries(Spending::Pocock, 1.5, Sides::Two, &[1.0]).unwrap_err().to_string().starts_with("alpha:"));
    let e = boundaries(Spending::Power { rho: -1.0 }, 0.05, Sides::Two, &[1.0]).unwrap_err();
    assert!(e.to_string().starts_with("rho:"));
}

fn fractions() -> impl Strategy<Value = Vec<f64>> {
    // 1 to 6 looks at least 0.02 apart, the last at 1 or before.
    (prop::collection::vec(0.02f64..0.3, 1..6), any::<bool>()).prop_map(|(gaps, to_one)| {
        let total: f64 = gaps.iter().sum();
        let scale = if to_one || total > 1.0 { 1.0 / total } else { 1.0 };
        let mut t = 0.0;
        let mut out: Vec<f64> = gaps
            .iter()
            .map(|g| {
                t += g * scale;
                t.min(1.0)
            })
            .collect();
        if to_one || total > 1.0 {
            *out.last_mut().unwrap() = 1.0;
        }
        out
    })
}

fn spending() -> impl Strategy<Value = Spending> {
    prop_oneof![
        Just(Spending::ObrienFleming),
        Just(Spending::Pocock),
        (0.5f64..4.0).prop_map(|rho| Spending::Power { rho })
    ]
}

fn sides() -> impl Strategy<Value = Sides> {
    prop_oneof![Just(Sides::One), Just(Sides::Two)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The bounds spend exactly the spending function: the probability under the null of crossing
    /// some bound by look k is α(t_k), so by the planned maximum it is α itself. Checked on a
    /// finer recursion than the one that found the bounds is not possible from outside, so the
    /// per-look crossing probabilities are recomputed from the bounds alone.
    #[test]
    fn total_spent_is_alpha(t in fractions(), s in spending(), sd in sides(), alpha in 0.005f64..0.2) {
        let b = boundaries(s, alpha, sd, &t).unwrap();
        let z: Vec<f64> = b.iter().map(|b| b.z).collect();
        let p = exit_probabilities(&t, &z, sd, 0.0).unwrap();
        let mut cum = 0.0;
        for (k, (p, b)) in p.iter().zip(&b).enumerate() {
            cum += p;
            prop_assert!((cum - b.spent).abs() < 1e-9, "look {}: crossed {cum}, spent {}", k + 1, b.spent);
            prop_assert!((b.spent - s.spent(alpha, sd, t[k])).abs() < 1e-15);
        }
        if *t.last().unwrap() == 1.0 {
            prop_assert!((cum - alpha).abs() < 1e-9, "total {cum} vs α {alpha}");
        }
    }

    /// Smaller α, higher bounds at every look; the last bound of a plan that reaches its maximum
    /// is above the fixed-horizon z; O'Brien-Fleming's bounds fall from look to look and start
    /// above Pocock's.
    #[test]
    fn bounds_are_monotone(t in fractions(), s in spending(), sd in sides(), alpha in 0.01f64..0.2) {
        let hi = zs(s, alpha, sd, &t);
        let lo = zs(s, alpha / 2.0, sd, &t);
        for (a, b) in hi.iter().zip(&lo) {
            prop_assert!(b >= a, "α/2 bound {b} below α bound {a}");
        }
        let tails = if sd == Sides::Two { 2.0 } else { 1.0 };
        let fixed = norm_ppf(1.0 - alpha / tails);
        if *t.last().unwrap() == 1.0 {
            prop_assert!(*hi.last().unwrap() >= fixed - 1e-9, "last {} below fixed {fixed}", hi.last().unwrap());
        }
        let obf = zs(Spending::ObrienFleming, alpha, sd, &t);
        let poc = zs(Spending::Pocock, alpha, sd, &t);
        prop_assert!(obf[0] >= poc[0]);
    }

    /// With equally spaced looks O'Brien-Fleming's bounds fall from look to look. (Not with any
    /// spacing: a look soon after another gets little α and a higher bound.)
    #[test]
    fn obrien_fleming_falls(k in 2usize..9, sd in sides(), alpha in 0.01f64..0.2) {
        let t: Vec<f64> = (1..=k).map(|i| i as f64 / k as f64).collect();
        let obf = zs(Spending::ObrienFleming, alpha, sd, &t);
        for w in obf.windows(2) {
            prop_assert!(w[1] < w[0], "O'Brien-Fleming rose: {obf:?}");
        }
    }

    /// One look at the planned maximum is the fixed-horizon test.
    #[test]
    fn single_look_is_fixed_horizon(s in spending(), sd in sides(), alpha in 0.001f64..0.5) {
        let b = boundaries(s, alpha, sd, &[1.0]).unwrap();
        let tails = if sd == Sides::Two { 2.0 } else { 1.0 };
        prop_assert!((b[0].z - norm_ppf(1.0 - alpha / tails)).abs() < 1e-12);
        prop_assert!((b[0].nominal_alpha - alpha).abs() < 1e-8 * alpha, "{} vs {alpha}", b[0].nominal_alpha);
    }

    /// mSPRT: p-values never rise, intervals are nested, and p ≤ α exactly when 0 is outside the
    /// confidence sequence.
    #[test]
    fn msprt_duality(looks in prop::collection::vec((-1.0f64..1.0, 0.01f64..0.5), 1..8), tau in 0.01f64..1.0, alpha in 0.01f64..0.2) {
        let m = msprt(&looks, tau, alpha).unwrap();
        for w in m.windows(2) {
            prop_assert!(w[1].p_value <= w[0].p_value);
            prop_assert!(w[1].ci[0] >= w[0].ci[0] && w[1].ci[1] <= w[0].ci[1]);
        }
        for x in &m {
            let outside = x.ci[0] > 0.0 || x.ci[1] < 0.0;
            let p_small = x.p_value <= alpha;
            // Equality up to rounding at the boundary itself.
            if (x.p_value - alpha).abs() > 1e-12 {
                prop_assert_eq!(outside, p_small, "{:?}", x);
            }
        }
    }
}

/// mSPRT on one look by hand: V = 0.01, τ² = 0.04, d = 0.3.
#[test]
fn msprt_by_hand() {
    let m = msprt(&[(0.3, 0.1)], 0.2, 0.05).unwrap()[0];
    let (v, t2, d) = (0.01_f64, 0.04_f64, 0.3_f64);
    let lambda = (v / (v + t2)).sqrt() * (t2 * d * d / (2.0 * v * (v + t2))).exp();
    assert!((m.lambda - lambda).abs() < 1e-12 * lambda);
    assert!((m.p_value - 1.0 / lambda).abs() < 1e-15);
    let half = (2.0 * v * (v + t2) / t2 * ((20.0_f64).ln() + 0.5 * ((v + t2) / v).ln())).sqrt();
    assert!((m.ci[0] - (d - half)).abs() < 1e-12 && (m.ci[1] - (d + half)).abs() < 1e-12);
    assert!(msprt(&[(0.3, 0.0)], 0.2, 0.05).unwrap_err().to_string().starts_with("looks:"));
    assert!(msprt(&[(0.3, 0.1)], 0.0, 0.05).unwrap_err().to_string().starts_with("tau:"));
}

/// The maximum sample of a group-sequential design against the fixed-horizon one: about 1.03 for
/// O'Brien-Fleming-type and 1.2 for Pocock-type spending with five looks, two-sided α = 0.05 and
/// power 0.8 (Jennison, Turnbull 2000, tables 2.4 and 7.6 give 1.028 and 1.207 for the original
/// O'Brien-Fleming and Pocock tests, which these spending functions approximate).
#[test]
fn inflation_factors() {
    use allot_stats::sequential::inflation;
    let t = [0.2, 0.4, 0.6, 0.8, 1.0];
    let obf = inflation(Spending::ObrienFleming, 0.05, Sides::Two, &t, 0.8).unwrap();
    let poc = inflation(Spending::Pocock, 0.05, Sides::Two, &t, 0.8).unwrap();
    assert!((obf - 1.028).abs() < 0.01, "O'Brien-Fleming {obf}");
    assert!((poc - 1.207).abs() < 0.03, "Pocock {poc}");
    for s in [Spending::ObrienFleming, Spending::Pocock] {
        assert!((inflation(s, 0.05, Sides::Two, &[1.0], 0.8).unwrap() - 1.0).abs() < 1e-9);
    }
    assert!(inflation(Spending::Pocock, 0.05, Sides::Two, &[0.5], 0.8)
        .unwrap_err()
        .to_string()
        .starts_with("fractions:"));
}

/// Very early looks: O'Brien-Fleming spends almost nothing, and the bounds are large but exact
/// (the tail quantile), until the α to spend underflows to 0.
#[test]
fn very_early_looks() {
    let b = boundaries(Spending::ObrienFleming, 0.05, Sides::Two, &[0.008, 0.02, 1.0]).unwrap();
    // α(0.008) per tail = 2Φ̄(z_{0.9875}/√0.008) ≈ 2Φ̄(25.06) ≈ 1e-138; the first bound is its
    // tail quantile, ≈ 25.03.
    let per_tail = 2.0 * allot_stats::dist::norm_sf(norm_ppf(1.0 - 0.0125) / 0.008f64.sqrt());
    assert!(per_tail > 0.0 && per_tail < 1e-130);
    let want = -norm_ppf(per_tail);
    assert!((b[0].z - want).abs() < 1e-9 && (b[0].z - 25.032).abs() < 1e-3, "{} vs {want}", b[0].z);
    assert!(b[1].z.is_finite() && b[1].z < b[0].z && b[2].z >= norm_ppf(0.975), "{b:?}");
    let tiny = boundaries(Spending::ObrienFleming, 0.05, Sides::Two, &[0.003, 1.0]).unwrap();
    assert!(tiny[0].z.is_infinite() && tiny[0].increment == 0.0);
    assert!((tiny[1].z - norm_ppf(0.975)).abs() < 1e-6, "{}", tiny[1].z);
}
