//! The SQL dialects: what differs between engines in the analysis query (identifier quoting,
//! string literals, type names, time to epoch seconds, the scalar minimum). Everything else in
//! the query is the SQL all of them speak: CTEs, `GROUP BY`, `LEFT JOIN`, `CASE`, `SUM`.

use crate::tables::TimeType;

/// An SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL (12 or later).
    Postgres,
    /// DuckDB (1.0 or later).
    Duckdb,
    /// Spark SQL (3.1 or later; Databricks).
    Spark,
    /// Google BigQuery (GoogleSQL).
    Bigquery,
    /// Snowflake.
    Snowflake,
    /// SQLite (3.42 or later), for allot's own SQLite store.
    Sqlite,
}

impl Dialect {
    /// Every dialect, in the order of `--emit-sql`'s list (SQLite last).
    pub const ALL: [Dialect; 6] =
        [Dialect::Postgres, Dialect::Duckdb, Dialect::Spark, Dialect::Bigquery, Dialect::Snowflake, Dialect::Sqlite];

    /// Its name on the command line (`--emit-sql <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Duckdb => "duckdb",
            Dialect::Spark => "spark",
            Dialect::Bigquery => "bigquery",
            Dialect::Snowflake => "snowflake",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// The dialect of a name.
    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == name)
    }

    /// A quoted identifier (one part: the caller splits `schema.table`). Parts are validated to
    /// `[A-Za-z_][A-Za-z0-9_$]*` before they get here, so quoting never needs an escape; it keeps
    /// reserved words (`time`, `day`) and the case of the output columns.
    pub fn ident(self, part: &str) -> String {
        match self {
            Dialect::Spark | Dialect::Bigquery => format!("`{part}`"),
            _ => format!("\"{part}\""),
        }
    }

    /// A string literal. Spark, BigQuery and Snowflake read a backslash as an escape in
    /// single-quoted strings; the others only a doubled quote.
    pub fn string(self, s: &str) -> String {
        match self {
            Dialect::Spark | Dialect::Bigquery | Dialect::Snowflake => {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            _ => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// The 64-bit floating-point type.
    pub fn double(self) -> &'static str {
        match self {
            Dialect::Postgres => "DOUBLE PRECISION",
            Dialect::Bigquery => "FLOAT64",
            Dialect::Sqlite => "REAL",
            _ => "DOUBLE",
        }
    }

    /// The 64-bit integer type.
    pub fn bigint(self) -> &'static str {
        match self {
            Dialect::Bigquery => "INT64",
            Dialect::Sqlite => "INTEGER",
            _ => "BIGINT",
        }
    }

    /// The text type.
    pub fn text(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::Sqlite => "TEXT",
            Dialect::Spark | Dialect::Bigquery => "STRING",
            Dialect::Duckdb | Dialect::Snowflake => "VARCHAR",
        }
    }

    /// `CAST(expr AS type)`.
    pub fn cast(self, expr: &str, ty: &str) -> String {
        format!("CAST({expr} AS {ty})")
    }

    /// Seconds since the epoch (with fractions) of a time column, as a double: every window is
    /// then plain arithmetic in seconds, the same in every dialect.
    pub fn epoch(self, col: &str, ty: TimeType) -> String {
        let d = self.double();
        match ty {
            TimeType::EpochSeconds => self.cast(col, d),
            TimeType::Timestamp | TimeType::Rfc3339Text => {
                let ts = if ty == TimeType::Timestamp {
                    col.to_string()
                } else {
                    match self {
                        Dialect::Postgres | Dialect::Duckdb => self.cast(col, "TIMESTAMPTZ"),
                        Dialect::Spark => self.cast(col, "TIMESTAMP"),
                        Dialect::Bigquery => format!("TIMESTAMP({col})"),
                        Dialect::Snowflake => format!("TO_TIMESTAMP_TZ({col})"),
                        Dialect::Sqlite => col.to_string(),
                    }
                };
                match self {
                    Dialect::Postgres => self.cast(&format!("EXTRACT(EPOCH FROM {ts})"), d),
                    Dialect::Duckdb => format!("{} / 1000000.0", self.cast(&format!("epoch_us({ts})"), d)),
                    Dialect::Spark => format!("{} / 1000000.0", self.cast(&format!("unix_micros({ts})"), d)),
                    Dialect::Bigquery => format!("{} / 1000000.0", self.cast(&format!("UNIX_MICROS({ts})"), d)),
                    Dialect::Snowflake => {
                        format!("{} / 1000000.0", self.cast(&format!("DATE_PART(EPOCH_MICROSECOND, {ts})"), d))
                    }
                    Dialect::Sqlite => format!("unixepoch({ts}, 'subsec')"),
                }
            }
        }
    }

    /// The smaller of two values (a cap): `LEAST`, SQLite's scalar `MIN`.
    pub fn least(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("MIN({a}, {b})"),
            _ => format!("LEAST({a}, {b})"),
        }
    }

    /// After `AS` in a CTE read more than once that should be inlined rather than materialized:
    /// PostgreSQL materializes such a CTE (a temporary copy of the exposure rows, and no
    /// statistics for the planner); the others inline or choose themselves.
    pub fn not_materialized(self) -> &'static str {
        match self {
            Dialect::Postgres => " NOT MATERIALIZED",
            _ => "",
        }
    }

    /// What ends the metric events' subquery so that the planner keeps it a subquery: PostgreSQL
    /// would otherwise pull it up and evaluate its casts (`NUMERIC` to `DOUBLE PRECISION`, a
    /// text conversion) at every reference in the join, once per event and unit instead of once
    /// per event. `OFFSET 0` is its usual fence and changes no row.
    pub fn fence(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some("OFFSET 0"),
            _ => None,
        }
    }

    /// Settings allot applies (transaction-local) before the query. PostgreSQL estimates the
    /// number of (unit, experiment) groups from a sample of rows, far below the truth at scale,
    /// and then picks hash aggregation over the join of units and events, which spills every
    /// joined row to temporary files; without it the plan sorts each side once and the join,
    /// ordered by unit, streams into the grouping (10M exposure rows: minutes instead of hours,
    /// and a few GB of temporary files instead of tens).
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            Dialect::Postgres => &["SET LOCAL enable_hashagg = off"],
            _ => &[],
        }
    }

    /// A floating-point literal that every dialect reads as a number (never `1e10` without a
    /// mantissa dot, which some engines read as an integer or decimal).
    pub fn number(self, x: f64) -> String {
        let s = format!("{x:?}");
        if s.contains('e') || s.contains('E') {
            self.cast(&format!("'{s}'"), self.double())
        } else {
            s
        }
    }
}
