//! The HTML of the sequential looks and of the bucket-reuse health: tables of the numbers and
//! inline SVG charts with labelled axes that always include zero.

use super::{esc, fmt};
use allot_stats::analysis::Report;
use allot_stats::looks::{Decision, Series};
use allot_stats::power::Sides;
use std::fmt::Write as _;

/// The chart area: left margin, width, top margin, height.
const L: f64 = 70.0;
const W: f64 = 460.0;
const T: f64 = 15.0;
const H: f64 = 200.0;

/// A linear scale from `[lo, hi]` (widened to include 0) onto pixels.
struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    fn new(values: impl Iterator<Item = f64>) -> Scale {
        let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
        for v in values.filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let span = if hi > lo { hi - lo } else { 1.0 };
        Scale { lo: lo - 0.05 * span, hi: hi + 0.05 * span }
    }

    fn x(&self, v: f64) -> f64 {
        L + (v - self.lo) / (self.hi - self.lo) * W
    }

    fn y(&self, v: f64) -> f64 {
        T + H - (v - self.lo) / (self.hi - self.lo) * H
    }

    /// Five ticks over the range, zero among them when it is inside.
    fn ticks(&self) -> Vec<f64> {
        let step = (self.hi - self.lo) / 4.0;
        let mut t: Vec<f64> = (0..5).map(|i| self.lo + step * i as f64).collect();
        if self.lo < 0.0 && self.hi > 0.0 {
            t.push(0.0);
        }
        t
    }
}

/// The axes, their ticks and titles, and a dashed line at y = 0.
fn axes(s: &mut String, xs: &Scale, ys: &Scale, x_title: &str, y_title: &str) {
    let (x0, x1, y0, y1) = (L, L + W, T + H, T);
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#444"/>"##
    );
    for t in xs.ticks() {
        let x = xs.x(t);
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="#444"/><text x="{x}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            y0 + 4.0,
            y0 + 15.0,
            fmt(t)
        );
    }
    for t in ys.ticks() {
        let y = ys.y(t);
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{x0}" y2="{y}" stroke="#444"/><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            x0 - 6.0,
            y + 3.0,
            fmt(t)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{z}" x2="{x1}" y2="{z}" stroke="#888" stroke-dasharray="4 3"/><text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="14" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"##,
        L + W / 2.0,
        T + H + 32.0,
        esc(x_title),
        T + H / 2.0,
        T + H / 2.0,
        esc(y_title),
        z = ys.y(0.0)
    );
}

fn svg_open(s: &mut String, label: &str) {
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="{}">"#,
        L + W + 20.0,
        T + H + 42.0,
        esc(label)
    );
}

fn polyline(s: &mut String, pts: &[(f64, f64)], colour: &str, dash: bool) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let d = if dash { r#" stroke-dasharray="6 3""# } else { "" };
    let _ = write!(s, r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{d}/>"#, p.join(" "));
}

fn dot(s: &mut String, x: f64, y: f64, colour: &str, title: &str) {
    let _ =
        write!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{colour}"><title>{}</title></circle>"#, esc(title));
}

/// A group-sequential series: z at each look and the bounds, against the information fraction.
fn group_chart(x: &Series, sides: Sides) -> String {
    let xs = Scale { lo: 0.0, hi: 1.0 };
    let bounds: Vec<f64> = x.looks.iter().filter_map(|l| l.bound).collect();
    let lower = sides == Sides::Two;
    let ys = Scale::new(
        x.looks.iter().map(|l| l.z).chain(bounds.iter().copied()).chain(bounds.iter().filter(|_| lower).map(|b| -b)),
    );
    let mut s = String::new();
    svg_open(&mut s, &format!("sequential looks of {} {}", x.experiment, x.metric));
    axes(&mut s, &xs, &ys, "information fraction (units / planned maximum)", "z statistic");
    let up: Vec<(f64, f64)> = x.looks.iter().filter_map(|l| Some((xs.x(l.fraction?), ys.y(l.bound?)))).collect();
    polyline(&mut s, &up, "#b00020", true);
    if lower {
        let lo: Vec<(f64, f64)> = x.looks.iter().filter_map(|l| Some((xs.x(l.fraction?), ys.y(-l.bound?)))).collect();
        polyline(&mut s, &lo, "#b00020", true);
    }
    let zs: Vec<(f64, f64)> = x.looks.iter().filter_map(|l| Some((xs.x(l.fraction?), ys.y(l.z)))).collect();
    polyline(&mut s, &zs, "#2957a4", false);
    let _ = write!(
        s,
        r##"<text x="{lx}" y="{}" font-size="11" fill="#2957a4" text-anchor="end">— z at each look</text><text x="{lx}" y="{}" font-size="11" fill="#b00020" text-anchor="end">- - bounds (reject beyond)</text>"##,
        T + 10.0,
        T + 24.0,
        lx = L + W - 4.0
    );
    for l in &x.looks {
        if let Some(t) = l.fraction {
            let b = l.bound.map_or_else(|| "none".to_string(), fmt);
            dot(
                &mut s,
                xs.x(t),
                ys.y(l.z),
                "#2957a4",
                &format!("look {}: t = {}, z = {}, bound {b}", l.look, fmt(t), fmt(l.z)),
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// An mSPRT series: the difference and its confidence sequence at each look, against units.
fn msprt_chart(x: &Series) -> String {
    let xs = Scale::new(x.looks.iter().map(|l| l.units as f64));
    let ys = Scale::new(x.looks.iter().flat_map(|l| {
        let ci = l.ci.unwrap_or([l.diff, l.diff]);
        [l.diff, ci[0], ci[1]]
    }));
    let mut s = String::new();
    svg_open(&mut s, &format!("confidence sequence of {} {}", x.experiment, x.metric));
    axes(&mut s, &xs, &ys, "units at the look", "difference (treatment − control)");
    for l in &x.looks {
        let px = xs.x(l.units as f64);
        if let Some(ci) = l.ci.filter(|c| c[0].is_finite() && c[1].is_finite()) {
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#1b7f5b" stroke-width="2"/>"##,
                ys.y(ci[0]),
                ys.y(ci[1])
            );
        }
        dot(&mut s, px, ys.y(l.diff), "#1b7f5b", &format!("look {}: {} units, diff {}", l.look, l.units, fmt(l.diff)));
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" fill="#1b7f5b" text-anchor="end">difference and its confidence sequence (reject when it excludes 0)</text>"##,
        L + W - 4.0,
        T + 10.0
    );
    s.push_str("</svg>");
    s
}

fn decision(d: Decision) -> &'static str {
    match d {
        Decision::Continue => "continue",
        Decision::Reject => "reject: significant",
        Decision::NoEffect => "final: not significant",
        Decision::Stopped => "stopped earlier",
    }
}

fn opt(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or_else(|| "-".to_string(), fmt)
}

/// The sequential section.
fn sequential(r: &Report) -> String {
    let Some(q) = &r.sequential else { return String::new() };
    let mut s = String::new();
    let sides = if q.sides == Sides::Two { "two-sided" } else { "one-sided" };
    let _ = write!(s, "<h2>Sequential looks</h2><p>{}, {sides}, α = {}.</p>", q.method.name(), fmt(q.alpha));
    for x in &q.series {
        let d = x.decision.map_or("-", decision);
        let class = if x.decision == Some(Decision::Reject) { "bad" } else { "ok" };
        let _ = write!(
            s,
            "<h3>{} · {}: {} vs {}</h3><p class=\"{class}\">Decision: {}</p>",
            esc(&x.experiment),
            esc(&x.metric),
            esc(&x.variant),
            esc(&x.control),
            esc(d)
        );
        if let Some(e) = &x.error {
            let _ = write!(s, "<p>Not computed: {}</p>", esc(e));
        }
        if x.looks.is_empty() {
            continue;
        }
        s.push_str("<table><tr><th>look</th><th>units</th><th>fraction</th><th>diff</th><th>z</th><th>bound</th><th>α spent</th><th>always-valid p</th><th>interval</th><th>decision</th></tr>");
        for l in &x.looks {
            let ci = l.ci.map_or_else(|| "-".to_string(), |c| format!("[{}, {}]", fmt(c[0]), fmt(c[1])));
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ci}</td><td>{}</td></tr>",
                l.look,
                l.units,
                opt(l.fraction),
                fmt(l.diff),
                fmt(l.z),
                opt(l.bound),
                opt(l.spent_alpha),
                opt(l.p_value),
                decision(l.decision)
            );
        }
        s.push_str("</table>");
        s.push_str(&if x.max_units.is_some() { group_chart(x, q.sides) } else { msprt_chart(x) });
    }
    s
}

/// Rows of intervals (label, estimate, low, high) on one axis with zero.
fn intervals(label: &str, axis: &str, rows: &[(String, f64, f64, f64)]) -> String {
    let ys_rows = rows.len().max(1) as f64;
    let xs = Scale::new(rows.iter().flat_map(|r| [r.1, r.2, r.3]));
    let row_h = 24.0;
    let height = 30.0 + row_h * ys_rows + 30.0;
    let mut s = String::new();
    let left = 200.0;
    let x = |v: f64| left + (xs.x(v) - L) / W * 380.0;
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" role="img" aria-label="{}">"#,
        left + 400.0,
        esc(label)
    );
    let base = height - 30.0;
    let _ = write!(
        s,
        r##"<line x1="{}" y1="10" x2="{}" y2="{base}" stroke="#888" stroke-dasharray="4 3"/><line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="#444"/>"##,
        x(0.0),
        x(0.0),
        left + 380.0
    );
    for t in xs.ticks() {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            x(t),
            base + 12.0,
            fmt(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        left + 190.0,
        base + 26.0,
        esc(axis)
    );
    for (i, (name, e, lo, hi)) in rows.iter().enumerate() {
        let y = 25.0 + row_h * i as f64;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text><line x1="{:.1}" y1="{y}" x2="{:.1}" y2="{y}" stroke="#2957a4" stroke-width="2"/>"##,
            left - 8.0,
            y + 4.0,
            esc(name),
            x(*lo),
            x(*hi)
        );
        dot(&mut s, x(*e), y, "#2957a4", &format!("{name}: {} [{}, {}]", fmt(*e), fmt(*lo), fmt(*hi)));
    }
    s.push_str("</svg>");
    s
}

/// The bucket-reuse health section.
fn reuse(r: &Report) -> String {
    let Some(list) = &r.reuse_health else { return String::new() };
    let mut s = String::from(
        "<h2>Bucket-reuse health</h2><p>Each experiment's drawn buckets against the rest of the population: pre-period metrics and past treatment (Schultzberg, Kjellin, Rydberg 2020).</p>",
    );
    for h in list {
        let _ = write!(s, "<h3>{}</h3>", esc(&h.experiment));
        if let Some(e) = &h.error {
            let _ = write!(s, "<p>Not measured: {}</p>", esc(e));
            continue;
        }
        let _ = write!(s, "<p>{} units in its buckets, {} outside.</p>", h.units_in, h.units_out);
        if h.warnings.is_empty() {
            s.push_str("<p class=\"ok\">No imbalance flagged.</p>");
        }
        for w in &h.warnings {
            let _ = write!(s, "<p class=\"bad\">{}</p>", esc(w));
        }
        s.push_str("<table><tr><th>pre-period metric</th><th>mean in</th><th>mean out</th><th>diff</th><th>interval</th><th>p</th><th>standardized</th></tr>");
        let mut rows = vec![];
        for b in &h.pre_period {
            let ci = b.ci.map_or_else(|| "-".to_string(), |c| format!("[{}, {}]", fmt(c[0]), fmt(c[1])));
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ci}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.metric),
                opt(Some(b.mean_in)),
                opt(Some(b.mean_out)),
                opt(b.diff),
                opt(b.p_value),
                opt(b.smd)
            );
            if let (Some(d), Some(c)) = (b.diff, b.ci) {
                rows.push((b.metric.clone(), d, c[0], c[1]));
            }
        }
        s.push_str("</table>");
        if !rows.is_empty() {
            s.push_str(&intervals("pre-period differences", "difference in the pre-period (in − out)", &rows));
        }
        if h.past_treatment.is_empty() {
            s.push_str("<p>No earlier experiment's buckets were released before it was drawn.</p>");
            continue;
        }
        s.push_str("<table><tr><th>earlier experiment</th><th>share in</th><th>share out</th><th>diff</th><th>interval</th><th>p</th></tr>");
        let mut rows = vec![];
        for p in &h.past_treatment {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td></tr>",
                esc(&p.experiment),
                fmt(p.share_in),
                fmt(p.share_out),
                fmt(p.diff),
                fmt(p.ci[0]),
                fmt(p.ci[1]),
                fmt(p.p_value)
            );
            rows.push((p.experiment.clone(), p.diff, p.ci[0], p.ci[1]));
        }
        s.push_str("</table>");
        s.push_str(&intervals("past treatment differences", "share that had been in it (in − out)", &rows));
    }
    s
}

/// Both sections, empty when neither was asked for.
pub fn sections(r: &Report) -> String {
    let mut s = sequential(r);
    s.push_str(&reuse(r));
    s
}
