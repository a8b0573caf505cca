//! `allot capacity`: bandwidth planning. For each planned experiment, the units and days it needs
//! at its share of the traffic; for each exclusion scope, how many of its experiments can run at
//! once and a schedule that respects exclusivity and holdouts; and what CUPED saves.
//!
//! What is planned and how (the scheduling rule) is `allot_server::capacity`, shared with
//! `POST /api/v1/capacity`; this reads the files and renders the report.

use crate::{Cli, Format};
use allot_core::config;
use allot_server::capacity::{plan, CapacityReport, Traffic};
use allot_stats::schedule::finite;
use anyhow::{bail, Context as _, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `allot capacity`.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// Traffic file (YAML; see docs/stats.md): daily units per unit type and the planned
    /// experiments' metrics, MDE, α, power and optional ρ.
    #[arg(long)]
    pub traffic: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Reads a traffic file (YAML), naming the path of a bad field.
pub(crate) fn read_traffic(path: &Path) -> Result<Traffic> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read traffic file {}", path.display()))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("traffic file {}: {}: {}", path.display(), e.path(), e.inner()))
}

/// Runs `allot capacity`.
pub fn run(cli: &Cli, args: &CapacityArgs) -> Result<ExitCode> {
    let text = crate::files::read_config(&cli.config)?;
    let cfg = match config::load(&text) {
        Ok(c) => c,
        Err(es) => {
            let list: Vec<String> = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            bail!("configuration {} is invalid:\n  {}", cli.config.display(), list.join("\n  "))
        }
    };
    let traffic = read_traffic(&args.traffic)?;
    let report = match plan(&cfg, &traffic) {
        Ok(r) => r,
        Err(errs) => {
            match args.format {
                Format::Json => println!("{}", json!({"ok": false, "errors": errs})),
                Format::Text => {
                    for e in &errs {
                        eprintln!("traffic file: {e}");
                    }
                    eprintln!("{} error(s)", errs.len());
                }
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", text_report(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn text_report(r: &CapacityReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>7} {:>12} {:>6} {:>6} {:>6}  status",
        "experiment", "reach", "units", "days", "start", "CUPED-"
    );
    let d = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x}"));
    for (id, e) in &r.experiments {
        let _ = writeln!(
            s,
            "{id:<24} {:>6.2}% {:>12} {:>6} {:>6} {:>6}  {}{}",
            100.0 * e.reach,
            d(finite(e.units_needed)),
            d(e.days),
            d(e.start_day),
            d(e.cuped_saves.days),
            e.status,
            e.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\nExclusion scopes");
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    for (k, v) in &r.scopes {
        let _ = writeln!(
            s,
            "  {k}: {} planned, at most {} at once; start now: {}; wait: {}; all done by day {}",
            v.experiments.len(),
            v.at_once,
            list(&v.start_now),
            serde_json::to_string(&v.wait).unwrap_or_default(),
            serde_json::to_string(&v.all_done_day).unwrap_or_default()
        );
    }
    if !r.already_running.is_empty() {
        let _ = writeln!(
            s,
            "\n{} running experiment(s) not in the traffic file keep their share: {}",
            r.already_running.len(),
            list(&r.already_running)
        );
    }
    s
}
