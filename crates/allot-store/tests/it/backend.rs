//! The backends every store test runs on: SQLite always, PostgreSQL when
//! `ALLOT_TEST_POSTGRES_URL` names a reachable server (each test in a fresh schema, dropped at
//! the end); otherwise the PostgreSQL variant says it was skipped and passes, unless
//! `ALLOT_REQUIRE_POSTGRES=1` (as `.ci/run` sets): then it fails.

use allot_store::postgres::PgStore;
use allot_store::Store;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A test's store and how to open it again.
pub enum Ctx {
    Sqlite { _dir: tempfile::TempDir, url: String, store: Arc<dyn Store> },
    Postgres { url: String, schema: String, store: Arc<dyn Store> },
}

impl Ctx {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Ctx::Sqlite { store, .. } | Ctx::Postgres { store, .. } => store.clone(),
        }
    }

    /// A second, independent handle on the same database (as after a restart, or another node).
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match self {
            Ctx::Sqlite { url, .. } => allot_store::open(url).await.unwrap(),
            Ctx::Postgres { url, schema, .. } => Arc::new(PgStore::open_in_schema(url, Some(schema)).await.unwrap()),
        }
    }
}

/// Says why a PostgreSQL test cannot run: a failure when `ALLOT_REQUIRE_POSTGRES=1`, else a line
/// saying it was skipped.
pub fn skip(why: &str) {
    if std::env::var("ALLOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("ALLOT_REQUIRE_POSTGRES=1 but {why}");
    }
    eprintln!("skipped: {why}");
}

/// The PostgreSQL URL to test against, if set and reachable (else says why the test is skipped,
/// or fails with `ALLOT_REQUIRE_POSTGRES=1`).
pub async fn postgres_url() -> Option<String> {
    let Ok(url) = std::env::var("ALLOT_TEST_POSTGRES_URL") else {
        skip("ALLOT_TEST_POSTGRES_URL is not set");
        return None;
    };
    let opts: sqlx::postgres::PgConnectOptions = match url.parse() {
        Ok(o) => o,
        Err(e) => {
            skip(&format!("ALLOT_TEST_POSTGRES_URL is not a PostgreSQL URL: {e}"));
            return None;
        }
    };
    match <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await {
        Ok(c) => {
            let _ = sqlx::Connection::close(c).await;
            Some(url)
        }
        Err(e) => {
            skip(&format!("PostgreSQL at ALLOT_TEST_POSTGRES_URL is unreachable: {e}"));
            None
        }
    }
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("allot_test_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn run_sqlite<F, Fut>(f: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let store = allot_store::open(&url).await.unwrap();
    f(Ctx::Sqlite { _dir: dir, url, store }).await;
}

pub async fn run_postgres<F, Fut>(f: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url().await else { return };
    let schema = fresh_schema();
    let store: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&url, Some(&schema)).await.unwrap());
    let outcome = tokio::spawn(f(Ctx::Postgres { url: url.clone(), schema: schema.clone(), store })).await;
    PgStore::drop_schema(&url, &schema).await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs each named `async fn(Ctx)` as two tests, `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::backend::run_sqlite(super::$name).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::backend::run_postgres(super::$name).await
                }
            }
        )*
    };
}
