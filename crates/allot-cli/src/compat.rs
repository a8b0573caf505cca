//! `allot compat`: run Spotify Confidence resolver states and Amplitude Experiment flag
//! configurations with the assignments those systems give. The adapters live in `allot-compat`;
//! this module reads the files and prints.

use allot_compat::amplitude::{self, Flags};
use allot_compat::confidence::{response_json, ImportOptions, Request, State};
use anyhow::{anyhow, Context as _, Result};
use clap::Subcommand;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The systems whose configurations `allot compat` runs.
#[derive(Debug, Subcommand)]
pub enum System {
    /// Spotify Confidence resolver states.
    Confidence {
        /// What to do.
        #[command(subcommand)]
        command: ConfidenceCommand,
    },
    /// Amplitude Experiment flag configurations.
    Amplitude {
        /// What to do.
        #[command(subcommand)]
        command: AmplitudeCommand,
    },
}

/// Confidence commands.
#[derive(Debug, Subcommand)]
pub enum ConfidenceCommand {
    /// Resolve a request against a resolver state (given with --state); print the response as JSON.
    ///
    /// The request is a resolve request (`flags`, `evaluationContext`, `clientSecret`) and may carry
    /// stored sticky assignments in a `materializations` field. Exit 1 where Confidence refuses the
    /// request (unknown client secret, an attribute its rule cannot convert, missing materializations).
    Resolve {
        /// The resolve request (JSON).
        #[arg(long)]
        request: PathBuf,
        /// The account id, for a state in proto3-JSON form (which does not name its account).
        #[arg(long)]
        account: Option<String>,
    },
    /// Import a resolver state (given with --state) as a native allot.yaml and recorded state,
    /// for one client: each rule that can assign becomes a running experiment whose allocation
    /// is its segment's bitset, whose targeting is the segment's and whose split is the rule's.
    ///
    /// What does not map is reported on stderr (and with --report as JSON) and its flag is not
    /// written; the rest is. Exit 1 with --strict when anything does not map (then nothing is
    /// written). See docs/compat.md, "Importing".
    Import {
        /// The account id, for a state in proto3-JSON form (which does not name its account).
        #[arg(long)]
        account: Option<String>,
        /// The client secret whose client and environments decide which flags and rules apply
        /// [default: the only credential of the state].
        #[arg(long)]
        client_secret: Option<String>,
        #[command(flatten)]
        out: ImportOut,
    },
}

/// Where an import writes.
#[derive(Debug, clap::Args)]
pub struct ImportOut {
    /// The configuration to write.
    #[arg(long, default_value = "allot.yaml")]
    out_config: PathBuf,
    /// The recorded state to write.
    #[arg(long, default_value = "allot.state.json")]
    out_state: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Exit 1, writing no configuration or state, when anything does not map.
    #[arg(long)]
    strict: bool,
    /// Replace --out-config and --out-state when they exist (by default an import never
    /// overwrites a recorded state).
    #[arg(long)]
    overwrite: bool,
}

/// Amplitude commands.
#[derive(Debug, Subcommand)]
pub enum AmplitudeCommand {
    /// Evaluate every flag for each context; print one JSON object per context line mapping each
    /// flag key to its variant key, or null.
    Evaluate {
        /// The flag configuration (a JSON array of flags, as served to local-evaluation SDKs).
        #[arg(long)]
        flags: PathBuf,
        /// One context per line (`{"user": {"user_id": ..., "device_id": ..., "user_properties": {...}}}`), or - for standard input.
        #[arg(long)]
        contexts: String,
    },
    /// Import a flag configuration as a native allot.yaml and recorded state: each segment becomes
    /// running experiments over Amplitude-hashed unit types whose allocations are Amplitude's
    /// buckets and whose splits are its distributions; conditions become targeting, conditions on
    /// group and holdout flags prerequisites.
    ///
    /// `allot assign` then gives every imported flag Amplitude's variant on contexts flattened as
    /// `allot compat amplitude flatten` does. What does not map is reported on stderr (and with
    /// --report as JSON) and its flag is not written. Exit 1 with --strict when anything does not
    /// map (then nothing is written). See docs/compat.md.
    Import {
        /// The flag configuration (a JSON array of flags, as served to local-evaluation SDKs).
        #[arg(value_name = "FLAGS.json", required_unless_present = "flags", conflicts_with = "flags")]
        file: Option<PathBuf>,
        /// The flag configuration, as a flag (the same as the positional FLAGS.json).
        #[arg(long)]
        flags: Option<PathBuf>,
        #[command(flatten)]
        out: ImportOut,
    },
    /// Flatten Amplitude contexts (one per line) into the attributes an imported configuration
    /// reads, one JSON object per line: the input of `allot assign`.
    Flatten {
        /// One context per line, or - for standard input.
        #[arg(long)]
        contexts: String,
    },
}

/// Runs `f` on each non-blank JSON line of `contexts` (a file or `-`), writing what it returns.
fn each_context(contexts: &str, mut f: impl FnMut(&serde_json::Value) -> Result<String>) -> Result<ExitCode> {
    let input: Box<dyn BufRead> = if contexts == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(contexts).with_context(|| format!("cannot read {contexts}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {contexts}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let ctx: serde_json::Value = serde_json::from_str(&line).map_err(|e| anyhow!("{contexts}:{}: {e}", i + 1))?;
        let mut text = f(&ctx)?;
        text.push('\n');
        if quiet_on_closed_pipe(out.write_all(text.as_bytes()))? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    quiet_on_closed_pipe(out.flush())?;
    Ok(ExitCode::SUCCESS)
}

/// A reader that went away (`allot ... | head`) ends the output quietly: `Ok(true)`.
fn quiet_on_closed_pipe(r: std::io::Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(anyhow!("cannot write the output: {e}")),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `text` atomically (a temporary file beside it, then renamed).
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The human report on stderr: what was imported, dropped and not mapped.
fn print_report(report: &serde_json::Value) {
    let list = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    let flags = list("flags");
    let experiments: usize = flags.iter().map(|f| f["experiments"].as_array().map_or(0, Vec::len)).sum();
    eprintln!("imported {} flags as {experiments} experiments", flags.len());
    for e in list("dropped") {
        eprintln!(
            "dropped {} {}: {}",
            e["kind"].as_str().unwrap_or(""),
            e["name"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or("")
        );
    }
    for e in list("unmapped") {
        eprintln!(
            "NOT MAPPED {} {}: {}",
            e["kind"].as_str().unwrap_or(""),
            e["name"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or("")
        );
    }
    for c in list("caveats") {
        eprintln!("note: {}", c.as_str().unwrap_or(""));
    }
}

/// Writes an import: the report (stderr and `--report`), then, unless `--strict` finds
/// something unmapped, the configuration (checked to read back as written) and the state.
fn write_import(
    out: &ImportOut,
    header: &str,
    config: &serde_json::Value,
    state: &allot_core::state::State,
    report: serde_json::Value,
    complete: bool,
) -> Result<ExitCode> {
    print_report(&report);
    if let Some(p) = &out.report {
        write_atomic(p, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if out.strict && !complete {
        eprintln!("error: --strict: some of the source does not map (above); nothing written");
        return Ok(ExitCode::from(1));
    }
    for p in [&out.out_config, &out.out_state] {
        if p.exists() && !out.overwrite {
            return Err(anyhow!("{} exists; an import does not overwrite it (give --overwrite)", p.display()));
        }
    }
    let yaml = format!("{header}{}", serde_yaml_ng::to_string(config)?);
    // What is written must read back as the very configuration the state records.
    let back = allot_core::config::parse_yaml(&yaml).map_err(|e| anyhow!("internal error: the written YAML: {e}"))?;
    if back != *config {
        return Err(anyhow!("internal error: the written YAML does not read back as the imported configuration"));
    }
    write_atomic(&out.out_config, &yaml)?;
    crate::files::write_state(&out.out_state, state)?;
    eprintln!("wrote {} and {}", out.out_config.display(), out.out_state.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs `allot compat ...`. `state` is the global `--state` option.
pub fn run(system: &System, state: Option<&PathBuf>) -> Result<ExitCode> {
    match system {
        System::Confidence { command: ConfidenceCommand::Import { account, client_secret, out } } => {
            let state_path = state.ok_or_else(|| anyhow!("--state STATE.json (the resolver state) is required"))?;
            let parsed = State::parse(&read(state_path)?, account.as_deref())
                .map_err(|e| anyhow!("{}: {e}", state_path.display()))?;
            let opts = ImportOptions { client_secret: client_secret.clone(), time: crate::files::now() };
            let imported = parsed.import(&opts).map_err(|e| anyhow!("{}: {e}", state_path.display()))?;
            let header = format!(
                "# Imported by `allot compat confidence import` from {} for client {}.\n\
                 # A flag's answer is the first of its experiments (report: flags[].experiments) whose\n\
                 # variant is not _fallthrough or _none; _client_default is a match without a variant.\n",
                state_path.display(),
                imported.report.client
            );
            let complete = imported.report.complete();
            let report = serde_json::to_value(&imported.report)?;
            write_import(out, &header, &imported.config, &imported.state, report, complete)
        }
        System::Confidence { command: ConfidenceCommand::Resolve { request, account } } => {
            let state_path = state.ok_or_else(|| anyhow!("--state STATE.json is required"))?;
            let state = State::parse(&read(state_path)?, account.as_deref())
                .map_err(|e| anyhow!("{}: {e}", state_path.display()))?;
            let req = Request::parse(&read(request)?).map_err(|e| anyhow!("{}: {e}", request.display()))?;
            match state.resolve(&req) {
                Ok(flags) => {
                    let text = serde_json::to_string_pretty(&response_json(&flags))?;
                    quiet_on_closed_pipe(writeln!(std::io::stdout().lock(), "{text}"))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: resolve refused: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        System::Amplitude { command: AmplitudeCommand::Evaluate { flags, contexts } } => {
            let compiled = Flags::parse(&read(flags)?).map_err(|e| anyhow!("{}: {e}", flags.display()))?;
            each_context(contexts, |ctx| Ok(serde_json::to_string(&compiled.evaluate_json(ctx))?))
        }
        System::Amplitude { command: AmplitudeCommand::Flatten { contexts } } => {
            each_context(contexts, |ctx| Ok(serde_json::to_string(&amplitude::flatten_context(ctx))?))
        }
        System::Amplitude { command: AmplitudeCommand::Import { file, flags, out } } => {
            let path = file.as_ref().or(flags.as_ref()).ok_or_else(|| anyhow!("FLAGS.json is required"))?;
            let compiled = Flags::parse(&read(path)?).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let opts = amplitude::ImportOptions { time: crate::files::now() };
            let imported = compiled.import(&opts).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let header = format!(
                "# Imported by `allot compat amplitude import` from {}.\n\
                 # A flag's variant is the first of its experiments' variants (report: flags[].experiments)\n\
                 # that is not {}; contexts are flattened as `allot compat amplitude flatten` does.\n",
                path.display(),
                amplitude::PASS
            );
            let complete = imported.report.complete();
            let report = serde_json::to_value(&imported.report)?;
            write_import(out, &header, &imported.config, &imported.state, report, complete)
        }
    }
}
