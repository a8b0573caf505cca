//! Running the analysis query (allot-sql's text) on PostgreSQL or SQLite, allot's own
//! connection (`allot analyze --warehouse`, `--store`): one read-only statement whose few rows
//! come back as text, rendered without loss (integers as integers, doubles in their shortest
//! round-tripping form), for the same decoder a CSV of rows goes through.
//!
//! A caller may first load one temporary table on the same connection (metric rows from a file,
//! for `--store` with `--metrics`); nothing else is ever written.

use crate::{is_postgres, pg_tls, Result, StoreError};
use sqlx::{Column as _, Connection as _, Row as _, TypeInfo as _, ValueRef as _};

/// The store's exposure table (both backends' migrations).
pub const EXPOSURE_TABLE: &str = "exposures";
/// Its unit, experiment, variant and time columns; the time is RFC 3339 text.
pub const EXPOSURE_COLUMNS: [&str; 4] = ["unit", "experiment", "variant", "time"];

/// A query's answer as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextRows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one text per column (empty for NULL).
    pub rows: Vec<Vec<String>>,
}

/// A temporary table to load before the query: `name(columns…)`, every column text except
/// those named in `real` (double precision).
#[derive(Debug, Clone, Default)]
pub struct TempTable {
    /// Table name (a plain identifier).
    pub name: String,
    /// Column names (plain identifiers).
    pub columns: Vec<String>,
    /// Columns of type double precision.
    pub real: Vec<String>,
    /// Rows, one text per column.
    pub rows: Vec<Vec<String>>,
}

/// Rows per `INSERT` when loading a temporary table.
const BATCH: usize = 1000;

/// Runs `sql` on the database `url` names (`postgres://…`, with the store's `schema=NAME` if
/// given, or `sqlite://…`), after loading
/// `temp` if given, and returns its rows as text. On PostgreSQL the query runs in a `READ ONLY`
/// transaction, after `settings` (`SET LOCAL …` statements: they end with it); a SQLite database
/// is opened read-only.
pub async fn query(url: &str, sql: &str, temp: Option<&TempTable>, settings: &[&str]) -> Result<TextRows> {
    if is_postgres(url) {
        // The store's own `schema=NAME` (and `pool=N`) are allot's parameters, not libpq's.
        let (url, params) = crate::postgres::split_params(url)?;
        let mut options = pg_tls::connect_options(&url)?;
        if let Some(schema) = params.schema.as_deref() {
            if !crate::postgres::valid_schema(schema) {
                return Err(StoreError::Invalid(format!("schema name {schema:?}")));
            }
            options = options.options([("search_path", schema)]);
        }
        let mut conn =
            sqlx::PgConnection::connect_with(&options).await.map_err(|e| pg_tls::connect_error(e, &options))?;
        if let Some(t) = temp {
            for q in load_statements(t, "DOUBLE PRECISION", "TEXT") {
                sqlx::raw_sql(&q).execute(&mut conn).await?;
            }
        }
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
        for setting in settings {
            sqlx::raw_sql(setting).execute(&mut *tx).await?;
        }
        let rows = sqlx::query(sql).fetch_all(&mut *tx).await?;
        tx.rollback().await?;
        let out = text_rows(&rows, |r, i| {
            let raw = r.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(String::new());
            }
            let ty = raw.type_info().name().to_string();
            Ok(match ty.as_str() {
                "INT8" | "INT4" | "INT2" => {
                    r.try_get::<i64, _>(i).or_else(|_| r.try_get::<i32, _>(i).map(i64::from))?.to_string()
                }
                "FLOAT8" => format!("{:?}", r.try_get::<f64, _>(i)?),
                "FLOAT4" => format!("{:?}", f64::from(r.try_get::<f32, _>(i)?)),
                "NUMERIC" => {
                    return Err(StoreError::Invalid(format!(
                        "column {i} is NUMERIC: cast it to DOUBLE PRECISION or BIGINT"
                    )))
                }
                _ => r.try_get::<String, _>(i)?,
            })
        })?;
        conn.close().await?;
        Ok(out)
    } else if url.starts_with("sqlite:") {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?
            .read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        if let Some(t) = temp {
            for q in load_statements(t, "REAL", "TEXT") {
                sqlx::raw_sql(&q).execute(&mut conn).await?;
            }
        }
        let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
        let out = text_rows(&rows, |r, i| {
            let raw = r.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(String::new());
            }
            let ty = raw.type_info().name().to_string();
            Ok(match ty.as_str() {
                "INTEGER" => r.try_get::<i64, _>(i)?.to_string(),
                "REAL" => format!("{:?}", r.try_get::<f64, _>(i)?),
                _ => r.try_get::<String, _>(i)?,
            })
        })?;
        conn.close().await?;
        Ok(out)
    } else {
        Err(StoreError::Unsupported("expected postgres://USER@HOST/DB or sqlite://PATH".into()))
    }
}

/// Column names and every value of `rows` through `get`.
fn text_rows<R: sqlx::Row>(rows: &[R], get: impl Fn(&R, usize) -> Result<String>) -> Result<TextRows> {
    let columns = rows.first().map(|r| r.columns().iter().map(|c| c.name().to_string()).collect()).unwrap_or_default();
    let mut out = vec![];
    for r in rows {
        out.push((0..r.len()).map(|i| get(r, i)).collect::<Result<Vec<_>>>()?);
    }
    Ok(TextRows { columns, rows: out })
}

/// The statements that create and fill the temporary table: values as literals (text with its
/// quotes doubled, numbers in their round-tripping form), so that one code serves both backends.
fn load_statements(t: &TempTable, real: &str, text: &str) -> Vec<String> {
    let cols: Vec<String> =
        t.columns.iter().map(|c| format!("{c} {}", if t.real.contains(c) { real } else { text })).collect();
    let mut out = vec![format!("CREATE TEMPORARY TABLE {} ({})", t.name, cols.join(", "))];
    for chunk in t.rows.chunks(BATCH) {
        let values: Vec<String> = chunk
            .iter()
            .map(|row| {
                let vs: Vec<String> = t
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| match v.parse::<f64>() {
                        Ok(x) if t.real.contains(c) && x.is_finite() => format!("{x:?}"),
                        _ if t.real.contains(c) => "NULL".to_string(),
                        _ => format!("'{}'", v.replace('\'', "''")),
                    })
                    .collect();
                format!("({})", vs.join(", "))
            })
            .collect();
        out.push(format!("INSERT INTO {} ({}) VALUES {}", t.name, t.columns.join(", "), values.join(", ")));
    }
    out
}
