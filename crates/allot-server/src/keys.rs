//! What this node knows of the API keys, by the hash of their secret: every live key and every
//! revoked one, as of the last time it read the whole key table ([`KeyCache::replace`], at start
//! and every few seconds), plus the keys it has looked up, created or revoked itself since.
//!
//! Requests are authenticated from here without a database round trip. While the database cannot
//! be reached, the node keeps accepting every key it knew live (used recently or not) and keeps
//! refusing every key it knew revoked, including one revoked on this node a moment ago; a key it
//! has never seen cannot be checked, and gets 503.

use allot_store::KeyInfo;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// What the cache says of a secret's hash.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// A live key.
    Live(Arc<KeyInfo>),
    /// A revoked key.
    Revoked,
    /// Not seen: ask the store.
    Unknown,
}

#[derive(Debug, Default)]
struct Table {
    live: HashMap<String, Arc<KeyInfo>>,
    revoked: HashSet<String>,
}

/// The key cache.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    table: RwLock<Table>,
}

impl KeyCache {
    pub(crate) fn get(&self, hash: &str) -> Known {
        let Ok(t) = self.table.read() else { return Known::Unknown };
        match t.live.get(hash) {
            Some(k) => Known::Live(k.clone()),
            None if t.revoked.contains(hash) => Known::Revoked,
            None => Known::Unknown,
        }
    }

    /// Records a live key found in (or written to) the store.
    pub(crate) fn live(&self, hash: String, info: Arc<KeyInfo>) {
        if let Ok(mut t) = self.table.write() {
            if !t.revoked.contains(&hash) {
                t.live.insert(hash, info);
            }
        }
    }

    /// Records that the key `id` was revoked (on this node): refused from now on, also while the
    /// database cannot be reached.
    pub(crate) fn revoked(&self, id: &str) {
        if let Ok(mut t) = self.table.write() {
            let hashes: Vec<String> = t.live.iter().filter(|(_, k)| k.id == id).map(|(h, _)| h.clone()).collect();
            for h in hashes {
                t.live.remove(&h);
                t.revoked.insert(h);
            }
        }
    }

    /// Replaces what is known by the whole key table `(key, hash of its secret)`, as read now.
    /// A revocation is forever, so what was known revoked stays so (a table read just before a
    /// revocation on this node cannot bring the key back).
    pub(crate) fn replace(&self, keys: Vec<(KeyInfo, String)>) {
        let Ok(mut t) = self.table.write() else { return };
        let mut live = HashMap::with_capacity(keys.len());
        for (info, hash) in keys {
            if info.revoked_at.is_some() {
                t.revoked.insert(hash);
            } else if !t.revoked.contains(&hash) {
                live.insert(hash, Arc::new(info));
            }
        }
        t.live = live;
    }
}
