//! `allot compat`: run Spotify Confidence resolver states and Amplitude Experiment flag
//! configurations with the assignments those systems give. The adapters live in `allot-compat`;
//! this module reads the files and prints.

use allot_compat::amplitude::Flags;
use allot_compat::confidence::{response_json, Request, State};
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

/// Runs `allot compat ...`. `state` is the global `--state` option.
pub fn run(system: &System, state: Option<&PathBuf>) -> Result<ExitCode> {
    match system {
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
            let input: Box<dyn BufRead> = if contexts == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(contexts).with_context(|| format!("cannot read {contexts}"))?;
                Box::new(std::io::BufReader::new(f))
            };
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            for (i, line) in input.lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {contexts}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                let ctx: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| anyhow!("{contexts}:{}: {e}", i + 1))?;
                let mut text = serde_json::to_string(&compiled.evaluate_json(&ctx))?;
                text.push('\n');
                if quiet_on_closed_pipe(out.write_all(text.as_bytes()))? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            quiet_on_closed_pipe(out.flush())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
