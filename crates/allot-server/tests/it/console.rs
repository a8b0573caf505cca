//! The console in-process: sign-in and its cookie, sessions that survive a restart and end with
//! their key, CSRF, roles, hostile text, the overview's numbers against the audit, the lifecycle
//! through the preview, assets and security headers.

use crate::support::{configured, postgres_server, server, Reply, Server, ADMIN, CONFIG};
use allot_server::{router, App};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A browser: its session cookie, and what it sends with every request.
pub(crate) struct Browser<'a> {
    _s: &'a Server,
    app: std::sync::Arc<App>,
    cookie: Option<String>,
    tls: bool,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(s: &'a Server) -> Browser<'a> {
        Browser { _s: s, app: s.app.clone(), cookie: None, tls: false }
    }

    pub(crate) async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut b = Request::builder().method(method).uri(path).header("host", "console.test");
        if let Some(c) = &self.cookie {
            b = b.header("cookie", format!("other=1; allot_session={c}"));
        }
        if method == "POST" {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        for (h, v) in headers {
            b = b.header(*h, *v);
        }
        if self.tls {
            b = b.extension(allot_server::http::OverTls);
        }
        let res = router(self.app.clone()).oneshot(b.body(Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], "").await
    }

    /// A same-origin form POST, as a browser sends it.
    pub(crate) async fn post(&self, path: &str, form: &str) -> Reply {
        self.send("POST", path, &[("origin", "http://console.test"), ("sec-fetch-site", "same-origin")], form).await
    }

    /// Signs in with `key`: the reply, and the cookie kept when one was set.
    pub(crate) async fn sign_in(&mut self, key: &str) -> Reply {
        let r = self.post("/console/sign-in", &format!("key={}", enc(key))).await;
        if let Some(c) = r.headers.get("set-cookie") {
            let c = c.to_str().unwrap();
            let token = c.strip_prefix("allot_session=").unwrap().split(';').next().unwrap();
            self.cookie = Some(token.to_string());
        }
        r
    }

    /// The CSRF token of the page at `path`.
    pub(crate) async fn csrf(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        attr_after(&r.text, "name=\"csrf\" value=\"").expect("a CSRF field")
    }
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text from after `marker` to the next `"`.
pub(crate) fn attr_after(html: &str, marker: &str) -> Option<String> {
    let i = html.find(marker)? + marker.len();
    Some(html[i..].split('"').next()?.to_string())
}

pub(crate) fn location(r: &Reply) -> &str {
    r.headers.get("location").map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn header<'r>(r: &'r Reply, name: &str) -> &'r str {
    r.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// A new key of `role` named `name`: (id, secret).
pub(crate) async fn key(s: &Server, name: &str, role: &str) -> (String, String) {
    let body = serde_json::json!({"name": name, "role": role});
    let r = s.post("/api/v1/keys", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    (v["key"]["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn the_root_leads_to_the_console_and_the_console_to_sign_in() {
    let s = server().await;
    let b = Browser::new(&s);
    let r = b.get("/").await;
    assert!(r.status.is_redirection(), "{:?}", r.status);
    assert_eq!(location(&r), "/console");
    for path in ["/console", "/console/experiments/banner"] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), "/console/sign-in", "{path}");
    }
    let r = b.get("/console/sign-in").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("<form method=\"post\" action=\"/console/sign-in\""), "{}", r.text);
    // The APIs stay where they are, behind their keys.
    assert_eq!(s.call("GET", "/api/v1/config", None, &[], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/console/nothing-here").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_console_response_carries_the_security_headers() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(ADMIN).await;
    for path in ["/console/sign-in", "/console", "/console/experiments/banner", "/console/nope"] {
        let r = b.get(path).await;
        let csp = header(&r, "content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&r, "referrer-policy"), "same-origin", "{path}");
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{path}");
        if r.status == StatusCode::OK {
            assert_eq!(header(&r, "cache-control"), "no-store", "{path}");
            assert!(!r.text.contains("<script>") && !r.text.contains(" style=\""), "{path}: no inline script or style");
        }
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    let r = b.sign_in(ADMIN).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/console");
    let cookie = header(&r, "set-cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"] {
        assert!(cookie.split("; ").any(|p| p == part), "{part} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "not over TLS: {cookie}");
    let token = b.cookie.clone().unwrap();
    assert_eq!(token.len(), 64);
    // Only the token's hash is stored.
    let found = s.app.store().find_session(&allot_store::sha256_hex(&token), 0).await.unwrap().unwrap();
    assert!(s.app.store().find_session(&token, 0).await.unwrap().is_none());
    assert!(found.key_id.starts_with("k_"));
    let r = b.get("/console").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("bootstrap-admin"));
    // A restart (a new App on the same store) keeps the session.
    let restarted = App::new(s.app.store().clone()).await.unwrap();
    let mut other = Browser::new(&s);
    other.app = restarted;
    other.cookie = b.cookie.clone();
    assert_eq!(other.get("/console").await.status, StatusCode::OK);
    // Sign-out deletes the session and clears the cookie.
    let csrf = b.csrf("/console").await;
    let r = b.post("/console/sign-out", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/console/sign-in");
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    assert_eq!(b.get("/console").await.status, StatusCode::SEE_OTHER);
    assert_eq!(other.get("/console").await.status, StatusCode::SEE_OTHER, "on every node");
}

#[tokio::test]
async fn over_tls_the_cookie_is_secure() {
    let s = server().await;
    let mut b = Browser::new(&s);
    b.tls = true;
    let r = b.sign_in(ADMIN).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(header(&r, "set-cookie").split("; ").any(|p| p == "Secure"), "{}", header(&r, "set-cookie"));
}

#[tokio::test]
async fn unknown_and_evaluator_keys_cannot_sign_in() {
    let s = server().await;
    let (_, evaluator) = key(&s, "eval", "evaluator").await;
    let mut b = Browser::new(&s);
    let r = b.sign_in("allot_not-a-key").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("unknown or revoked"), "{}", r.text);
    assert!(r.headers.get("set-cookie").is_none());
    let r = b.sign_in(&evaluator).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("An evaluator key can only evaluate flags"), "{}", r.text);
    assert!(r.headers.get("set-cookie").is_none());
    // A forged cookie is no session.
    b.cookie = Some("ab".repeat(32));
    assert_eq!(b.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_or_from_another_site_is_refused() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(ADMIN).await;
    let csrf = b.csrf("/console/experiments/banner").await;
    let version = s.app.live().version;
    // No token, a wrong token: 403, nothing done.
    for form in [format!("version={version}"), format!("csrf={}&version={version}", "0".repeat(64))] {
        let r = b.post("/console/experiments/banner/stop/confirm", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}: {}", r.text);
        assert!(r.text.contains("CSRF"), "{}", r.text);
        let r = b.post("/console/sign-out", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // The right token from another site: 403.
    let good = format!("csrf={csrf}&version={version}");
    for headers in [
        [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
        [("origin", "https://evil.example"), ("x-none", "")],
        [("origin", "http://console.test"), ("sec-fetch-site", "same-site")],
    ] {
        let r = b.send("POST", "/console/experiments/banner/stop/confirm", &headers, &good).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(r.text.contains("cross-site request refused"), "{}", r.text);
    }
    let mut other = Browser::new(&s);
    let r = other
        .send("POST", "/console/sign-in", &[("origin", "https://evil.example")], &format!("key={}", enc(ADMIN)))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "login CSRF");
    assert!(other.sign_in(ADMIN).await.headers.get("set-cookie").is_some());
    assert_eq!(s.app.live().version, version, "nothing was written");
    assert_eq!(b.get("/console").await.status, StatusCode::OK, "still signed in");
    // The session's own token works.
    let r = b.post("/console/experiments/banner/stop/confirm", &good).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
}

#[tokio::test]
async fn a_reader_sees_no_action_and_any_action_is_refused() {
    let s = configured().await;
    let (_, reader) = key(&s, "rita", "reader").await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut e = Browser::new(&s);
    e.sign_in(&editor).await;
    let page = e.get("/console/experiments/banner").await;
    assert!(page.text.contains("data-action=\"stop\""), "an editor sees the action");
    let mut r = Browser::new(&s);
    r.sign_in(&reader).await;
    let version = s.app.live().version;
    for path in ["/console", "/console/experiments/banner", "/console/experiments/later"] {
        let page = r.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("data-action"), "{path}: a reader sees no action");
        assert!(page.text.contains("rita") && page.text.contains("reader"));
    }
    let csrf = r.csrf("/console").await;
    for path in [
        "/console/experiments/banner/stop",
        "/console/experiments/banner/stop/confirm",
        "/console/experiments/later/start",
    ] {
        let res = r.post(path, &format!("csrf={csrf}&version={version}")).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert!(res.text.contains("a key with role `reader` cannot change the configuration"), "{}", res.text);
    }
    assert_eq!(s.app.live().version, version);
}

#[tokio::test]
async fn revoking_a_key_ends_its_sessions() {
    let s = configured().await;
    let (id, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    assert_eq!(b.get("/console").await.status, StatusCode::OK);
    let token = b.cookie.clone().unwrap();
    let r = s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(b.get("/console").await.status, StatusCode::SEE_OTHER);
    assert!(s.app.store().find_session(&allot_store::sha256_hex(&token), 0).await.unwrap().is_none(), "deleted");
}

#[tokio::test]
async fn a_session_of_a_key_revoked_on_another_node_ends_on_this_one() {
    let s = configured().await;
    let (id, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    // Another node revokes in the shared store; this node's key table learns it on its next read.
    s.app.store().revoke_key(&id, "2026-01-01T00:00:00Z").await.unwrap();
    s.app.refresh_keys().await.unwrap();
    assert_eq!(b.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn hostile_names_and_values_render_inert() {
    let s = server().await;
    let hostile = "<script>alert(\"k\")</script> \u{202e}'evil'";
    let (_, editor) = key(&s, hostile, "editor").await;
    let yaml = CONFIG
        .replace("value: false", r#"value: "<img src=x onerror=alert(1)>""#)
        .replace("include: {alice: treatment}", r#"include: {"<b>bob</b>\"": treatment}"#)
        .replace(
            "    state: running\n  color:",
            "    state: running\n    targeting: {attribute: country, in: [\"<script>x</script>\", \"\\u202eabc\"]}\n  color:",
        );
    assert_ne!(yaml, CONFIG);
    let r = s.put_config(&yaml, "*", "?reason=%3Cscript%3Ealert(2)%3C%2Fscript%3E").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    for path in [
        "/console",
        "/console/experiments/banner",
        "/console/config",
        "/console/audit",
        "/console/audit/1",
        "/console/versions/1",
        "/console/timeline",
        "/console/edit/experiments/banner",
        "/console/experiments/banner/why?unit=%3Cscript%3Ealert(3)",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        for raw in ["<script>alert", "<img src=x", "<b>bob", "<script>x", "<script>alert(2)", "<script>alert(3)"] {
            assert!(!page.text.contains(raw), "{path}: {raw} is not escaped");
        }
        assert!(
            page.text.contains("<bdi>&#60;script&#62;alert(&#34;k&#34;)&#60;/script&#62; \u{202e}&#39;evil&#39;</bdi>"),
            "{path}: the key's name, escaped: {}",
            page.text.split("signed in as").nth(1).unwrap_or("").chars().take(200).collect::<String>()
        );
    }
    let mut admin = Browser::new(&s);
    admin.sign_in(ADMIN).await;
    let keys = admin.get("/console/keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    assert!(!keys.text.contains("<script>alert"), "the keys page escapes names");
    assert!(keys.text.contains("<bdi>&#60;script&#62;alert(&#34;k&#34;)&#60;/script&#62;"));
    let page = b.get("/console/experiments/banner").await;
    assert!(page.text.contains("&#60;img src=x onerror=alert(1)&#62;"), "{}", page.text);
    assert!(page.text.contains("&#60;b&#62;bob&#60;/b&#62;&#34;"), "{}", page.text);
    assert!(page.text.contains("<bdi>"), "names are isolated for right-to-left text");
}

/// Rows `<tr data-{attr}="ID" ...data-buckets="N">` of a page: (ID, N).
fn rows(html: &str, attr: &str) -> Vec<(String, u64)> {
    let marker = format!("<tr data-{attr}=\"");
    html.split(&marker)
        .skip(1)
        .map(|row| {
            let id = row.split('"').next().unwrap().to_string();
            let row = row.split("</tr>").next().unwrap();
            let n = attr_after(row, "data-buckets=\"").unwrap_or_default();
            (id, n.parse().unwrap_or(u64::MAX))
        })
        .collect()
}

#[tokio::test]
async fn the_overview_shows_the_audit_exactly() {
    let s = configured().await;
    // A stopped experiment, so that released buckets are drawn too.
    let extra = CONFIG.replace(
        "  later:",
        "  old:\n    unit: user\n    surfaces: [home]\n    share: 20%\n    variants: {a: 1}\n    state: running\n  later:",
    );
    assert_eq!(s.put_config(&extra, "*", "").await.status, StatusCode::OK);
    let stopped = extra.replace(
        "share: 20%\n    variants: {a: 1}\n    state: running",
        "share: 20%\n    variants: {a: 1}\n    state: stopped",
    );
    let r = s.put_config(&stopped, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, state) = s.app.store().load_current().await.unwrap();
    let cfg = allot_core::state::applied_config(&state).unwrap().unwrap();
    let audit = allot_core::audit::audit(&state, &cfg);
    let mut b = Browser::new(&s);
    b.sign_in(ADMIN).await;
    let page = b.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    // The experiments table: the audit's buckets for each running experiment.
    let exps = rows(&page.text, "experiment");
    assert_eq!(exps.len(), cfg.experiments.len());
    for (id, n) in &exps {
        match audit.experiments.get(id) {
            Some(a) => assert_eq!(*n, a.buckets, "{id}"),
            None => assert_eq!(*n, u64::MAX, "{id}: not running, no buckets shown"),
        }
    }
    // Each scope's table: the parts add up to the space, each experiment's part is its reach.
    let scopes: Vec<&str> = page.text.split("<table class=\"numbers\">\n<caption>").skip(1).collect();
    assert_eq!(scopes.len(), 2, "surfaces home and search");
    let mut released = 0;
    for t in scopes {
        let t = t.split("</table>").next().unwrap();
        let parts = rows(t, "segment");
        assert_eq!(parts.iter().map(|(_, n)| n).sum::<u64>(), 1_000_000, "{t}");
        for part in t.split("<tr data-segment=").skip(1) {
            let kind = attr_after(part, "data-kind=\"").unwrap();
            let owner = attr_after(part, "data-owner=\"").unwrap();
            let n: u64 = attr_after(part, "data-buckets=\"").unwrap().parse().unwrap();
            match kind.as_str() {
                "seg-exp" => assert_eq!(n, audit.experiments[&owner].reach_buckets, "{owner}"),
                "seg-holdout" => assert_eq!(n, audit.holdouts[&owner].buckets, "{owner}"),
                "seg-released" => {
                    assert_eq!(owner, "old");
                    released += n;
                }
                _ => {}
            }
        }
    }
    assert_eq!(released, 200_000, "the stopped experiment's buckets are free again");
    // What can still start on home: the space less banner and the holdout.
    let home_free = 1_000_000 - audit.experiments["banner"].buckets - audit.holdouts["hold"].buckets;
    assert!(
        page.text.contains(&format!("can take up to {}% ({home_free} buckets)", home_free as f64 / 10_000.0)),
        "{}",
        page.text
    );
    // The independent overlap of the two surfaces, exactly as the audit counts it.
    let o = audit.overlaps.iter().find(|o| o.a == "banner" && o.b == "color").unwrap();
    assert!(!o.exclusive);
    assert!(
        page.text.contains(&format!("<td class=\"num\">{} (", o.shared_buckets)),
        "shared {} in {}",
        o.shared_buckets,
        page.text
    );
    // The experiment page: share, reach and the overlap, from the audit.
    let page = b.get("/console/experiments/banner").await;
    let a = &audit.experiments["banner"];
    assert!(page.text.contains(&format!("<dd id=\"share\">50% ({} buckets)</dd>", a.buckets)), "{}", page.text);
    assert!(page.text.contains(&format!("<dd id=\"reach\">50% ({} buckets)</dd>", a.reach_buckets)));
    assert!(page.text.contains(&format!(
        "<td class=\"num\">{}</td><td class=\"num\">{:.0}</td>",
        o.shared_buckets, o.expected_shared_buckets
    )));
    assert!(page.text.contains("country") || page.text.contains("everyone"));
}

#[tokio::test]
async fn a_stop_goes_through_the_preview_and_a_conflict_writes_nothing() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    let csrf = b.csrf("/console/experiments/banner").await;
    let v = s.app.live().version;
    let preview = b.post("/console/experiments/banner/stop", &format!("csrf={csrf}&version={v}")).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    assert!(preview.text.contains("stop experiment banner"), "{}", preview.text);
    assert!(preview.text.contains("Confirm: <bdi>stop experiment banner</bdi>"));
    assert_eq!(s.app.live().version, v, "a preview writes nothing");
    // Someone else changes the configuration first: the confirmation is a conflict.
    let r = s.call("POST", "/api/v1/experiments/color/stop", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let now = s.app.live().version;
    let res = b.post("/console/experiments/banner/stop/confirm", &format!("csrf={csrf}&version={v}")).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text);
    assert!(res.text.contains("Someone else changed the configuration first"), "{}", res.text);
    assert_eq!(s.app.live().version, now, "nothing written");
    // Against the current version it goes through, and the history says who.
    let res = b.post("/console/experiments/banner/stop/confirm", &format!("csrf={csrf}&version={now}")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text);
    assert_eq!(location(&res), format!("/console/experiments/banner?done={}", now + 1));
    let page = b.get(location(&res)).await;
    assert!(page.text.contains("state-stopped"), "{}", page.text);
    assert!(page.text.contains(&format!("Committed as version {}", now + 1)));
    assert!(page.text.contains("eddie"));
    let (_, state) = s.app.store().load_current().await.unwrap();
    assert_eq!(state.log.last().unwrap().actor.as_deref(), Some("eddie"));
}

#[tokio::test]
async fn assets_are_embedded_content_addressed_and_cached() {
    let s = server().await;
    let b = Browser::new(&s);
    let page = b.get("/console/sign-in").await;
    let css = attr_after(&page.text, "<link rel=\"stylesheet\" href=\"").unwrap();
    let js = attr_after(&page.text, "<script src=\"").unwrap();
    for (path, ty) in [(&css, "text/css"), (&js, "text/javascript")] {
        assert!(path.starts_with("/console/assets/console."), "{path}");
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(header(&r, "content-type").starts_with(ty));
        assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable");
        let etag = header(&r, "etag").to_string();
        assert!(path.contains(etag.trim_matches('"')), "the path carries the hash");
        let r = b.send("GET", path, &[("if-none-match", &etag)], "").await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    }
    assert_eq!(b.get("/console/assets/console.0000.css").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_refused_change_shows_its_rule_and_can_be_forced_only_with_a_reason() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(ADMIN).await;
    let csrf = b.csrf("/console/experiments/banner").await;
    let v = s.app.live().version;
    let r = b.post("/console/experiments/banner/stop/confirm", &format!("csrf={csrf}&version={v}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let v = v + 1;
    // Starting it again would move units: the preview shows the refusal and its rule.
    let preview = b.post("/console/experiments/banner/start", &format!("csrf={csrf}&version={v}")).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    assert!(preview.text.contains("<table class=\"numbers\" id=\"refusals\">"), "{}", preview.text);
    let rule = attr_after(&preview.text, "<tbody><tr><td><code>").map(|r| r.split('<').next().unwrap().to_string());
    assert!(rule.as_deref().is_some_and(|r| !r.is_empty()), "{}", preview.text);
    assert!(preview.text.contains("name=\"force\""));
    // Confirming without forcing: refused, nothing written.
    let r = b.post("/console/experiments/banner/start/confirm", &format!("csrf={csrf}&version={v}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("the change was refused: nothing was written"));
    // Forcing without a reason: asked for one, nothing written.
    let r = b
        .post("/console/experiments/banner/start/confirm", &format!("csrf={csrf}&version={v}&force=on&reason=+"))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("a forced change needs a reason"));
    assert_eq!(s.app.live().version, v);
    // With a reason: made, and the history says it was forced and why.
    let r = b
        .post(
            "/console/experiments/banner/start/confirm",
            &format!("csrf={csrf}&version={v}&force=on&reason=restart+after+the+incident"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/console/experiments/banner").await;
    assert!(page.text.contains("<strong>forced</strong>: <bdi>restart after the incident</bdi>"), "{}", page.text);
}

/// Two nodes on one PostgreSQL: a session made on one is a session on the other, and signing
/// out or revoking the key on one ends it on both.
#[tokio::test]
async fn sessions_work_across_nodes_on_postgres() {
    let Some((s, url, schema)) = postgres_server().await else { return };
    let other = App::new(std::sync::Arc::new(
        allot_store::postgres::PgStore::open_in_schema(&url, Some(&schema)).await.unwrap(),
    ))
    .await
    .unwrap();
    let (id, editor) = key(&s, "eddie", "editor").await;
    let mut a = Browser::new(&s);
    a.sign_in(&editor).await;
    let mut b = Browser::new(&s);
    b.app = other.clone();
    b.cookie = a.cookie.clone();
    assert_eq!(b.get("/console").await.status, StatusCode::OK, "the other node knows the session");
    let csrf = b.csrf("/console").await;
    assert_eq!(b.post("/console/sign-out", &format!("csrf={csrf}")).await.status, StatusCode::SEE_OTHER);
    assert_eq!(a.get("/console").await.status, StatusCode::SEE_OTHER, "signed out on both");
    a.sign_in(&editor).await;
    b.cookie = a.cookie.clone();
    assert_eq!(b.get("/console").await.status, StatusCode::OK);
    let r = s.call("DELETE", &format!("/api/v1/keys/{id}"), Some(ADMIN), &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(b.get("/console").await.status, StatusCode::SEE_OTHER, "revoked on the other node: ended here");
    drop((s, other));
    allot_store::postgres::PgStore::drop_schema(&url, &schema).await.unwrap();
}

/// While the console is in use, the view of a new version is computed before a page asks for it
/// (by the refresh loop `allot serve` runs); an unused console computes nothing.
#[tokio::test]
async fn the_view_of_a_new_version_is_computed_ahead_while_the_console_is_in_use() {
    let s = configured().await;
    let _refresh = s.app.spawn_refresh(std::time::Duration::from_millis(20));
    let r = s.call("POST", "/api/v1/experiments/color/stop", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(s.app.console_view_version(), None, "nobody asked: nothing computed");
    let mut b = Browser::new(&s);
    b.sign_in(ADMIN).await;
    assert_eq!(b.get("/console").await.status, StatusCode::OK);
    let v = s.app.live().version;
    assert_eq!(s.app.console_view_version(), Some(v));
    let r = s.call("POST", "/api/v1/experiments/banner/stop", Some(ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Bounded wait (not a timing assertion): the refresh loop gets to it within a few ticks.
    for _ in 0..3000 {
        if s.app.console_view_version() == Some(v + 1) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the view of version {} was not computed ahead", v + 1);
}
