//! The `Store` contract: versions, conflicts, audit, keys, sticky assignments, exposures.

use crate::backend::Ctx;
use allot_core::state::State;
use allot_store::{AuditEntry, Exposure, KeyInfo, Revoke, Role, Session, StoreError};

on_every_backend!(
    empty_store_is_version_zero,
    commits_are_numbered_immutable_and_audited,
    a_stale_commit_is_a_conflict_and_leaves_nothing,
    of_concurrent_writers_exactly_one_wins,
    of_concurrent_writers_on_two_handles_exactly_one_wins,
    the_store_survives_reopening,
    keys_are_found_by_secret_and_revoked,
    concurrent_revocations_never_leave_no_admin,
    secrets_are_stored_as_a_keyed_hash,
    sticky_assignments_keep_the_first_variant,
    exposures_are_deduplicated_per_unit_experiment_variant_and_day,
    large_batches_are_written_whole,
    commits_are_announced_where_the_backend_can,
    sessions_are_found_until_they_expire_and_end_with_their_key,
);

fn state(version: u64) -> State {
    State { version, config: Some(serde_json::json!({"version": version})), ..State::default() }
}

fn entry(actor: &str) -> AuditEntry {
    AuditEntry {
        actor: actor.into(),
        time: "2026-01-01T00:00:00Z".into(),
        action: "config.put".into(),
        reason: None,
        forced: false,
        changes: serde_json::json!([{"entity": "experiment", "id": "a", "action": "create"}]),
        overridden: serde_json::json!([]),
    }
}

async fn empty_store_is_version_zero(ctx: Ctx) {
    let s = ctx.store();
    let (v, st) = s.load_current().await.unwrap();
    assert_eq!(v, 0);
    assert_eq!(st, State::default());
    assert!(s.audit(None, 10).await.unwrap().is_empty());
    s.ping().await.unwrap();
}

async fn commits_are_numbered_immutable_and_audited(ctx: Ctx) {
    let s = ctx.store();
    assert_eq!(s.commit(0, &state(1), &entry("ann")).await.unwrap(), 1);
    assert_eq!(s.commit(1, &state(2), &entry("bob")).await.unwrap(), 2);
    let (v, st) = s.load_current().await.unwrap();
    assert_eq!((v, st), (2, state(2)));
    assert_eq!(s.current_version().await.unwrap(), 2);
    assert_eq!(s.load_version(1).await.unwrap(), Some(state(1)));
    assert_eq!(s.load_version(9).await.unwrap(), None);
    let log = s.audit(None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].before_version, log[0].after_version, log[0].entry.actor.as_str()), (1, 2, "bob"));
    assert_eq!(log[1].entry, entry("ann"));
    assert_eq!(s.audit(Some(2), 10).await.unwrap().len(), 1);
}

async fn a_stale_commit_is_a_conflict_and_leaves_nothing(ctx: Ctx) {
    let s = ctx.store();
    s.commit(0, &state(1), &entry("ann")).await.unwrap();
    let e = s.commit(0, &state(1), &entry("bob")).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { expected: 0, current: 1 }), "{e}");
    assert!(matches!(s.commit(1, &state(1), &entry("bob")).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.audit(None, 10).await.unwrap().len(), 1);
    assert_eq!(s.load_current().await.unwrap().0, 1);
}

async fn of_concurrent_writers_exactly_one_wins(ctx: Ctx) {
    let s = ctx.store();
    let mut tasks = vec![];
    // Each writer proposes its own content, so the winner's can be recognised afterwards.
    let proposal = |i: usize| {
        let mut st = state(1);
        st.config = Some(serde_json::json!({"version": 1, "writer": i}));
        st
    };
    for i in 0..8 {
        let s = s.clone();
        let st = proposal(i);
        tasks.push(tokio::spawn(async move { s.commit(0, &st, &entry(&format!("w{i}"))).await }));
    }
    let mut winners = vec![];
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => winners.push(i),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let w = winners[0];
    // What is stored is the winner's state and the winner's audit entry, nothing of the others.
    let (v, current) = s.load_current().await.unwrap();
    assert_eq!((v, current.config), (1, proposal(w).config));
    let audit = s.audit(None, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.actor, format!("w{w}"));
}

async fn the_store_survives_reopening(ctx: Ctx) {
    ctx.store().commit(0, &state(1), &entry("ann")).await.unwrap();
    let s = ctx.reopen().await;
    assert_eq!(s.load_current().await.unwrap().0, 1);
    assert_eq!(s.audit(None, 10).await.unwrap().len(), 1);
}

/// Two handles on one database (two nodes): of commits from the same version exactly one wins,
/// whatever version each proposes, and the audit log chains the versions without gaps.
async fn of_concurrent_writers_on_two_handles_exactly_one_wins(ctx: Ctx) {
    let handles = [ctx.store(), ctx.reopen().await];
    let mut current = 0;
    for round in 0..5 {
        let mut tasks = vec![];
        for i in 0..8u64 {
            let s = handles[(i % 2) as usize].clone();
            let new = current + 1 + i % 3;
            tasks.push(tokio::spawn(async move { s.commit(current, &state(new), &entry(&format!("w{i}"))).await }));
        }
        let mut won = vec![];
        for t in tasks {
            match t.await.unwrap() {
                Ok(v) => won.push(v),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        current = won[0];
        assert_eq!(handles[1].current_version().await.unwrap(), current);
        assert_eq!(handles[0].load_current().await.unwrap().0, current);
    }
    let log = handles[1].audit(None, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].after_version, current);
    assert_eq!(log[4].before_version, 0);
    for w in log.windows(2) {
        assert_eq!(w[0].before_version, w[1].after_version, "the audit log chains versions");
    }
}

async fn large_batches_are_written_whole(ctx: Ctx) {
    let s = ctx.store();
    let xs: Vec<Exposure> = (0..2500)
        .map(|i| Exposure {
            unit: format!("u{}", i % 2000),
            experiment: "exp".into(),
            variant: "a".into(),
            day: "2026-01-01".into(),
            time: "2026-01-01T00:00:00Z".into(),
            version: 1,
        })
        .collect();
    assert_eq!(s.record_exposures(&xs).await.unwrap(), 2000);
    assert_eq!(s.record_exposures(&xs).await.unwrap(), 0);
    assert_eq!(s.exposures(None, 0, 5000).await.unwrap().len(), 2000);
    let rows: Vec<_> =
        (0..2500).map(|i| ("user".to_string(), format!("u{}", i % 2000), "exp".to_string(), format!("v{i}"))).collect();
    s.sticky_put(&rows).await.unwrap();
    assert_eq!(s.sticky_get("user", "u5", "exp").await.unwrap().as_deref(), Some("v5"));
    assert_eq!(s.sticky_get("user", "u1999", "exp").await.unwrap().as_deref(), Some("v1999"));
    s.sticky_put(&[("user".into(), "u1".into(), "other".into(), "v".into())]).await.unwrap();
    let counts = s.sticky_counts().await.unwrap();
    assert_eq!(counts, [("exp".to_string(), 2000), ("other".to_string(), 1)]);
}

#[tokio::test]
async fn an_unknown_url_is_unsupported_and_an_unreachable_server_does_not_leak_the_password() {
    let e = allot_store::open("mysql://u:secret@localhost/db").await.err().unwrap();
    assert!(matches!(e, StoreError::Unsupported(_)));
    let e = allot_store::open("postgres://u:secret@127.0.0.1:1/db").await.err().unwrap();
    assert!(!e.to_string().contains("secret"), "{e}");
}

fn key(id: &str, role: Role) -> KeyInfo {
    KeyInfo {
        id: id.into(),
        name: format!("{id}-name"),
        role,
        created_at: "2026-01-01T00:00:00Z".into(),
        revoked_at: None,
    }
}

async fn keys_are_found_by_secret_and_revoked(ctx: Ctx) {
    let s = ctx.store();
    assert!(s.bootstrap_key(&key("k1", Role::Admin), "s1").await.unwrap());
    assert!(!s.bootstrap_key(&key("k2", Role::Admin), "s2").await.unwrap(), "only on an empty store");
    s.create_key(&key("k3", Role::Reader), "s3").await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 2);
    assert_eq!(s.find_key("s1").await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(s.find_key("s3").await.unwrap().unwrap().id, "k3");
    assert_eq!(s.find_key("s2").await.unwrap(), None);
    assert_eq!(s.revoke_key("k3", "2026-01-02T00:00:00Z").await.unwrap(), Revoke::Revoked);
    assert_eq!(s.revoke_key("k3", "2026-01-02T00:00:00Z").await.unwrap(), Revoke::NotFound);
    assert_eq!(s.revoke_key("nope", "2026-01-02T00:00:00Z").await.unwrap(), Revoke::NotFound);
    assert_eq!(s.revoke_key("k1", "2026-01-02T00:00:00Z").await.unwrap(), Revoke::LastAdmin);
    assert!(s.find_key("s1").await.unwrap().is_some(), "the last admin key still works");
    assert_eq!(s.find_key("s3").await.unwrap(), None);
    let keys = s.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.revoked_at.is_some()));
}

#[test]
fn the_keyed_hash_is_hmac_sha256_over_the_sha256() {
    assert_eq!(allot_store::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    assert_eq!(
        allot_store::keyed_hash("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// Secrets are stored keyed with a random per-store salt, never as their bare SHA-256: the same
/// secret hashes differently in two stores, and nothing in the key table is a secret's SHA-256.
async fn secrets_are_stored_as_a_keyed_hash(ctx: Ctx) {
    let s = ctx.store();
    s.create_key(&key("k1", Role::Admin), "secret-one").await.unwrap();
    let exported = s.export_keys().await.unwrap();
    assert_eq!(exported[0].1, s.hash_secret("secret-one"));
    assert_ne!(exported[0].1, allot_store::sha256_hex("secret-one"));
    assert_eq!(exported[0].1, allot_store::keyed_hash(&s.key_salt(), &allot_store::sha256_hex("secret-one")));
    assert_eq!(s.key_salt().len(), 64);
    // Another handle reads the same salt; another store has its own.
    assert_eq!(ctx.reopen().await.key_salt(), s.key_salt());
    let dir = tempfile::tempdir().unwrap();
    let other = allot_store::open(&format!("sqlite://{}/o.db", dir.path().display())).await.unwrap();
    assert_ne!(other.key_salt(), s.key_salt());
    assert_ne!(other.hash_secret("secret-one"), s.hash_secret("secret-one"));
    assert!(s.set_key_salt(&other.key_salt()).await.is_err(), "the salt of a store with keys is fixed");
}

/// Revoking the last two admin keys at once, on two handles (as on two nodes), leaves one.
async fn concurrent_revocations_never_leave_no_admin(ctx: Ctx) {
    let (a, b) = (ctx.store(), ctx.reopen().await);
    assert!(a.bootstrap_key(&key("k1", Role::Admin), "s1").await.unwrap());
    for round in 0..10 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        a.create_key(&key(&x, Role::Admin), &format!("sx{round}")).await.unwrap();
        a.create_key(&key(&y, Role::Admin), &format!("sy{round}")).await.unwrap();
        // Leave exactly x and y as live admin keys, then revoke both at once.
        for k in a.list_keys().await.unwrap() {
            if k.revoked_at.is_none() && k.id != x && k.id != y {
                assert_eq!(a.revoke_key(&k.id, "2026-01-02T00:00:00Z").await.unwrap(), Revoke::Revoked);
            }
        }
        let (ra, rb) = tokio::join!(a.revoke_key(&x, "2026-01-03T00:00:00Z"), b.revoke_key(&y, "2026-01-03T00:00:00Z"));
        let mut got = [ra.unwrap(), rb.unwrap()];
        got.sort_by_key(|r| *r == Revoke::LastAdmin);
        assert_eq!(got, [Revoke::Revoked, Revoke::LastAdmin], "round {round}");
        let live = a.list_keys().await.unwrap().into_iter().filter(|k| k.revoked_at.is_none()).count();
        assert_eq!(live, 1, "round {round}");
    }
}

async fn sticky_assignments_keep_the_first_variant(ctx: Ctx) {
    let s = ctx.store();
    let row = |v: &str| ("user".to_string(), "u1".to_string(), "exp".to_string(), v.to_string());
    s.sticky_put(&[row("a")]).await.unwrap();
    s.sticky_put(&[row("b")]).await.unwrap();
    assert_eq!(s.sticky_get("user", "u1", "exp").await.unwrap().as_deref(), Some("a"));
    assert_eq!(s.sticky_get("user", "u2", "exp").await.unwrap(), None);
    assert_eq!(s.sticky_for_unit("user", "u1").await.unwrap(), vec![("exp".to_string(), "a".to_string())]);
}

async fn exposures_are_deduplicated_per_unit_experiment_variant_and_day(ctx: Ctx) {
    let s = ctx.store();
    let x = |unit: &str, variant: &str, day: &str| Exposure {
        unit: unit.into(),
        experiment: "exp".into(),
        variant: variant.into(),
        day: day.into(),
        time: format!("{day}T10:00:00Z"),
        version: 3,
    };
    let batch = [
        x("u1", "a", "2026-01-01"),
        x("u1", "a", "2026-01-01"),
        x("u1", "b", "2026-01-01"),
        x("u1", "a", "2026-01-02"),
    ];
    assert_eq!(s.record_exposures(&batch).await.unwrap(), 3);
    assert_eq!(s.record_exposures(&batch[..1]).await.unwrap(), 0);
    let all = s.exposures(Some("exp"), 0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].1, batch[0]);
    assert!(s.exposures(Some("other"), 0, 100).await.unwrap().is_empty());
    assert_eq!(s.exposures(None, all[0].0, 100).await.unwrap().len(), 2);
}

/// PostgreSQL announces each commit (LISTEN/NOTIFY) to every handle; SQLite cannot (nodes poll).
async fn commits_are_announced_where_the_backend_can(ctx: Ctx) {
    let listener = ctx.store();
    let Some(mut rx) = listener.changes() else {
        assert!(matches!(ctx, Ctx::Sqlite { .. }));
        return;
    };
    assert_eq!(rx.recv().await, Some(0), "listening");
    let other = ctx.reopen().await;
    other.commit(0, &state(1), &entry("ann")).await.unwrap();
    assert_eq!(rx.recv().await, Some(1));
    listener.commit(1, &state(3), &entry("bob")).await.unwrap();
    assert_eq!(rx.recv().await, Some(3));
}

/// The SQLite URLs a user would type open (and create) the file, readable by its owner only; a
/// missing directory is an error naming it.
#[tokio::test]
async fn sqlite_urls_as_typed_create_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for (url, file) in [
        (format!("sqlite://{d}/a.db"), "a.db"),
        (format!("sqlite:{d}/b.db"), "b.db"),
        (format!("sqlite://{d}/c.db?mode=rwc"), "c.db"),
    ] {
        assert!(url.starts_with("sqlite:///") || url.starts_with("sqlite:/"), "{url}");
        let s = allot_store::open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        s.create_key(&key("k", Role::Admin), "secret").await.unwrap();
        let path = dir.path().join(file);
        assert!(path.exists(), "{url}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{url}: mode {mode:o}");
        }
    }
    let e = allot_store::open(&format!("sqlite://{d}/missing/x.db")).await.err().unwrap().to_string();
    assert!(e.contains(&format!("{d}/missing")) && e.contains("does not exist"), "{e}");
    // mode=ro on a missing file does not create it.
    assert!(allot_store::open(&format!("sqlite://{d}/ro.db?mode=ro")).await.is_err());
    assert!(!dir.path().join("ro.db").exists());
}

/// A store made by the first schema kept bare SHA-256 hashes: opening it with this version
/// converts them, and the same secrets keep working.
#[tokio::test]
async fn keys_stored_as_bare_sha256_keep_working_after_the_migration() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        // The first schema, as an older allot left it, with one live and one revoked key.
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_init.sql")).execute(&mut c).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL); \
             INSERT INTO schema_migrations VALUES (1, 'init');",
        )
        .execute(&mut c)
        .await
        .unwrap();
        for (id, secret, revoked) in
            [("k1", "old-secret-1", None), ("k2", "old-secret-2", Some("2026-01-02T00:00:00Z"))]
        {
            sqlx::query("INSERT INTO api_keys (id, name, role, secret_sha256, created_at, revoked_at) VALUES (?, ?, 'admin', ?, '2026-01-01T00:00:00Z', ?)")
                .bind(id)
                .bind(id)
                .bind(allot_store::sha256_hex(secret))
                .bind(revoked)
                .execute(&mut c)
                .await
                .unwrap();
        }
        c.close().await.unwrap();
    }
    let s = allot_store::open(&url).await.unwrap();
    assert_eq!(s.find_key("old-secret-1").await.unwrap().unwrap().id, "k1");
    assert_eq!(s.find_key("old-secret-2").await.unwrap(), None, "revoked stays revoked");
    for (_, hash) in s.export_keys().await.unwrap() {
        assert_ne!(hash, allot_store::sha256_hex("old-secret-1"));
        assert_ne!(hash, allot_store::sha256_hex("old-secret-2"));
    }
    drop(s);
    // Opening again converts nothing twice.
    let s = allot_store::open(&url).await.unwrap();
    assert_eq!(s.find_key("old-secret-1").await.unwrap().unwrap().id, "k1");
}

/// Console sessions: found by the hash of their token until their absolute expiry, on another
/// handle too (another node, a restart); sign-out deletes one; revoking the key deletes all of
/// its sessions; an expired one is gone for good once the next session is created.
async fn sessions_are_found_until_they_expire_and_end_with_their_key(ctx: Ctx) {
    let s = ctx.store();
    s.create_key(&key("k1", Role::Admin), "s1").await.unwrap();
    s.create_key(&key("k2", Role::Editor), "s2").await.unwrap();
    let session = |hash: &str, key_id: &str, expires_at: i64| Session {
        token_hash: hash.into(),
        key_id: key_id.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        expires_at,
    };
    s.create_session(&session("h1", "k2", 1000), 100).await.unwrap();
    s.create_session(&session("h2", "k2", 1000), 100).await.unwrap();
    s.create_session(&session("h3", "k1", 200), 100).await.unwrap();
    let other = ctx.reopen().await;
    assert_eq!(other.find_session("h1", 999).await.unwrap(), Some(session("h1", "k2", 1000)));
    assert_eq!(other.find_session("h1", 1000).await.unwrap(), None, "expired at its expiry");
    assert_eq!(s.find_session("nope", 100).await.unwrap(), None);
    s.delete_session("h2").await.unwrap();
    assert_eq!(s.find_session("h2", 100).await.unwrap(), None);
    s.delete_session("h2").await.unwrap();
    assert_eq!(s.revoke_key("k2", "2026-01-02T00:00:00Z").await.unwrap(), Revoke::Revoked);
    assert_eq!(other.find_session("h1", 100).await.unwrap(), None, "the revoked key's session is gone");
    // Creating a session deletes the expired ones: h3 is gone even for a `now` before its expiry.
    s.create_session(&session("h4", "k1", 5000), 300).await.unwrap();
    assert_eq!(s.find_session("h3", 150).await.unwrap(), None);
    assert_eq!(s.find_session("h4", 300).await.unwrap(), Some(session("h4", "k1", 5000)));
}
