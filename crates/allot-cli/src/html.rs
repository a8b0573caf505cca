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
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="forest plot of {m}">"#,
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
        r#"<text x="{l}" y="{y}" font-size="11">{a}</text><text x="{r}" y="{y}" font-size="11" text-anchor="end">{b}</text></svg>"#,
        l = left,
        r = left + width,
        y = height - 5.0,
        a = fmt(lo),
        b = fmt(hi)
    );
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
            let _ = write!(s, "<h3>{}</h3><table><tr><th>variant</th><th>n</th><th>mean</th></tr>", esc(m));
            for (v, x) in &mv.variants {
                let mean = if x.mean.is_finite() { fmt(x.mean) } else { "-".into() };
                let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(v), x.n, mean);
            }
            s.push_str("</table>");
            s.push_str(&forest(m, &mv.comparisons));
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
    s.push_str(&looks::sections(r));
    s.push_str("</body></html>\n");
    s
}
