//! The HTML report of `allot analyze`: one self-contained page, inline CSS and SVG, no scripts and
//! no external references, so that it opens in a browser without a network.

use allot_stats::analysis::{Comparison, CupedReport, Report};
use std::fmt::Write as _;

mod looks;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt(x: f64) -> String {
    if x.abs() >= 1000.0 || (x != 0.0 && x.abs() < 0.001) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// A forest plot of one metric: per comparison, the raw and the CUPED interval of the absolute
/// difference, with a line at zero.
fn forest(metric: &str, comps: &[Comparison]) -> String {
    // (label, estimate, lo, hi, cuped?): only intervals whose three numbers are finite.
    let finite = |d: f64, ci: [f64; 2]| [d, ci[0], ci[1]].iter().all(|x| x.is_finite());
    let mut rows: Vec<(String, f64, f64, f64, bool)> = vec![];
    for c in comps {
        let v = &c.variant;
        if let (Some(d), Some(ci)) = (c.diff, c.ci) {
            if finite(d, ci) {
                rows.push((format!("{v} (raw)"), d, ci[0], ci[1], false));
            }
        }
        if let Some(CupedReport::Estimate { diff, ci, .. }) = &c.cuped {
            if finite(*diff, *ci) {
                rows.push((format!("{v} (CUPED)"), *diff, ci[0], ci[1], true));
            }
        }
    }
    if rows.is_empty() {
        return format!("<p>{}: no comparison could be computed.</p>", esc(metric));
    }
    let lo = rows.iter().map(|r| r.2).fold(0.0_f64, f64::min);
    let hi = rows.iter().map(|r| r.3).fold(0.0_f64, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = (lo - 0.05 * span, hi + 0.05 * span);
    let (left, width, row_h) = (170.0, 420.0, 26.0);
    let x = |v: f64| left + (v - lo) / (hi - lo) * width;
    let height = 40.0 + row_h * rows.len() as f64;
    // Below the plot: the axis' caption.
    let svg_h = height + 18.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{svg_h}" role="img" aria-label="forest plot of {m}">"#,
        w = left + width + 20.0,
        m = esc(metric)
    );
    let _ = write!(
        s,
        r##"<line x1="{z}" y1="10" x2="{z}" y2="{y2}" stroke="#888" stroke-dasharray="4 3"/>"##,
        z = x(0.0),
        y2 = height - 20.0
    );
    for (i, (label, d, l, h, cu)) in rows.iter().enumerate() {
        let y = 25.0 + row_h * i as f64;
        let colour = if *cu { "#1b7f5b" } else { "#2957a4" };
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty}" font-size="12" text-anchor="end">{label}</text><line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="2"/><circle cx="{cx}" cy="{y}" r="4" fill="{colour}"><title>{t}</title></circle>"#,
            tx = left - 8.0,
            ty = y + 4.0,
            label = esc(label),
            x1 = x(*l),
            x2 = x(*h),
            cx = x(*d),
            t = esc(&format!("{label}: {} [{}, {}]", fmt(*d), fmt(*l), fmt(*h)))
        );
    }
    let _ = write!(
        s,
        r#"<text x="{l}" y="{y}" font-size="11">{a}</text>{zero}<text x="{r}" y="{y}" font-size="11" text-anchor="end">{b}</text>"#,
        l = left,
        // The zero tick's label, unless it would overlap an end's.
        zero = if x(0.0) - left > 45.0 && left + width - x(0.0) > 45.0 {
            format!(r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">0</text>"#, x(0.0), height - 5.0)
        } else {
            String::new()
        },
        r = left + width,
        y = height - 5.0,
        a = fmt(lo),
        b = fmt(hi)
    );
    let _ = write!(
        s,
        r#"<text x="{c}" y="{y}" font-size="11" text-anchor="middle">difference in {m}, variant − control (dashed: no difference)</text></svg>"#,
        c = left + width / 2.0,
        y = height + 12.0,
        m = esc(metric)
    );
    s
}

/// A number or a dash.
fn num(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| "-".into(), fmt)
}

/// `[lo, hi]` or a dash.
fn ci(x: Option<[f64; 2]>) -> String {
    x.filter(|c| c.iter().all(|v| v.is_finite()))
        .map_or_else(|| "-".into(), |[a, b]| format!("[{}, {}]", fmt(a), fmt(b)))
}

/// The numbers the forest plot draws, and those it does not: p-values, lift, CUPED's reduction.
fn comparisons(comps: &[Comparison], alpha: f64) -> String {
    let level = format!("{}%", format!("{:.4}", (1.0 - alpha) * 100.0).trim_end_matches('0').trim_end_matches('.'));
    let mut s = format!(
        "<table class=\"comparisons\"><tr><th>variant</th><th>difference</th><th>{level} interval</th><th>p-value</th><th>Holm</th><th>lift</th><th>lift interval</th><th>CUPED difference</th><th>CUPED interval</th><th>variance reduction</th></tr>"
    );
    for c in comps {
        let pct =
            |x: Option<f64>| x.filter(|x| x.is_finite()).map_or_else(|| "-".into(), |x| format!("{:+.2}%", x * 100.0));
        let pct_ci = |x: Option<[f64; 2]>| {
            x.filter(|c| c.iter().all(|v| v.is_finite()))
                .map_or_else(|| "-".into(), |[a, b]| format!("[{:+.2}%, {:+.2}%]", a * 100.0, b * 100.0))
        };
        let (cd, cci, red) = match &c.cuped {
            Some(CupedReport::Estimate { diff, ci: i, variance_reduction, .. }) => {
                (num(Some(*diff)), ci(Some(*i)), format!("{:.1}%", variance_reduction * 100.0))
            }
            Some(CupedReport::Failed { error }) => (esc(error), "-".into(), "-".into()),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let diff = match (c.diff, &c.error) {
            (Some(d), _) => num(Some(d)),
            (None, Some(e)) => esc(e),
            (None, None) => "-".into(),
        };
        let _ = write!(
            s,
            "<tr><td>{} vs {}</td><td>{diff}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{cd}</td><td>{cci}</td><td>{red}</td></tr>",
            esc(&c.variant),
            esc(&c.control),
            ci(c.ci),
            num(c.p_value),
            num(c.p_adjusted.map(|a| a.holm)),
            pct(c.relative),
            pct_ci(c.relative_ci),
        );
    }
    s.push_str("</table>");
    s
}

/// Counts and the exposure issues, as the text report's "Diagnostics".
fn diagnostics(r: &Report) -> String {
    let d = &r.diagnostics;
    let mut s = String::from("<h2>Diagnostics</h2><ul>");
    let _ = write!(
        s,
        "<li>{} exposure rows, {} units, {} metric rows, {} metric rows without exposure</li>",
        d.exposure_rows, d.units, d.metric_rows, d.metric_rows_without_exposure
    );
    if let Some(n) = d.exposure_rows_left_out.filter(|n| *n > 0) {
        let _ = write!(s, "<li class=\"bad\">exposure rows without a unit, variant or time, left out: {n}</li>");
    }
    for (k, v) in &d.exposure_issues {
        if v.count > 0 {
            let _ = write!(s, "<li class=\"bad\">{}: {}</li>", esc(k.key()), v.count);
        }
    }
    if d.reused_after_stop.count > 0 {
        let _ = write!(
            s,
            "<li>reused after stop: {} (not a violation: units of exclusive experiments that did not run at once, bucket reuse)</li>",
            d.reused_after_stop.count
        );
    }
    if !d.config {
        s.push_str("<li>no configuration: exclusivity not checked, SRM against an even split</li>");
    }
    let _ = write!(s, "<li>alpha {}</li></ul>", fmt(d.alpha));
    s
}

/// The whole report as one HTML document.
pub fn report(r: &Report) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>allot analysis</title><style>\
body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}table{border-collapse:collapse}\
td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}.bad{color:#b00020;font-weight:bold}\
.ok{color:#1b7f5b}</style></head><body><h1>allot analysis</h1>\n",
    );
    for (id, e) in &r.experiments {
        let _ = write!(s, "<h2>{}</h2>", esc(id));
        let verdict = match e.srm.p_value().filter(|p| p.is_finite()) {
            Some(p) if p < allot_stats::srm::SRM_THRESHOLD => {
                format!("<p class=\"bad\">Sample ratio mismatch: p = {p:.2e}. Do not trust these results.</p>")
            }
            Some(p) => format!("<p class=\"ok\">No sample ratio mismatch (p = {}).</p>", fmt(p)),
            None => "<p>SRM test not computable.</p>".to_string(),
        };
        s.push_str(&verdict);
        let counts: Vec<String> = e.srm.counts().iter().map(|(k, v)| format!("{} {}", esc(k), v)).collect();
        let _ = write!(s, "<p>Units: {}</p>", counts.join(", "));
        for (m, mv) in &e.metrics {
            let _ = write!(s, "<h3>{}</h3><table><tr><th>variant</th><th>n</th><th>mean</th><th>sd</th></tr>", esc(m));
            for (v, x) in &mv.variants {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(v),
                    x.n,
                    num(Some(x.mean)),
                    num(Some(x.sd))
                );
            }
            s.push_str("</table>");
            s.push_str(&forest(m, &mv.comparisons));
            s.push_str(&comparisons(&mv.comparisons, r.diagnostics.alpha));
        }
    }
    if !r.interactions.is_empty() || !r.interactions_skipped.is_empty() {
        s.push_str("<h2>Interactions</h2><ul>");
        for i in &r.interactions {
            let flag = if i.should_be_exclusive == Some(true) {
                " <span class=\"bad\">should have been exclusive</span>"
            } else {
                ""
            };
            let _ = write!(
                s,
                "<li>{} × {}: {} shared units{flag}</li>",
                esc(&i.experiments[0]),
                esc(&i.experiments[1]),
                i.units
            );
        }
        for i in &r.interactions_skipped {
            let _ = write!(
                s,
                "<li>{} × {}: {} shared units, no interaction test: {}</li>",
                esc(&i.experiments[0]),
                esc(&i.experiments[1]),
                i.units,
                esc(&i.reason)
            );
        }
        s.push_str("</ul>");
    }
    s.push_str(&diagnostics(r));
    s.push_str(&looks::sections(r));
    s.push_str("</body></html>\n");
    s
}
