use allot_stats::correct::{adjust, Method};
use allot_stats::estimate::{cuped, cuped_theta, relative, welch, Summary};
use allot_stats::interaction::contrasts;
use allot_stats::power::{mde, power, sample_size, Design, Metric, Sides};
use allot_stats::srm::srm;
use allot_stats::Moments;
use serde_json::Value;
use std::sync::OnceLock;

fn golden() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| serde_json::from_str(include_str!("../../../../spec/stats/golden.json")).unwrap())
}

/// Relative tolerance 1e-6 (absolute 1e-12 near zero).
#[track_caller]
fn close(what: &str, got: f64, want: f64) {
    let ok = (got - want).abs() <= 1e-6 * want.abs() || (got - want).abs() <= 1e-12;
    assert!(ok, "{what}: got {got}, want {want} (rel err {:e})", ((got - want) / want).abs());
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k}"))
}

fn moments_y(y: &[f64]) -> Moments {
    let mut m = Moments::default();
    for &v in y {
        m.push(v, 0.0);
    }
    m
}

fn moments_yx(y: &[f64], x: &[f64]) -> Moments {
    let mut m = Moments::default();
    for (&a, &b) in y.iter().zip(x) {
        m.push(a, b);
    }
    m
}

#[test]
fn welch_and_delta_method() {
    let cases = golden()["welch"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let alpha = f(c, "alpha");
        let t = Summary::of_y(&moments_y(&floats(&c["treatment"])));
        let k = Summary::of_y(&moments_y(&floats(&c["control"])));
        let w = welch(&t, &k, alpha).unwrap();
        close(&format!("{name} diff"), w.diff, f(c, "diff"));
        close(&format!("{name} t"), w.t, f(c, "t"));
        close(&format!("{name} df"), w.df, f(c, "df"));
        close(&format!("{name} p"), w.p_value, f(c, "p_value"));
        let ci = floats(&c["ci"]);
        close(&format!("{name} ci lo"), w.ci[0], ci[0]);
        close(&format!("{name} ci hi"), w.ci[1], ci[1]);
        let r = relative(&t, &k, alpha).unwrap();
        close(&format!("{name} lift"), r.lift, f(c, "relative"));
        close(&format!("{name} lift se"), r.se, f(c, "relative_se"));
        let rci = floats(&c["relative_ci"]);
        close(&format!("{name} lift lo"), r.ci[0], rci[0]);
        close(&format!("{name} lift hi"), r.ci[1], rci[1]);
    }
}

#[test]
fn merged_moments_equal_sequential() {
    let c = &golden()["welch"][1];
    let y = floats(&c["treatment"]);
    let whole = moments_y(&y);
    let mut a = moments_y(&y[..77]);
    a.merge(&moments_y(&y[77..]));
    close("n", a.n as f64, whole.n as f64);
    close("mean", a.mean_y, whole.mean_y);
    close("m2", a.m2_y, whole.m2_y);
}

#[test]
fn cuped_matches_adjusted_arrays() {
    let cases = golden()["cuped"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let t = moments_yx(&floats(&c["treatment_y"]), &floats(&c["treatment_x"]));
        let k = moments_yx(&floats(&c["control_y"]), &floats(&c["control_x"]));
        let theta = cuped_theta([&t, &k]);
        close(&format!("{name} theta"), theta, f(c, "theta"));
        let r = cuped(&t, &k, theta, f(c, "alpha")).unwrap();
        close(&format!("{name} diff"), r.welch.diff, f(c, "diff"));
        close(&format!("{name} p"), r.welch.p_value, f(c, "p_value"));
        let ci = floats(&c["ci"]);
        close(&format!("{name} lo"), r.welch.ci[0], ci[0]);
        close(&format!("{name} hi"), r.welch.ci[1], ci[1]);
        close(&format!("{name} reduction"), r.variance_reduction, f(c, "variance_reduction"));
    }
}

#[test]
fn srm_chi_square() {
    let cases = golden()["srm"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let counts: Vec<u64> = c["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let r = srm(&counts, &floats(&c["weights"])).unwrap();
        close(&format!("{counts:?} chi2"), r.chi2, f(c, "chi2"));
        close(&format!("{counts:?} p"), r.p_value, f(c, "p_value"));
    }
}

#[test]
fn corrections() {
    let cases = golden()["corrections"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let p = floats(&c["p"]);
        for (name, m) in [("bonferroni", Method::Bonferroni), ("holm", Method::Holm), ("bh", Method::Bh)] {
            let got = adjust(&p, m);
            let want = floats(&c[name]);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                close(&format!("{name}[{i}] of {p:?}"), *g, *w);
            }
        }
    }
}

#[test]
fn power_sample_size_mde() {
    let cases = golden()["power"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for c in cases {
        let metric = if c["kind"] == "proportion" {
            Metric::Proportion { baseline: f(c, "baseline") }
        } else {
            Metric::Mean { mean: f(c, "baseline"), sd: f(c, "sd") }
        };
        let design = Design {
            alpha: f(c, "alpha"),
            sides: if c["sides"] == "two" { Sides::Two } else { Sides::One },
            weights: floats(&c["weights"]),
            rho: f(c, "rho"),
        };
        let (n, d, target) = (f(c, "n_total"), f(c, "mde"), f(c, "target_power"));
        let name = format!("{c}");
        close(&format!("power {name}"), power(&metric, &design, n, d).unwrap(), f(c, "power"));
        if let Some(sm) = c["statsmodels_power"].as_f64() {
            close(&format!("NormalIndPower {name}"), power(&metric, &design, n, d).unwrap(), sm);
        }
        close(&format!("n {name}"), sample_size(&metric, &design, d, target).unwrap(), f(c, "sample_size"));
        close(&format!("mde {name}"), mde(&metric, &design, n, target).unwrap(), f(c, "mde_at_n"));
        // Any two give the third: round trips.
        let n2 = sample_size(&metric, &design, d, target).unwrap();
        close(&format!("round trip {name}"), power(&metric, &design, n2, d).unwrap(), target);
    }
}

#[test]
fn interaction_contrasts() {
    let cases = golden()["interaction"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let (k, m) = (c["k"].as_u64().unwrap() as usize, c["m"].as_u64().unwrap() as usize);
        let mut cells = vec![vec![Moments::default(); m]; k];
        let a = c["a"].as_array().unwrap();
        let b = c["b"].as_array().unwrap();
        for ((ai, bi), y) in a.iter().zip(b).zip(floats(&c["y"])) {
            cells[ai.as_u64().unwrap() as usize][bi.as_u64().unwrap() as usize].push(y, 0.0);
        }
        let table: Vec<Vec<Summary>> = cells.iter().map(|r| r.iter().map(Summary::of_y).collect()).collect();
        let got = contrasts(&table).unwrap();
        let want = c["contrasts"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.a, g.b), (w["a"].as_u64().unwrap() as usize, w["b"].as_u64().unwrap() as usize));
            close("estimate", g.estimate, f(w, "estimate"));
            close("se", g.se, f(w, "se"));
            close("p", g.p_value, f(w, "p_value"));
        }
    }
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    let e = srm(&[1, 2], &[1.0]).unwrap_err();
    assert!(e.to_string().starts_with("weights"), "{e}");
    let e = power(&Metric::Proportion { baseline: 1.5 }, &Design::simple(0.05), 100.0, 0.01).unwrap_err();
    assert!(e.to_string().starts_with("baseline"), "{e}");
    let e = sample_size(&Metric::Proportion { baseline: 0.1 }, &Design::simple(1.5), 0.01, 0.8).unwrap_err();
    assert!(e.to_string().starts_with("alpha"), "{e}");
    let one = Summary { n: 1, mean: 0.0, var: f64::NAN };
    assert!(welch(&one, &one, 0.05).is_err());
}

#[test]
fn power_edge_cases() {
    let p = Metric::Proportion { baseline: 0.1 };
    let mut one = Design::simple(0.05);
    one.sides = Sides::One;
    assert!(sample_size(&p, &one, 0.01, 0.04).is_err());
    // An effect beyond the rate's range is refused; a tiny sample gives an error, not a loop.
    assert!(power(&p, &Design::simple(0.05), 1000.0, 0.95).is_err());
    assert!(mde(&p, &Design::simple(0.05), 2.0, 0.99).is_err());
    // CUPED with rho shrinks the sample size by exactly (1 − rho²) for means.
    let m = Metric::Mean { mean: 1.0, sd: 2.0 };
    let mut d = Design::simple(0.05);
    let n0 = sample_size(&m, &d, 0.1, 0.8).unwrap();
    d.rho = 0.6;
    close("cuped factor", sample_size(&m, &d, 0.1, 0.8).unwrap() / n0, 1.0 - 0.36);
}
