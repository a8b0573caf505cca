//! `allot serve`: the service over a store, with a tokio runtime created here (the rest of the
//! CLI stays synchronous). Opens (and migrates) the store, creates the first admin key on an
//! empty store, imports `--state` (the CLI's recorded state), applies `--config` through change
//! control, then serves (HTTP, or HTTPS with `--tls-cert/--tls-key`) until SIGTERM or Ctrl-C and
//! drains in-flight requests.

use crate::Cli;
use allot_server::lifecycle;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `allot serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the store is: `sqlite://PATH?mode=rwc` (created if missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`, with TLS as libpq's `sslmode` and `sslrootcert`
    /// say (`?sslmode=verify-full&sslrootcert=/etc/allot/db-ca.pem`).
    // The environment's value may hold a password: never shown in --help.
    #[arg(
        long = "database-url",
        env = "ALLOT_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://allot.db?mode=rwc"
    )]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "ALLOT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then any
    /// intermediates). Requires --tls-key. Without both, plain HTTP (e.g. behind a proxy that
    /// terminates TLS).
    #[arg(long = "tls-cert", env = "ALLOT_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Requires --tls-cert.
    #[arg(long = "tls-key", env = "ALLOT_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Apply the configuration file despite refusals (with --reason, recorded).
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why (required with --force).
    #[arg(long)]
    pub reason: Option<String>,
    /// How often to check the store for versions committed by other nodes, in milliseconds. On
    /// PostgreSQL, commits are also announced at once (LISTEN/NOTIFY); this check is the fallback.
    #[arg(long = "version-poll-ms", env = "ALLOT_VERSION_POLL_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub version_poll_ms: u64,
    /// Time a client has to send a request's headers, in milliseconds, from the opening of its
    /// connection (or, on a kept-alive connection, from the end of the previous response: this is
    /// also the idle timeout of kept-alive connections). Past it the connection is closed.
    #[arg(long = "header-timeout-ms", env = "ALLOT_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's body, in milliseconds, from the end of its headers.
    /// Past it the request gets 408 BODY_TIMEOUT.
    #[arg(long = "body-timeout-ms", env = "ALLOT_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Most connections open at once. Past it new connections wait to be accepted until one
    /// closes. Keep it below the process's file descriptor limit (`ulimit -n`).
    #[arg(long = "max-connections", env = "ALLOT_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// On SIGTERM or Ctrl-C: time given to in-flight requests, in milliseconds, before the
    /// connections still open are dropped.
    #[arg(long = "shutdown-timeout-ms", env = "ALLOT_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// Origins whose browser pages may call the API (CORS), e.g. `https://app.example.com`, or
    /// `*` for any; repeat the flag or separate with commas. None by default: browsers refuse
    /// cross-origin calls.
    #[arg(long = "cors-origin", env = "ALLOT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Time budget of one plan (a change or a preview through the admin API, waiting for the
    /// node's planner included), in milliseconds. Plans run off the evaluation path, one at a time;
    /// past the budget the request answers 503 PLAN_TIMEOUT (or PLAN_BUSY) and nothing is written.
    #[arg(long = "plan-budget-ms", env = "ALLOT_PLAN_BUDGET_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub plan_budget_ms: u64,
    /// OFREP's answer for a unit an experiment does not assign (not allocated, held out, targeting
    /// miss, not running): `code-default` (no value: the application's code default, as the
    /// protocol's ADR 0006 says) or `first-variant` (the experiment's first variant and its value,
    /// for providers that need a value, such as @openfeature/ofrep-provider 0.1.3). A request
    /// chooses for itself with the header `X-Allot-Ofrep-Unassigned`.
    #[arg(long = "ofrep-unassigned", env = "ALLOT_OFREP_UNASSIGNED", default_value = "code-default")]
    pub ofrep_unassigned: allot_server::Unassigned,
    /// Requests allowed to each API key on this node: `N` or `N/s` per second, `N/min` per
    /// minute (bursts of as many); past it, 429 with Retry-After. `/metrics` is not counted. Off
    /// by default.
    #[arg(long = "rate-limit", env = "ALLOT_RATE_LIMIT")]
    pub rate_limit: Option<allot_server::RateLimit>,
    /// OFREP change-event streams (server-sent events) open at once on this node; past it a new
    /// stream gets 503 with Retry-After. Each holds a connection (see --max-connections).
    #[arg(long = "max-event-streams", env = "ALLOT_MAX_EVENT_STREAMS", default_value_t = allot_server::DEFAULT_MAX_EVENT_STREAMS)]
    pub max_event_streams: usize,
    /// The metric tables of experiment results (`GET /api/v1/experiments/{id}/results`): a
    /// tables.yaml with `metrics` only (as `allot analyze --store` reads; docs/stats.md), whose
    /// tables live in the store's database; the exposures are the store's own. Without it, results
    /// need a metrics CSV (`POST` of the same path).
    #[arg(long = "analysis-tables", env = "ALLOT_ANALYSIS_TABLES", value_name = "FILE")]
    pub analysis_tables: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Options of `allot migrate-store`.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The store to copy: `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`; or `state:FILE`,
    /// the CLI's recorded state (`state:allot.state.json`), imported as one version with its
    /// whole change log.
    #[arg(long)]
    pub from: String,
    /// The store to copy into (created and migrated if needed; must hold no version and no key).
    #[arg(long)]
    pub to: String,
}

/// Copies the store `--from` into the empty store `--to`, then prints what was copied.
pub fn migrate_store(args: &MigrateStoreArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        if let Some(path) = args.from.strip_prefix("state:") {
            let state = read_state_file(std::path::Path::new(path))?;
            let to = allot_store::open(&args.to).await.context("opening the --to store")?;
            let v = to.current_version().await.context("reading the --to store")?;
            if v != 0 {
                anyhow::bail!("the --to store is not empty (version {v})");
            }
            allot_store::import::import_state(&*to, &state, "migrate-store", &allot_server::now())
                .await
                .with_context(|| format!("importing {path}"))?;
            println!(
                "imported {path}: version {} with {} log entries and {} allocations",
                state.version,
                state.log.len(),
                state.allocations.len()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let from = allot_store::open(&args.from).await.context("opening the --from store")?;
        let to = allot_store::open(&args.to).await.context("opening the --to store")?;
        let r = allot_store::copy::copy_store(&*from, &*to, &mut |r| {
            tracing::debug!(
                versions = r.versions,
                keys = r.keys,
                sticky = r.sticky,
                exposures = r.exposures,
                "copying"
            );
        })
        .await
        .context("copying the store")?;
        println!(
            "copied {} versions (with their audit entries), {} keys, {} sticky assignments, {} exposures",
            r.versions, r.keys, r.sticky, r.exposures
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the service.
pub fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(serve(cli, args))
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    // A malformed --cors-origin is an error before anything is created.
    let _checked = allot_server::with_cors(axum::Router::new(), &args.cors_origins).map_err(|e| anyhow::anyhow!(e))?;
    // Before the port is bound: a bad mapping is an error now, not at the first request.
    let tables = match &args.analysis_tables {
        None => None,
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("--analysis-tables {}", p.display()))?),
    };
    let results = allot_server::results::ResultsSource::new(&args.database_url, tables.as_deref());
    let results = match (results, &args.analysis_tables) {
        (Ok(r), _) => Some(r),
        (Err(e), Some(p)) => anyhow::bail!("--analysis-tables {}: {e}", p.display()),
        // A store without SQL (none today) has no results; the endpoint then says so.
        (Err(_), None) => None,
    };
    // A bad certificate or key is an error before anything is created.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(allot_server::http::Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    // Bind first: a server that cannot listen must not have created the first admin key.
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let store = allot_store::open(&args.database_url).await.context("opening the store")?;
    let state = match &cli.state {
        Some(path) => Some((path.clone(), read_state_file(path)?)),
        None => None,
    };
    let opts = lifecycle::Options {
        bootstrap_key: std::env::var("ALLOT_BOOTSTRAP_ADMIN_KEY").ok(),
        state,
        config: cli.config_given.then(|| cli.config.clone()),
        force: args.force,
        reason: args.reason.clone(),
        actor: cli.actor.clone(),
        plan_budget: Duration::from_millis(args.plan_budget_ms),
        poll: Duration::from_millis(args.version_poll_ms),
        policy: allot_server::Policy {
            ofrep_unassigned: args.ofrep_unassigned,
            rate_limit: args.rate_limit,
            max_event_streams: args.max_event_streams,
        },
        show_generated_key,
    };
    // The lifecycle (first admin key, --state, --config, final flush) is the server crate's, so
    // that it is tested in-process.
    let started = lifecycle::start(listener, store, opts).await?;
    let limits = allot_server::http::Limits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
    };
    if let Some(r) = results {
        started.app.set_results_source(r);
    }
    let router = allot_server::with_cors(allot_server::router(started.app.clone()), &args.cors_origins)
        .map_err(|e| anyhow::anyhow!(e))?;
    started.serve(router, tls, limits, shutdown()).await;
    Ok(ExitCode::SUCCESS)
}

/// Prints a generated first admin key, once: it is not stored in clear.
fn show_generated_key(secret: &str) {
    eprintln!("\nThe store had no keys: created the first admin key. It is shown only this once:\n\n    {secret}\n\nUse it as `Authorization: Bearer <key>`; create other keys with POST /api/v1/keys.\n");
}

/// Reads a state file that must exist (an explicit `--state` or `state:` source).
fn read_state_file(path: &std::path::Path) -> Result<allot_core::state::State> {
    if !path.exists() {
        anyhow::bail!("state file {} does not exist", path.display());
    }
    crate::files::read_state(path)
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
