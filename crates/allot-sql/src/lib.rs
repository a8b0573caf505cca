//! The analysis pushed down to where the data lives: a pure compiler of SQL (it builds text,
//! it never connects) that turns the mapping of exposure and metric tables ([`tables`],
//! `tables.yaml`) into one query per dialect ([`Dialect`]: PostgreSQL, DuckDB, Spark SQL,
//! BigQuery, Snowflake, SQLite) returning one row of sufficient statistics per experiment ×
//! variant ([`compile()`]), and the decoder of those rows ([`rows`]) into what
//! `allot_stats::analysis::rows` analyses.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod compile;
pub mod dialect;
pub mod rows;
pub mod tables;

pub use compile::compile;
pub use dialect::Dialect;
pub use tables::{parse, Tables, TablesError};
