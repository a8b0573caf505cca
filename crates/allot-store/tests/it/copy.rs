//! `copy_store` (`allot migrate-store`): a filled SQLite store copied into an empty store of each
//! backend keeps every version, audit entry, key, sticky assignment and exposure.

use crate::backend::Ctx;
use allot_core::state::State;
use allot_store::copy::copy_store;
use allot_store::{AuditEntry, Exposure, KeyInfo, Role, Store, StoreError};
use std::sync::Arc;

on_every_backend!(a_sqlite_store_is_copied_whole, only_into_an_empty_store);

async fn filled_sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("source.db").display());
    let s = allot_store::open(&url).await.unwrap();
    // Versions need not be consecutive: 1, 2, 4, ...
    let mut current = 0;
    for (i, v) in [1u64, 2, 4, 5, 9].into_iter().enumerate() {
        let st = State { version: v, config: Some(serde_json::json!({"v": v})), ..State::default() };
        let e = AuditEntry {
            actor: format!("actor{i}"),
            time: format!("2026-01-0{}T00:00:00Z", i + 1),
            action: "config.put".into(),
            reason: (i % 2 == 1).then(|| format!("why {i}")),
            forced: i % 2 == 1,
            changes: serde_json::json!([{"n": i}]),
            overridden: serde_json::json!([]),
        };
        s.commit(current, &st, &e).await.unwrap();
        current = v;
    }
    let key = |id: &str, role| KeyInfo {
        id: id.into(),
        name: format!("{id}-name"),
        role,
        created_at: format!("2026-01-01T00:00:0{}Z", id.len()),
        revoked_at: None,
    };
    s.create_key(&key("k1", Role::Admin), "secret-1").await.unwrap();
    s.create_key(&key("k22", Role::Reader), "secret-2").await.unwrap();
    s.revoke_key("k22", "2026-02-01T00:00:00Z").await.unwrap();
    let sticky: Vec<_> = (0..2345)
        .map(|i| ("user".to_string(), format!("u{i}"), format!("e{}", i % 3), format!("v{}", i % 2)))
        .collect();
    s.sticky_put(&sticky).await.unwrap();
    let xs: Vec<_> = (0..3001)
        .map(|i| Exposure {
            unit: format!("u{i}"),
            experiment: format!("e{}", i % 4),
            variant: "a".into(),
            day: "2026-01-01".into(),
            time: "2026-01-01T01:00:00Z".into(),
            version: 9,
        })
        .collect();
    s.record_exposures(&xs).await.unwrap();
    (dir, s)
}

async fn everything(
    s: Arc<dyn Store>,
) -> (
    u64,
    Vec<Option<State>>,
    Vec<allot_store::AuditRecord>,
    Vec<(KeyInfo, String)>,
    Vec<allot_store::StickyRow>,
    Vec<Exposure>,
) {
    let mut versions = vec![];
    for v in 0..=10 {
        versions.push(s.load_version(v).await.unwrap());
    }
    let mut sticky = vec![];
    let mut after = None;
    loop {
        let page = s.sticky_page(after.as_ref(), 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        sticky.extend(page);
    }
    sticky.sort();
    let mut xs: Vec<Exposure> = s.exposures(None, 0, 100_000).await.unwrap().into_iter().map(|(_, x)| x).collect();
    xs.sort_by(|a, b| (&a.unit, &a.experiment).cmp(&(&b.unit, &b.experiment)));
    (
        s.current_version().await.unwrap(),
        versions,
        s.audit(None, 1000).await.unwrap(),
        s.export_keys().await.unwrap(),
        sticky,
        xs,
    )
}

async fn a_sqlite_store_is_copied_whole(ctx: Ctx) {
    let (_dir, from) = filled_sqlite().await;
    let to = ctx.store();
    let mut calls = 0;
    let report = copy_store(&*from, &*to, &mut |_| calls += 1).await.unwrap();
    assert!(calls > 0);
    assert_eq!((report.versions, report.keys, report.sticky, report.exposures), (5, 2, 2345, 3001));
    let (a, b) = (everything(from.clone()).await, everything(to.clone()).await);
    assert_eq!(a.0, 9);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1, "every version");
    assert_eq!(a.2, b.2, "the audit log");
    assert_eq!(a.3, b.3, "keys with their hashes and revocations");
    assert_eq!(a.4, b.4, "sticky assignments");
    assert_eq!(a.5, b.5, "exposures");
    assert_eq!(to.find_key("secret-1").await.unwrap().unwrap().id, "k1");
    assert_eq!(to.find_key("secret-2").await.unwrap(), None, "revoked stays revoked");
    // The copy is a live store: the next commit continues from the copied version.
    let next = State { version: 10, ..State::default() };
    let e = a.2[0].entry.clone();
    assert!(matches!(to.commit(5, &next, &e).await, Err(StoreError::Conflict { .. })));
    to.commit(9, &next, &e).await.unwrap();
}

async fn only_into_an_empty_store(ctx: Ctx) {
    let (_dir, from) = filled_sqlite().await;
    let to = ctx.store();
    copy_store(&*from, &*to, &mut |_| {}).await.unwrap();
    let e = copy_store(&*from, &*to, &mut |_| {}).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}
