//! Copying a whole store into an empty one (`allot migrate-store`), through the [`Store`] trait:
//! so any backend can be copied to any other.
//!
//! What is copied, in this order: every configuration version with its audit entry (replayed
//! oldest first through [`Store::commit`], so the target checks the chain of versions as it would
//! for live writes), API keys (their secrets' keyed hashes, with the source's salt, and revocations), sticky assignments, and
//! exposures (oldest first; the target numbers them afresh, so exposure cursors start over).
//! The target must be empty: no version and no key.

use crate::{Result, Store, StoreError};
use std::future::Future;
use std::pin::Pin;

/// Rows read and written per batch.
const PAGE: u32 = 1000;

/// What was copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Configuration versions (each with its audit entry).
    pub versions: u64,
    /// API keys.
    pub keys: u64,
    /// Sticky assignments.
    pub sticky: u64,
    /// Exposures.
    pub exposures: u64,
}

/// Copies everything in `from` into `to`, which must be empty. `progress` is called with a
/// short description after each batch.
pub fn copy_store<'a>(
    from: &'a dyn Store,
    to: &'a dyn Store,
    progress: &'a mut (dyn FnMut(&CopyReport) + Send),
) -> Pin<Box<dyn Future<Output = Result<CopyReport>> + Send + 'a>> {
    Box::pin(copy(from, to, progress))
}

async fn copy(from: &dyn Store, to: &dyn Store, progress: &mut (dyn FnMut(&CopyReport) + Send)) -> Result<CopyReport> {
    let (target_version, target_keys) = (to.current_version().await?, to.key_count().await?);
    if target_version != 0 || target_keys != 0 {
        return Err(StoreError::Invalid(format!(
            "the target store is not empty (version {target_version}, {target_keys} keys)"
        )));
    }
    let mut report = CopyReport::default();

    // Audit records come newest first: collect them all (one per version), then replay.
    let mut records = Vec::new();
    let mut before = None;
    loop {
        let page = from.audit(before, PAGE).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.after_version);
        records.extend(page);
    }
    records.reverse();
    for r in &records {
        let state = from.load_version(r.after_version).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("the audit log names version {} but it is not stored", r.after_version))
        })?;
        to.commit(r.before_version, &state, &r.entry).await?;
        report.versions += 1;
        if report.versions % u64::from(PAGE) == 0 {
            progress(&report);
        }
    }
    let (source_version, copied_version) = (from.current_version().await?, to.current_version().await?);
    if source_version != copied_version {
        return Err(StoreError::Corrupt(format!(
            "the source is at version {source_version} but its audit log leads to version {copied_version}"
        )));
    }
    progress(&report);

    // The keys' hashes are keyed with the source's salt: the target adopts it.
    to.set_key_salt(&from.key_salt()).await?;
    for (info, hash) in from.export_keys().await? {
        to.import_key(&info, &hash).await?;
        report.keys += 1;
    }
    progress(&report);

    let mut after = None;
    loop {
        let page = from.sticky_page(after.as_ref(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        to.sticky_put(&page).await?;
        report.sticky += page.len() as u64;
        after = page.last().cloned();
        progress(&report);
    }

    let mut cursor = 0;
    loop {
        let page = from.exposures(None, cursor, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        cursor = *last;
        let batch: Vec<_> = page.into_iter().map(|(_, x)| x).collect();
        report.exposures += batch.len() as u64;
        to.record_exposures(&batch).await?;
        progress(&report);
    }
    Ok(report)
}
