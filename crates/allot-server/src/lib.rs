//! The allot service: admin API, evaluation API, OFREP, snapshots, exposures, health and metrics,
//! over any [`Store`](allot_store::Store).
//!
//! [`App`] holds the store, the compiled snapshot of the current configuration version (in an
//! `ArcSwap`, replaced whole after each commit, so that no request ever sees half a change),
//! the key cache and the metrics. [`router`] builds the axum `Router`; tests drive it in-process.
//! [`lifecycle::start`] is what `allot serve` runs around it (first admin key, `--state`,
//! `--config`, final flush).
//!
//! Every change goes through the core's change control ([`App::change`]): validate, plan,
//! refuse or apply, then commit the new state and its audit entry in one store transaction,
//! checked against the version the change was planned from.
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `app` | [`App`], [`Live`], [`App::change`] / [`App::preview`] / [`App::import_state`], publishing a version |
//! | `refresh` | [`App::refresh`], [`App::spawn_refresh`]: versions of other nodes, key table re-reads |
//! | `keys` | the key cache, [`App::key`], [`App::bootstrap`] (the first admin key), new secrets |
//! | `sticky` | sticky assignments: the store calls of evaluation and the outage cache entry |
//! | `buffered` | rows kept in memory while the database cannot be reached, [`App::flush_pending`] |
//! | [`lifecycle`] | `allot serve` in-process: [`lifecycle::start`], [`lifecycle::Started::serve`] |
//! | `router` | [`router`], [`with_cors`], `/healthz`, `/readyz` |
//! | `console` | the web console (`/console`): sessions, pages, embedded assets; docs/console.md |
//! | `admin`, `evaluate`, `ofrep`, [`openapi`] | the HTTP handlers of each API |
//! | `ofrep_events` | OFREP's change events (server-sent events announcing each version) |
//! | `ratelimit` | the per-key rate limit (`429` with `Retry-After`) |
//! | `reports`, `resalt` | what the CLI does, over HTTP: the traffic audit, history, capacity, traces; [`App::resalt`] |
//! | [`capacity`] | capacity planning, shared with `allot capacity` |
//! | `auth` | authentication and roles |
//! | [`body`], `headers`, [`http`], `tls` | request bodies, entity tags, the transport (timeouts, TLS, drain) |
//! | [`error`] | the one table of API errors (and of OFREP errors) |
//! | [`metrics`] | `/metrics`, request ids, internal error counts |
//! | [`planner`], `writer`, [`served`], `yaml`, `clock` | planning pool, group commit, the served snapshot JSON, YAML bodies, "now" |
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(unreachable_pub)]

mod admin;
pub mod analysis;
mod app;
mod auth;
pub mod body;
mod buffered;
pub mod capacity;
mod clock;
mod console;
pub mod error;
mod evaluate;
mod headers;
pub mod http;
mod keys;
pub mod lifecycle;
pub mod metrics;
mod ofrep;
mod ofrep_events;
pub mod openapi;
pub mod planner;
mod ratelimit;
mod refresh;
mod reports;
mod resalt;
pub mod results;
mod router;
pub mod served;
mod sticky;
mod tls;
mod writer;
mod yaml;

pub use app::{App, ChangeRequest, Changed, IfMatch, Live, Policy};
pub use buffered::{BUFFERED_HEADER, EXPOSURE_BUFFER};
pub use clock::{now, now_seconds};
pub use error::{summary, ApiError};
pub use keys::{Bootstrap, MIN_BOOTSTRAP_KEY_CHARS};
pub use ofrep::{Unassigned, UNASSIGNED_HEADER};
pub use ofrep_events::DEFAULT_MAX_STREAMS as DEFAULT_MAX_EVENT_STREAMS;
pub use ratelimit::RateLimit;
pub use resalt::{ResaltRequest, Resalted};
pub use router::{router, with_cors};
pub(crate) use sticky::StickyKnown;
pub use sticky::{STICKY_BUFFER, STICKY_CACHE_UNITS};
