//! The commands other than `assign`.

use crate::files::{now, read_config, read_state, state_path, write_state};
use crate::{Cli, Command, Format};
use allot_core::audit::audit;
use allot_core::config::{self, fmt_num, Config};
use allot_core::history::{bucket_report, unit_report};
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::salt::resalt_all;
use allot_core::state::State;
use allot_core::FieldError;
use anyhow::{Context as _, Result};
use serde_json::json;
use std::process::ExitCode;

/// Runs a command; `Err` is an operational failure (exit 2), `Ok(1)` a finding (exit 1). With
/// `--format json`, an operational failure (an unreadable file, a corrupt state) is printed as
/// JSON too, `{"ok": false, "errors": [{"path": "", "message": …}]}`, still with exit 2.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let format = match &cli.command {
        Command::Check { format }
        | Command::Plan { format, .. }
        | Command::Apply { format, .. }
        | Command::Audit { format }
        | Command::Trace { format, .. }
        | Command::Resalt { format, .. } => *format,
        _ => Format::Text,
    };
    match run_command(cli) {
        Err(e) if format == Format::Json && !crate::closed_pipe(&e) => {
            println!("{}", json!({"ok": false, "errors": [FieldError::new("", format!("{e:#}"))]}));
            Ok(ExitCode::from(2))
        }
        other => other,
    }
}

fn run_command(cli: &Cli) -> Result<ExitCode> {
    let state_file = state_path(&cli.config, cli.state.as_ref());
    match &cli.command {
        Command::Capacity(args) => crate::capacity::run(cli, args),
        Command::Analyze(args) => crate::analyze::run(cli, args),
        Command::ReuseHealth(args) => crate::reuse::run(&state_file, args),
        Command::Check { format } => check(cli, &state_file, *format),
        Command::Compat { system } => crate::compat::run(system, cli.state.as_ref()),
        Command::Plan { format, exit_code, sample } => {
            let (cfg, raw, state) = match load(cli, &state_file)? {
                Ok(x) => x,
                Err(es) => return Ok(report_errors(&es, *format)),
            };
            let sample = sample.as_deref().map(read_sample).transpose()?;
            match plan::plan(&state, &cfg, &raw, &Options { time: now(), ..Options::default() }) {
                Ok(mut p) => {
                    if let Some(contexts) = &sample {
                        if let Err(es) = p.measure(&state, contexts) {
                            return Ok(report_errors(&es, *format));
                        }
                    }
                    print_plan(&p, &state, *format, false);
                    Ok(if *exit_code && !p.refusals.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
                }
                Err(es) => Ok(report_errors(&es, *format)),
            }
        }
        Command::Apply { force, reason, format } => {
            let _lock = lock_state(&state_file)?;
            let (cfg, raw, state) = match load(cli, &state_file)? {
                Ok(x) => x,
                Err(es) => return Ok(report_errors(&es, *format)),
            };
            let opts =
                Options { force: *force, reason: reason.clone(), time: now(), actor: actor(cli), sticky_store: false };
            match plan::apply(&state, &cfg, &raw, &opts) {
                Ok(p) => {
                    if p.state != state {
                        write_state(&state_file, &p.state)?;
                    }
                    print_plan(&p, &state, *format, true);
                    if *format == Format::Text {
                        if p.is_empty() {
                            println!("Nothing to apply: the state is already at version {}.", p.version);
                        } else {
                            println!("Applied: version {} recorded in {}.", p.version, state_file.display());
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(ApplyError::Invalid(es)) => Ok(report_errors(&es, *format)),
                Err(ApplyError::Refused(p)) => {
                    print_plan(&p, &state, *format, false);
                    if *format == Format::Text {
                        eprintln!("error: apply refused; nothing was written. Fix the configuration, or override with --force --reason TEXT.");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Assign { units, format, experiments } => {
            note_unapplied(cli, &read_state(&state_file)?);
            crate::assign::run(&state_file, units, *format, experiments)
        }
        Command::Audit { format } => {
            let state = read_state(&state_file)?;
            note_unapplied(cli, &state);
            let cfg = applied(&state)?;
            let a = audit(&state, &cfg);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&a)?),
                Format::Text => print_audit(&a),
            }
            Ok(if a.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::History { unit, bucket, unit_type, format } => {
            let state = read_state(&state_file)?;
            history(&state, unit.as_deref(), *bucket, unit_type.as_deref(), *format)
        }
        Command::Trace { context, experiments, format } => {
            let state = read_state(&state_file)?;
            note_unapplied(cli, &state);
            trace(&state, context, experiments, *format)
        }
        Command::Serve(args) => crate::serve::run(cli, args),
        Command::MigrateStore(args) => crate::serve::migrate_store(args),
        Command::Resalt { unit_type, reason, format } => {
            let _lock = lock_state(&state_file)?;
            let mut state = read_state(&state_file)?;
            let reports = match resalt_all(&state, unit_type.as_deref(), &now(), reason.clone(), actor(cli)) {
                Ok((st, reports)) => {
                    state = st;
                    reports
                }
                Err(e) => return Ok(report_errors(&[e], *format)),
            };
            write_state(&state_file, &state)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
                Format::Text => {
                    for r in reports {
                        let total = r.resalted_buckets + r.frozen_buckets;
                        let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
                        println!(
                            "Resalted unit type {} (version {}): units of {} buckets ({:.2}% of the space) re-randomised within {} class(es) of buckets that every running experiment, holdout and group treats alike; no running experiment, holdout or group gained or lost a unit. {} buckets kept their units.",
                            r.space,
                            r.version,
                            r.resalted_buckets,
                            pct(r.resalted_buckets),
                            r.classes,
                            r.frozen_buckets
                        );
                        for s in &r.scopes {
                            println!(
                                "  {}: {} free buckets ({:.2}% of the space), {} re-randomised ({:.2}%)",
                                s.scope,
                                s.free_buckets,
                                pct(s.free_buckets),
                                s.resalted_buckets,
                                pct(s.resalted_buckets)
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Holds an exclusive lock on `<state>.lock` while a command reads, plans and writes the state,
/// so that two concurrent applies cannot lose one another's change.
fn lock_state(state_file: &std::path::Path) -> Result<std::fs::File> {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| anyhow::anyhow!("cannot create lock file {}: {e}", std::path::Path::new(&name).display()))?;
    f.lock().map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", std::path::Path::new(&name).display()))?;
    Ok(f)
}

type Loaded = (Config, serde_json::Value, State);

fn load(cli: &Cli, state_file: &std::path::Path) -> Result<Result<Loaded, Vec<FieldError>>> {
    let text = read_config(&cli.config)?;
    let raw = match config::parse_yaml(&text) {
        Ok(r) => r,
        Err(e) => return Ok(Err(vec![e])),
    };
    let cfg = match config::validate(&raw) {
        Ok(c) => c,
        Err(es) => return Ok(Err(es)),
    };
    let state = read_state(state_file)?;
    Ok(Ok((cfg, raw, state)))
}

/// `assign` and `audit` read the recorded state, not the file: say so on stderr when the file
/// differs from the version applied.
fn note_unapplied(cli: &Cli, state: &State) {
    let Ok(text) = std::fs::read_to_string(&cli.config) else { return };
    let Ok(raw) = config::parse_yaml(&text) else { return };
    if state.config.as_ref() != Some(&raw) {
        eprintln!(
            "note: {} differs from the applied version {}; this uses version {} (`allot plan` shows what applying the file would change)",
            cli.config.display(),
            state.version,
            state.version
        );
    }
}

fn applied(state: &State) -> Result<Config> {
    plan::applied_config(state)
        .map_err(|es| anyhow::anyhow!("{}", allot_core::Errors(es)))
        .map(Option::unwrap_or_default)
}

fn report_errors(es: &[FieldError], format: Format) -> ExitCode {
    match format {
        Format::Json => println!("{}", json!({"ok": false, "errors": es})),
        Format::Text => {
            for e in es {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", es.len());
        }
    }
    ExitCode::FAILURE
}

fn check(cli: &Cli, state_file: &std::path::Path, format: Format) -> Result<ExitCode> {
    let (cfg, raw, state) = match load(cli, state_file)? {
        Ok(x) => x,
        Err(es) => return Ok(report_errors(&es, format)),
    };
    // Validation passed; also make sure the recorded space can hold what the file asks for.
    let p = match plan::plan(&state, &cfg, &raw, &Options::default()) {
        Ok(p) => p,
        Err(es) => return Ok(report_errors(&es, format)),
    };
    let running = cfg.experiments.values().filter(|e| e.state == config::ExpState::Running).count();
    match format {
        Format::Json => println!(
            "{}",
            json!({"ok": true, "experiments": cfg.experiments.len(), "running": running, "holdouts": cfg.holdouts.len(), "groups": cfg.groups.len(), "warnings": p.warnings, "refusals": p.refusals})
        ),
        Format::Text => {
            println!(
                "ok: {} unit type(s), {} surface(s), {} holdout(s), {} group(s), {} experiment(s) ({running} running)",
                cfg.units.len(),
                cfg.surfaces.len(),
                cfg.holdouts.len(),
                cfg.groups.len(),
                cfg.experiments.len()
            );
            for w in &p.warnings {
                println!("warning: {w}");
            }
            if !p.refusals.is_empty() {
                println!(
                    "note: {} change(s) against the recorded state would be refused; see `allot plan`",
                    p.refusals.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who makes a change: `--actor` / `ALLOT_ACTOR`, else git's `user.email` (or `user.name`),
/// else the OS user.
fn actor(cli: &Cli) -> Option<String> {
    let git = |key: &str| {
        std::process::Command::new("git")
            .args(["config", "--get", key])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    cli.actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| git("user.email"))
        .or_else(|| git("user.name"))
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
}

fn pct(x: f64) -> String {
    format!("{}%", fmt_num(x * 100.0))
}

/// Most sample contexts `plan --sample` reads (they are held in memory).
const MAX_SAMPLE: usize = 1_000_000;

/// Reads `plan --sample`: one JSON object per line; blank lines skipped.
fn read_sample(path: &std::path::Path) -> Result<Vec<allot_core::Context>> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).with_context(|| format!("--sample: cannot open {}", path.display()))?;
    let mut out = vec![];
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("--sample: {}:{}: cannot read", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == MAX_SAMPLE {
            anyhow::bail!("--sample: {} has more than {MAX_SAMPLE} contexts", path.display());
        }
        let ctx: allot_core::Context = serde_json::from_str(&line).with_context(|| {
            format!("--sample: {}:{}: expected one JSON object of context attributes", path.display(), n + 1)
        })?;
        out.push(ctx);
    }
    Ok(out)
}

fn print_plan(p: &Plan, before: &State, format: Format, applied: bool) {
    if format == Format::Json {
        let impact: serde_json::Map<String, serde_json::Value> =
            p.impact.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect();
        println!(
            "{}",
            json!({
                "version_before": before.version,
                "version": p.version,
                "applied": applied,
                "changes": p.changes,
                "impact": impact,
                "refusals": p.refusals,
                "warnings": p.warnings,
            })
        );
        return;
    }
    if p.changes.is_empty() {
        println!("No changes: the recorded state (version {}) matches the configuration.", before.version);
    } else {
        println!("Changes (version {} → {}):", before.version, p.version);
        for c in &p.changes {
            let sign = match c.action.as_str() {
                "create" | "start" => '+',
                "delete" | "stop" | "archive" => '-',
                _ => '~',
            };
            println!("  {sign} {} {} {}: {}", c.action, c.entity, c.id, c.detail);
        }
    }
    if !p.impact.is_empty() {
        println!("Impact on running experiments (share of assigned units that would move):");
        for (id, i) in &p.impact {
            let mut extra = vec![];
            if i.buckets_after != i.buckets_before {
                extra.push(format!("buckets {} → {}", i.buckets_before, i.buckets_after));
            }
            if i.targeting_changed {
                extra.push(if i.measured.is_none() {
                    "targeting changed: units that no longer match lose their variant, not counted here; measure with --sample FILE".to_string()
                } else {
                    "targeting changed".to_string()
                });
            }
            if let Some(m) = &i.measured {
                extra.push(format!(
                    "measured on the sample: {} of {} assigned units move ({})",
                    m.moved,
                    m.assigned,
                    pct(m.moved_share)
                ));
            }
            if i.sticky {
                extra.push("sticky: units with a stored assignment keep it".to_string());
            }
            println!(
                "  {id}: {}{}",
                pct(i.moved_share),
                if extra.is_empty() { String::new() } else { format!(" ({})", extra.join("; ")) }
            );
        }
    }
    if !p.refusals.is_empty() {
        println!(
            "Refused ({}):",
            if applied { "overridden with --force" } else { "apply needs --force --reason TEXT" }
        );
        for r in &p.refusals {
            println!("  ! {}: {} [{}]", r.path, r.message, r.rule);
        }
    }
    for w in &p.warnings {
        println!("warning: {w}");
    }
}

fn print_audit(a: &allot_core::audit::Audit) {
    println!("Audit of version {}", a.version);
    println!("Experiments (exact, from the bucket sets):");
    for (id, e) in &a.experiments {
        println!(
            "  {id:<24} share {:>8} ({} buckets)  reach {:>8}{}",
            pct(e.share),
            e.buckets,
            pct(e.reach),
            e.requested.map(|r| format!("  requested {}", pct(r))).unwrap_or_default()
        );
    }
    for (name, h) in &a.holdouts {
        println!("Holdout {name}: {} ({} buckets), applies to [{}]", pct(h.share), h.buckets, h.experiments.join(", "));
    }
    for (name, g) in &a.groups {
        println!("Group {name}: {} ({} buckets)", pct(g.share), g.buckets);
        for s in &g.slots {
            println!(
                "  slot {}: {} ({} buckets, {} used) [{}]",
                s.slot,
                pct(s.share),
                s.buckets,
                s.used_buckets,
                s.experiments.join(", ")
            );
        }
    }
    let exclusive: Vec<_> = a.overlaps.iter().filter(|o| o.exclusive).collect();
    println!(
        "Exclusive pairs: {} checked, {} disjoint, {} sharing buckets by disjoint targeting, {} violations",
        exclusive.len(),
        exclusive.iter().filter(|o| o.shared_buckets == 0).count(),
        exclusive.iter().filter(|o| o.shared_buckets > 0 && o.targeting_disjoint).count(),
        exclusive.iter().filter(|o| !o.ok).count()
    );
    for o in a.overlaps.iter().filter(|o| !o.exclusive) {
        println!(
            "  overlap {} × {}: {} shared buckets (independent draws expect {:.0})",
            o.a, o.b, o.shared_buckets, o.expected_shared_buckets
        );
    }
    for w in &a.warnings {
        println!("warning: {w}");
    }
    for v in &a.violations {
        println!("VIOLATION: {v}");
    }
    if a.violations.is_empty() {
        println!("ok: every invariant holds");
    }
}

fn history(
    state: &State,
    unit: Option<&str>,
    bucket: Option<u32>,
    unit_type: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    if unit.is_none() && bucket.is_none() {
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&state.log)?),
            Format::Text => {
                for e in &state.log {
                    println!(
                        "version {} at {}{}{}{}",
                        e.version,
                        e.time,
                        e.actor.as_ref().map(|a| format!(" by {a}")).unwrap_or_default(),
                        if e.forced { " (FORCED)" } else { "" },
                        e.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
                    );
                    for c in &e.changes {
                        println!("    {c}");
                    }
                    for o in &e.overridden {
                        println!("    overridden: {o}");
                    }
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind = |k: allot_core::state::OwnerKind| {
        serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    let until = |v: Option<u64>| v.map_or("now".to_string(), |v| v.to_string());
    // One home for the JSON shape: allot-core's reports (also what the service answers).
    let flags = |e: FieldError| match e.path.as_str() {
        "unit_type" => anyhow::anyhow!("--unit-type: {}", e.message),
        "bucket" => anyhow::anyhow!("--bucket: {}", e.message),
        _ => anyhow::anyhow!("{e}"),
    };
    if let Some(u) = unit {
        // A unit's bucket changes with each re-salt: the history is per stretch of versions.
        let snap =
            allot_core::eval::Snapshot::compile(state).map_err(|es| anyhow::anyhow!("{}", allot_core::Errors(es)))?;
        let r = unit_report(state, &snap, unit_type, u).map_err(flags)?;
        match format {
            Format::Json => println!("{}", serde_json::to_string(&r)?),
            Format::Text => {
                println!("unit {u} of {} (bucket {} now):", r.unit_type, r.bucket);
                if r.history.is_empty() {
                    println!("  never in a bucket held by anything");
                }
                for s in r.history {
                    println!(
                        "  version {} → {}: bucket {}, {} {} (allocation {})",
                        s.span.from_version,
                        until(s.span.until_version),
                        s.bucket,
                        kind(s.span.kind),
                        s.span.owner,
                        s.span.allocation
                    );
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(b) = bucket else { anyhow::bail!("give --unit or --bucket") };
    let r = bucket_report(state, unit_type, b).map_err(flags)?;
    let (space, spans) = (r.unit_type.clone(), r.history.clone());
    match format {
        Format::Json => println!("{}", serde_json::to_string(&r)?),
        Format::Text => {
            println!("bucket {b} of {space}:");
            if spans.is_empty() {
                println!("  never held by anything");
            }
            for s in spans {
                println!(
                    "  {} {} (allocation {}): version {} → {}",
                    kind(s.kind),
                    s.owner,
                    s.allocation,
                    s.from_version,
                    until(s.until_version)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trace(state: &State, context: &str, experiments: &[String], format: Format) -> Result<ExitCode> {
    let ctx: allot_core::Context = serde_json::from_str(context)
        .with_context(|| "--context: expected one JSON object of context attributes".to_string())?;
    let cfg = applied(state)?;
    let snap = allot_core::eval::Snapshot::compile_with(state, &cfg);
    let which = if experiments.is_empty() {
        None
    } else {
        let mut idx = vec![];
        for id in experiments {
            idx.push(snap.index_of(id).ok_or_else(|| anyhow::anyhow!("--experiments: unknown experiment `{id}`"))?);
        }
        Some(idx)
    };
    let t = allot_core::trace::trace(&snap, state, &cfg, &ctx, &allot_core::eval::NoSticky, which.as_deref());
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
        Format::Text => print!("{}", trace_text(&t)),
    }
    Ok(ExitCode::SUCCESS)
}

fn trace_text(t: &allot_core::trace::Trace) -> String {
    use allot_core::trace::Step;
    use std::fmt::Write as _;
    let mut s = String::new();
    let names = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let _ = writeln!(s, "version {}", t.version);
    for (id, e) in &t.experiments {
        let _ = writeln!(s, "{id}: {} ({})", e.variant.as_deref().unwrap_or("no variant"), e.reason.as_str());
        for step in &e.steps {
            let line = match step {
                Step::Running { running, paused } => format!(
                    "running: {}",
                    match (running, paused) {
                        (true, true) => "yes, paused (PAUSED: serves nobody)",
                        (true, false) => "yes",
                        (false, _) => "no",
                    }
                ),
                Step::Unit { unit_type, attribute, unit, bucket, held_by } => match (unit, bucket) {
                    (Some(u), Some(b)) => {
                        let held: Vec<String> = held_by
                            .iter()
                            .map(|h| {
                                let kind = serde_json::to_value(h.kind).ok();
                                format!("{} {}", kind.as_ref().and_then(|k| k.as_str()).unwrap_or(""), h.owner)
                            })
                            .collect();
                        format!("unit: {attribute} = {u} ({unit_type}), bucket {b}, held by {}", names(&held))
                    }
                    _ => format!("unit: no {attribute} in the context ({unit_type})"),
                },
                Step::Inclusion { included, variant } => match (included, variant) {
                    (true, Some(v)) => format!("inclusion: included in {v}"),
                    _ => "inclusion: not included".to_string(),
                },
                Step::Holdout { held_out, holdouts } => {
                    format!(
                        "holdout: {}",
                        if *held_out { format!("held out by {}", names(holdouts)) } else { "not held out".into() }
                    )
                }
                Step::Allocation { bucket, allocated, slots } => format!(
                    "allocation: bucket {bucket} {}{}",
                    if *allocated { "is allocated" } else { "is not allocated" },
                    if slots.is_empty() { String::new() } else { format!(" (in slots {})", slots.join(", ")) }
                ),
                Step::Sticky { stored, known } => match (stored, known) {
                    (Some(v), _) => format!("sticky: stored {v}"),
                    (None, true) => "sticky: nothing stored".to_string(),
                    (None, false) => "sticky: the store cannot tell".to_string(),
                },
                Step::Prerequisite { experiment, variants, variant, reason, ok } => format!(
                    "prerequisite {experiment} in [{}]: got {} ({}): {}",
                    variants.join(", "),
                    variant.as_deref().unwrap_or("no variant"),
                    reason.as_str(),
                    if *ok { "ok" } else { "failed" }
                ),
                Step::Targeting { matched, conditions } => {
                    let mut l = format!("targeting: {}", if *matched { "matches" } else { "does not match" });
                    for c in conditions {
                        let _ = write!(
                            l,
                            "\n      {} {}{}: value {}",
                            if c.matched { "✓" } else { "✗" },
                            c.criterion,
                            c.segment.as_ref().map(|g| format!(" (segment {g})")).unwrap_or_default(),
                            c.value
                        );
                    }
                    l
                }
                Step::Split { split_bucket, variant } => format!("split: split bucket {split_bucket} → {variant}"),
            };
            let _ = writeln!(s, "    {line}");
        }
    }
    s
}
