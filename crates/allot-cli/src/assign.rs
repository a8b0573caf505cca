//! `allot assign`: streams contexts (one JSON object per line) through the compiled snapshot.
//! Memory stays flat whatever the input size: lines are read, evaluated and written in chunks,
//! two chunks at a time on the machine's cores, in input order.

use crate::files::read_state;
use crate::AssignFormat;
use allot_core::eval::{Assignment, NoSticky, Snapshot};
use allot_core::Context;
use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

const CHUNK: usize = 8192;

struct Prepared {
    snap: Snapshot,
    /// Indices of the experiments to report.
    selected: Vec<usize>,
    /// `"<id>":` JSON-escaped, per experiment.
    keys: Vec<String>,
    /// Variant names JSON-escaped, per experiment.
    names: Vec<Vec<String>>,
    /// Unit type names JSON-escaped.
    spaces: Vec<String>,
}

/// Runs the command.
pub fn run(state_file: &Path, units: &str, format: AssignFormat, only: &[String]) -> Result<ExitCode> {
    let state = read_state(state_file)?;
    if state.version == 0 {
        anyhow::bail!("nothing applied yet ({} has no state): run `allot apply` first", state_file.display());
    }
    let snap = Snapshot::compile(&state).map_err(|es| anyhow::anyhow!("{}", allot_core::Errors(es)))?;
    let selected: Vec<usize> = if only.is_empty() {
        (0..snap.experiments.len()).collect()
    } else {
        only.iter()
            .map(|id| snap.index_of(id).ok_or_else(|| anyhow::anyhow!("--experiments: unknown experiment `{id}`")))
            .collect::<Result<_>>()?
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let prepared = Prepared {
        keys: snap.experiments.iter().map(|e| q(&e.id)).collect(),
        names: snap.experiments.iter().map(|e| e.split.names.iter().map(|n| q(n)).collect()).collect(),
        spaces: snap.spaces.iter().map(|s| q(&s.name)).collect(),
        selected,
        snap,
    };
    let (input, len): (Box<dyn Read>, Option<u64>) = if units == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(units).with_context(|| format!("--units: cannot open {units}"))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        b.set_draw_target(ProgressDrawTarget::stderr());
        b
    } else {
        ProgressBar::hidden()
    };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    if format == AssignFormat::Csv {
        writeln!(out, "unit,experiment,variant,reason")?;
    }
    let mut line_no = 0usize;
    let mut bad = 0usize;
    loop {
        let a = read_chunk(&mut reader)?;
        let b = if a.len() == CHUNK { read_chunk(&mut reader)? } else { vec![] };
        if a.is_empty() {
            break;
        }
        let bytes: u64 = a.iter().chain(&b).map(|l| l.len() as u64).sum();
        let (ra, rb) = std::thread::scope(|s| {
            let h = s.spawn(|| process(&prepared, &b, format, line_no + a.len()));
            let ra = process(&prepared, &a, format, line_no);
            (ra, h.join())
        });
        let rb = rb.map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        for (buf, errs) in [ra, rb] {
            out.write_all(&buf)?;
            for e in errs {
                bad += 1;
                eprintln!("error: {e}");
            }
        }
        line_no += a.len() + b.len();
        bar.inc(if len.is_some() { bytes } else { (a.len() + b.len()) as u64 });
    }
    out.flush()?;
    bar.finish_and_clear();
    if bad > 0 {
        eprintln!("{bad} line(s) of {line_no} could not be read; the others were assigned");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_chunk(r: &mut impl BufRead) -> Result<Vec<String>> {
    let mut lines = Vec::with_capacity(CHUNK);
    while lines.len() < CHUNK {
        let mut line = String::new();
        if r.read_line(&mut line).context("reading --units")? == 0 {
            break;
        }
        lines.push(line);
    }
    Ok(lines)
}

fn process(p: &Prepared, lines: &[String], format: AssignFormat, first: usize) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::with_capacity(lines.len() * 64 * (1 + p.selected.len()));
    let mut errs = vec![];
    let mut results: Vec<Assignment> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let ctx: Context = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                errs.push(format!("line {}: expected a JSON object of context attributes", first + i + 1));
                continue;
            }
            Err(e) => {
                errs.push(format!("line {}: invalid JSON: {e}", first + i + 1));
                continue;
            }
        };
        p.snap.evaluate_all(&ctx, &NoSticky, &mut results);
        match format {
            AssignFormat::Jsonl => write_jsonl(p, &ctx, &results, &mut out),
            AssignFormat::Csv => write_csv(p, &ctx, &results, &mut out),
        }
    }
    (out, errs)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_jsonl(p: &Prepared, ctx: &Context, results: &[Assignment], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"unit\":{");
    let mut first = true;
    for (s, name) in p.spaces.iter().enumerate() {
        if let Some(u) = p.snap.unit_id(s, ctx) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            push_json_str(out, &u);
        }
    }
    out.extend_from_slice(b"},\"assignments\":{");
    for (k, &i) in p.selected.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let a = results[i];
        out.extend_from_slice(p.keys[i].as_bytes());
        out.extend_from_slice(b":{\"variant\":");
        match a.variant {
            Some(v) => out.extend_from_slice(p.names[i][v as usize].as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(a.reason.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"}}\n");
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn write_csv(p: &Prepared, ctx: &Context, results: &[Assignment], out: &mut Vec<u8>) {
    for &i in &p.selected {
        let e = &p.snap.experiments[i];
        let unit = p.snap.unit_id(e.space, ctx);
        csv_field(out, unit.as_deref().unwrap_or(""));
        out.push(b',');
        csv_field(out, &e.id);
        out.push(b',');
        if let Some(v) = p.snap.variant_name(i, &results[i]) {
            csv_field(out, v);
        }
        out.push(b',');
        out.extend_from_slice(results[i].reason.as_str().as_bytes());
        out.push(b'\n');
    }
}
