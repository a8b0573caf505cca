//! What peeking costs: the false-positive rate of an A/A test (no effect) looked at K times,
//! naively (a fixed-horizon test at every look, stopping at the first p < α) and with the
//! sequential tests of `allot_stats::sequential`. The table in docs/stats.md comes from
//!
//! ```sh
//! cargo run --release -p allot-stats --example peeking
//! ```
//!
//! The z statistic of a difference in means observed at K equally spaced looks is a standard
//! Brownian motion read at t = k/K and scaled, `z_k = B(t_k)/√t_k`, simulated exactly from its
//! independent increments (SplitMix64 and Box-Muller, seeded: the table is reproducible).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use allot_stats::dist::norm_ppf;
use allot_stats::power::Sides;
use allot_stats::sequential::{boundaries, msprt, Spending};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.next().max(f64::MIN_POSITIVE);
        let v = self.next();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn main() {
    let alpha = 0.05;
    let reps = 40_000;
    // mSPRT: 10,000 units per arm at the last look, unit variance; τ = 0.05 (about the MDE).
    let (n_max, tau) = (10_000.0, 0.05);
    println!("| looks | naive (p < {alpha} at any look) | O'Brien-Fleming | Pocock | mSPRT (τ = {tau}) |");
    println!("|---|---|---|---|---|");
    let fixed = norm_ppf(1.0 - alpha / 2.0);
    for k in [1usize, 2, 5, 10, 20, 100] {
        let t: Vec<f64> = (1..=k).map(|i| i as f64 / k as f64).collect();
        let obf: Vec<f64> =
            boundaries(Spending::ObrienFleming, alpha, Sides::Two, &t).unwrap().iter().map(|b| b.z).collect();
        let poc: Vec<f64> = boundaries(Spending::Pocock, alpha, Sides::Two, &t).unwrap().iter().map(|b| b.z).collect();
        let mut rng = Rng(20261201 + k as u64);
        let mut hits = [0u32; 4];
        for _ in 0..reps {
            let (mut b, mut prev) = (0.0, 0.0);
            let mut z = Vec::with_capacity(k);
            for &ti in &t {
                b += rng.normal() * (ti - prev).sqrt();
                prev = ti;
                z.push(b / ti.sqrt());
            }
            hits[0] += u32::from(z.iter().any(|z| z.abs() >= fixed));
            hits[1] += u32::from(z.iter().zip(&obf).any(|(z, c)| z.abs() >= *c));
            hits[2] += u32::from(z.iter().zip(&poc).any(|(z, c)| z.abs() >= *c));
            let looks: Vec<(f64, f64)> = z
                .iter()
                .zip(&t)
                .map(|(z, ti)| {
                    let se = (2.0 / (n_max * ti)).sqrt();
                    (z * se, se)
                })
                .collect();
            hits[3] += u32::from(msprt(&looks, tau, alpha).unwrap().last().unwrap().p_value <= alpha);
        }
        let r = |h: u32| format!("{:.3}", f64::from(h) / reps as f64);
        println!("| {k} | {} | {} | {} | {} |", r(hits[0]), r(hits[1]), r(hits[2]), r(hits[3]));
    }
    println!("\n{reps} A/A tests per row, two-sided α = {alpha}; Monte Carlo standard error ≈ 0.001.");
}
