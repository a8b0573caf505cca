//! Bucket-reuse health: the accumulator's differences and tests.

use allot_stats::estimate::{welch, Summary};
use allot_stats::reuse::ReuseAcc;
use allot_stats::Moments;

/// A deterministic, well-spread pseudo-random value in [0, 1) (SplitMix64).
fn u(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / 2f64.powi(64)
}

#[test]
fn differences_match_welch_and_proportions() {
    let mut acc = ReuseAcc::new(vec!["spend".into(), "visits".into()], vec!["old".into()]);
    let (mut mi, mut mo) = (Moments::default(), Moments::default());
    let (mut k1, mut n1, mut k0, mut n0) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..2000u64 {
        let inside = u(i) < 0.3;
        let spend = 10.0 * u(i + 10_000) + if inside { 0.5 } else { 0.0 };
        let was_old = u(i + 20_000) < if inside { 0.6 } else { 0.4 };
        acc.push(inside, &[spend, 1.0], &[was_old]);
        if inside {
            mi.push(spend, 0.0);
            n1 += 1;
            k1 += u64::from(was_old);
        } else {
            mo.push(spend, 0.0);
            n0 += 1;
            k0 += u64::from(was_old);
        }
    }
    let h = acc.finish("new", 0.05);
    assert_eq!((h.units_in, h.units_out), (n1, n0));
    let w = welch(&Summary::of_y(&mi), &Summary::of_y(&mo), 0.05).unwrap();
    let b = &h.pre_period[0];
    assert!((b.diff.unwrap() - w.diff).abs() < 1e-12);
    assert_eq!(b.ci.unwrap(), w.ci);
    assert!(b.diff.unwrap() > 0.2, "the 0.5 shift is seen: {b:?}");
    // A constant metric: no variance, no test, said so.
    assert!(h.pre_period[1].error.is_some());
    let p = &h.past_treatment[0];
    let (p1, p0) = (k1 as f64 / n1 as f64, k0 as f64 / n0 as f64);
    assert!((p.share_in - p1).abs() < 1e-15 && (p.share_out - p0).abs() < 1e-15);
    let se = (p1 * (1.0 - p1) / n1 as f64 + p0 * (1.0 - p0) / n0 as f64).sqrt();
    assert!((p.ci[0] - (p1 - p0 - 1.959963984540054 * se)).abs() < 1e-9);
    assert!(p.p_value < 1e-6, "{p:?}");
    assert!(h.warnings.iter().any(|w| w.starts_with("past treatment old")), "{:?}", h.warnings);
}

#[test]
fn a_random_sample_is_healthy() {
    let mut acc = ReuseAcc::new(vec!["spend".into()], vec!["old".into()]);
    for i in 0..20_000u64 {
        acc.push(u(i) < 0.25, &[5.0 * u(i + 50_000)], &[u(i + 90_000) < 0.5]);
    }
    let h = acc.finish("fresh", 0.05);
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    let b = &h.pre_period[0];
    let ci = b.ci.unwrap();
    assert!(ci[0] < 0.0 && ci[1] > 0.0, "{b:?}");
    assert!(b.smd.unwrap().abs() < 0.05);
}
