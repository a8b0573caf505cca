//! A service over a fresh SQLite store, and requests against it.

use allot_server::{router, App};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-secret-for-the-server-tests-0001";

pub const CONFIG: &str = r#"
units:
  user: {attribute: user_id}
surfaces: [home, search]
holdouts:
  hold: {unit: user, share: 10%, applies_to: [home]}
experiments:
  banner:
    unit: user
    surfaces: [home]
    share: 50%
    variants:
      control: {weight: 1, value: false}
      treatment: {weight: 1, value: true}
    include: {alice: treatment}
    state: running
  color:
    unit: user
    surfaces: [search]
    share: 100%
    variants: {blue: 1, green: 1}
    state: running
  later:
    unit: user
    surfaces: [search]
    share: 10%
    variants: {a: 1}
"#;

pub struct Server {
    pub app: Arc<App>,
    pub _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    pub fn etag(&self) -> String {
        self.headers.get("etag").unwrap().to_str().unwrap().to_string()
    }
}

pub async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
    let store = allot_store::open(&url).await.unwrap();
    let app = App::new(store).await.unwrap();
    app.bootstrap(Some(ADMIN)).await.unwrap();
    Server { app, _dir: dir }
}

/// A server with `CONFIG` applied (version 1).
pub async fn configured() -> Server {
    let s = server().await;
    let r = s.put_config(CONFIG, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s
}

impl Server {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        for (h, v) in headers {
            b = b.header(*h, *v);
        }
        let res = router(self.app.clone()).oneshot(b.body(Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, Some(ADMIN), &[], "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.call("POST", path, Some(ADMIN), &[("content-type", "application/json")], body).await
    }

    pub async fn put_config(&self, yaml: &str, if_match: &str, query: &str) -> Reply {
        self.call("PUT", &format!("/api/v1/config{query}"), Some(ADMIN), &[("if-match", if_match)], yaml).await
    }

    /// A new key of `role`; returns its secret.
    pub async fn key(&self, role: &str) -> String {
        let r = self.post("/api/v1/keys", &format!(r#"{{"name": "{role}-key", "role": "{role}"}}"#)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["secret"].as_str().unwrap().to_string()
    }
}

/// Says why a PostgreSQL test cannot run: a failure when `ALLOT_REQUIRE_POSTGRES=1` (as `.ci/run`
/// sets), else a line saying it was skipped.
pub fn skip_postgres(why: &str) {
    if std::env::var("ALLOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("ALLOT_REQUIRE_POSTGRES=1 but {why}");
    }
    eprintln!("skipped: {why}");
}

/// A service on a fresh schema of `ALLOT_TEST_POSTGRES_URL`, and the URL and schema to drop;
/// `None` (skipped, or a failure with `ALLOT_REQUIRE_POSTGRES=1`) without a reachable server.
pub async fn postgres_server() -> Option<(Server, String, String)> {
    let Ok(url) = std::env::var("ALLOT_TEST_POSTGRES_URL") else {
        skip_postgres("ALLOT_TEST_POSTGRES_URL is not set");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("allot_server_{}_{nanos}", std::process::id());
    let store = match allot_store::postgres::PgStore::open_in_schema(&url, Some(&schema)).await {
        Ok(s) => s,
        Err(e) => {
            skip_postgres(&format!("PostgreSQL at ALLOT_TEST_POSTGRES_URL is unreachable: {e}"));
            return None;
        }
    };
    let app = App::new(Arc::new(store)).await.unwrap();
    app.bootstrap(Some(ADMIN)).await.unwrap();
    Some((Server { app, _dir: tempfile::tempdir().unwrap() }, url, schema))
}
