//! `allot`: configuration as code for mutually exclusive experiments.
//!
//! `check`, `plan`, `apply`, `assign`, `audit`, `history`, `trace` and `resalt` over a YAML file and the
//! recorded state beside it, and `serve` (the service, `allot-server`). All decisions are made by
//! `allot-core`; this binary reads and writes files, reads the clock, and prints.

mod analyze;
mod assign;
mod capacity;
mod cmd;
mod compat;
mod files;
mod html;
mod reuse;
mod sequential;
mod serve;
mod warehouse;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Coordinates and assigns mutually exclusive experiments.
#[derive(Debug, Parser)]
#[command(name = "allot", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (`serve` applies it only when given, by flag or ALLOT_CONFIG: never
    /// a default allot.yaml of the working directory).
    #[arg(short = 'c', long = "config", global = true, default_value = "allot.yaml", env = "ALLOT_CONFIG")]
    pub config: PathBuf,
    /// The recorded state [default: allot.state.json beside the configuration] (`serve` imports it
    /// only when given, by flag or ALLOT_STATE).
    #[arg(long = "state", global = true, env = "ALLOT_STATE")]
    pub state: Option<PathBuf>,
    /// Who makes the change, recorded by `apply` and `resalt` and shown by `history` [default:
    /// git's user.email, else the OS user]; for `serve`, who imports `--state` and applies
    /// `--config` in the audit log.
    #[arg(long, global = true, env = "ALLOT_ACTOR")]
    pub actor: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Whether `--config` (or `ALLOT_CONFIG`) was given rather than defaulted.
    #[arg(skip)]
    pub config_given: bool,
}

/// Output formats of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Output formats of `assign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AssignFormat {
    /// One JSON object per input line.
    Jsonl,
    /// `unit,experiment,variant,reason`, one row per unit and experiment.
    Csv,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration; every error with its path. Exit 1 on error.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what applying the configuration would change, and its exact impact.
    Plan {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit 1 when `apply` would refuse the change (for CI gates); by default `plan` exits 0
        /// whatever it finds.
        #[arg(long)]
        exit_code: bool,
        /// Also measure the impact on a sample of real units (one JSON object of context
        /// attributes per line, as for `assign`; at most 1,000,000): the share of those each
        /// running experiment assigns now whose variant would change or go, a narrowed targeting's
        /// effect included, which the exact bucket and split figures cannot see.
        #[arg(long, value_name = "FILE")]
        sample: Option<std::path::PathBuf>,
    },
    /// Record the configuration: draw allocations, release stopped ones. All-or-nothing.
    Apply {
        /// Apply despite refusals (recorded with the reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why (required with --force; recorded in the log).
        #[arg(long)]
        reason: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Assign units: one JSON object of context attributes per input line.
    Assign {
        /// Input file of JSON lines, or - for standard input.
        #[arg(long, default_value = "-")]
        units: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = AssignFormat::Jsonl)]
        format: AssignFormat,
        /// Only these experiments (comma-separated) [default: every experiment].
        #[arg(long, value_delimiter = ',')]
        experiments: Vec<String>,
    },
    /// Prove exclusivity and report every experiment's exact traffic from the bucket sets.
    Audit {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The change log, or who held a unit's or bucket's bucket over time.
    History {
        /// A unit id: show its bucket's history.
        #[arg(long, conflicts_with = "bucket")]
        unit: Option<String>,
        /// A bucket number: show its history.
        #[arg(long)]
        bucket: Option<u32>,
        /// Unit type [default: the only one, if there is one].
        #[arg(long = "unit-type")]
        unit_type: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Explain one context's evaluation: per experiment, the steps evaluation took (unit and
    /// bucket, inclusion, holdouts, allocation and slots, prerequisites, each targeting
    /// condition, the split) and the final variant and reason, as `POST /api/v1/evaluate/trace`.
    Trace {
        /// The context: one JSON object of attributes (`{"user_id": "u1", "country": "SE"}`).
        #[arg(long)]
        context: String,
        /// Only these experiments (comma-separated) [default: every experiment].
        #[arg(long, value_delimiter = ',')]
        experiments: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Re-randomise which units sit in the buckets free for each scope, moving no unit into or out
    /// of any running experiment, holdout or group; reports the share re-randomised per scope.
    Resalt {
        /// Unit type [default: every unit type].
        #[arg(long = "unit-type")]
        unit_type: Option<String>,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Plan bandwidth: units and days each planned experiment needs, and a schedule per
    /// exclusion scope.
    Capacity(capacity::CapacityArgs),
    /// Analyse experiments from exposure and metric files: SRM, Welch and CUPED estimates,
    /// corrections, interaction tests and exposure diagnostics.
    Analyze(analyze::AnalyzeArgs),
    /// Bucket-reuse health of experiments from the recorded state, before any exposure (at their
    /// start): each one's drawn buckets against the rest of the population (the units of
    /// --covariates) on pre-period metrics and past treatment. `analyze --reuse-health` reports
    /// the same in an analysis.
    ReuseHealth(reuse::ReuseArgs),
    /// Run Spotify Confidence resolver states and Amplitude Experiment flag configurations,
    /// with the assignments those systems give.
    Compat {
        /// Which system.
        #[command(subcommand)]
        system: compat::System,
    },
    /// Run the service: admin API, evaluation API, OFREP, snapshots, exposures, metrics.
    ///
    /// With `--state FILE` (the CLI's recorded state), the state is imported into an empty store
    /// at start and then served exactly as `allot assign` computes it; a store that already holds
    /// it serves on; any other store refuses to start. Then, with `--config FILE` (or
    /// ALLOT_CONFIG), the file is applied through change control (GitOps). A default `allot.yaml`
    /// in the working directory is NOT applied: only an explicit --config is. `--actor` names who
    /// made the import and the file's change in the audit log.
    Serve(serve::ServeArgs),
    /// Copy a whole store into an empty one (e.g. SQLite to PostgreSQL): every version with its
    /// audit entry, keys, sticky assignments and exposures. Stop the nodes writing to `--from` first.
    MigrateStore(serve::MigrateStoreArgs),
}

/// `println!` panics when stdout is a closed pipe (`allot audit | head`); like other Unix tools,
/// allot then just stops, quietly. Every other panic keeps the default report.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether an error is stdout closed by the reader (`allot assign | head`), told by its
/// `io::ErrorKind`.
pub(crate) fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let given = |m: &clap::ArgMatches| {
        matches!(
            m.value_source("config"),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        )
    };
    cli.config_given = given(&matches) || matches.subcommand().is_some_and(|(_, m)| given(m));
    match cmd::run(&cli) {
        Ok(code) => code,
        // Output written with `write!` (assign, compat) reports a closed pipe as an error.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
