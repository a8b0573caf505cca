//! What this node knows of the API keys, by the hash of their secret: every live key and every
//! revoked one, as of the last time it read the whole key table ([`KeyCache::replace`], at start
//! and every few seconds), plus the keys it has looked up, created or revoked itself since.
//!
//! Requests are authenticated from here without a database round trip. While the database cannot
//! be reached, the node keeps accepting every key it knew live (used recently or not) and keeps
//! refusing every key it knew revoked, including one revoked on this node a moment ago; a key it
//! has never seen cannot be checked, and gets 503.

use crate::clock::now;
use crate::error::ApiError;
use crate::App;
use allot_store::{KeyInfo, Revoke, Role};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Longest key name, in characters.
pub(crate) const MAX_KEY_NAME_CHARS: usize = 100;

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
    /// `live` by key id (event streams look keys up by id).
    by_id: HashMap<String, Arc<KeyInfo>>,
    revoked: HashSet<String>,
    /// The ids of the revoked keys (the console's sessions name their key by id).
    revoked_ids: HashSet<String>,
}

/// The key cache.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    table: RwLock<Table>,
    /// When this node last authenticated each key (unix seconds, by key id): what the keys page
    /// shows as "last use on this node". Kept in memory only (a write per request to the store
    /// would cost the evaluation path a database round trip).
    used: RwLock<HashMap<String, Arc<AtomicU64>>>,
}

impl KeyCache {
    /// Records that key `id` was used now.
    pub(crate) fn touch(&self, id: &str) {
        let now = crate::clock::now_unix();
        if let Ok(u) = self.used.read() {
            if let Some(t) = u.get(id) {
                t.store(now, Ordering::Relaxed);
                return;
            }
        }
        if let Ok(mut u) = self.used.write() {
            u.entry(id.to_string()).or_default().store(now, Ordering::Relaxed);
        }
    }

    /// When this node last authenticated key `id` (unix seconds), if it has since it started.
    pub(crate) fn last_used(&self, id: &str) -> Option<u64> {
        self.used.read().ok()?.get(id).map(|t| t.load(Ordering::Relaxed))
    }

    pub(crate) fn get(&self, hash: &str) -> Known {
        let Ok(t) = self.table.read() else { return Known::Unknown };
        match t.live.get(hash) {
            Some(k) => Known::Live(k.clone()),
            None if t.revoked.contains(hash) => Known::Revoked,
            None => Known::Unknown,
        }
    }

    /// What the cache says of the key with this id (the console checks its sessions' keys so,
    /// on every request).
    pub(crate) fn by_id(&self, id: &str) -> Known {
        let Ok(t) = self.table.read() else { return Known::Unknown };
        if t.revoked_ids.contains(id) {
            return Known::Revoked;
        }
        match t.by_id.get(id) {
            Some(k) => Known::Live(k.clone()),
            None => Known::Unknown,
        }
    }

    /// Records a live key found in (or written to) the store.
    pub(crate) fn live(&self, hash: String, info: Arc<KeyInfo>) {
        if let Ok(mut t) = self.table.write() {
            if !t.revoked.contains(&hash) {
                t.by_id.insert(info.id.clone(), info.clone());
                t.live.insert(hash, info);
            }
        }
    }

    /// The live key with public id `id`, if this node knows it live.
    pub(crate) fn live_by_id(&self, id: &str) -> Option<Arc<KeyInfo>> {
        match self.by_id(id) {
            Known::Live(k) => Some(k),
            Known::Revoked | Known::Unknown => None,
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
            t.by_id.remove(id);
            t.revoked_ids.insert(id.to_string());
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
                t.revoked_ids.insert(info.id.clone());
            } else if !t.revoked.contains(&hash) {
                live.insert(hash, Arc::new(info));
            }
        }
        t.by_id = live.values().map(|k: &Arc<KeyInfo>| (k.id.clone(), k.clone())).collect();
        t.live = live;
    }
}

/// How the first admin key came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store already had keys: nothing was created.
    Existing,
    /// The store already had keys and `ALLOT_BOOTSTRAP_ADMIN_KEY` is set to something that is not
    /// one of its live keys: it was ignored (worth a warning: whoever set it may think it works).
    Ignored,
    /// `ALLOT_BOOTSTRAP_ADMIN_KEY` became the first admin key.
    FromEnvironment,
    /// A key was generated: print it once, it is not stored in clear.
    Generated(String),
}

/// Fewest characters of a first admin key given in `ALLOT_BOOTSTRAP_ADMIN_KEY` (generated keys
/// have 70).
pub const MIN_BOOTSTRAP_KEY_CHARS: usize = 32;

/// A new random secret: `allot_` and 64 hex digits.
pub(crate) fn new_secret() -> Result<String, ApiError> {
    Ok(format!("allot_{}", random_hex(32)?))
}

fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| ApiError::Internal(format!("random: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new key id: `k_` and 16 hex digits.
pub(crate) fn new_key_id() -> Result<String, ApiError> {
    Ok(format!("k_{}", random_hex(8)?))
}

impl App {
    /// On an empty key table: makes `env_key` (or a generated key) the first admin key. A key from
    /// the environment must have at least [`MIN_BOOTSTRAP_KEY_CHARS`] characters and no control
    /// characters (422 naming `ALLOT_BOOTSTRAP_ADMIN_KEY` otherwise).
    pub async fn bootstrap(&self, env_key: Option<&str>) -> Result<Bootstrap, ApiError> {
        let env_key = env_key.map(str::trim).filter(|k| !k.is_empty());
        if self.store.key_count().await? > 0 {
            return Ok(match env_key {
                Some(k) if self.store.find_key(k).await?.is_none() => Bootstrap::Ignored,
                _ => Bootstrap::Existing,
            });
        }
        if let Some(k) = env_key {
            let n = k.chars().count();
            if n < MIN_BOOTSTRAP_KEY_CHARS {
                return Err(ApiError::field(
                    "ALLOT_BOOTSTRAP_ADMIN_KEY",
                    format!("the first admin key needs at least {MIN_BOOTSTRAP_KEY_CHARS} characters, this one has {n} (e.g. `openssl rand -hex 32`)"),
                ));
            }
            if k.chars().any(char::is_control) {
                return Err(ApiError::field("ALLOT_BOOTSTRAP_ADMIN_KEY", "a key cannot contain control characters"));
            }
        }
        let (secret, outcome) = match env_key {
            Some(k) => (k.to_string(), Bootstrap::FromEnvironment),
            None => {
                let s = new_secret()?;
                (s.clone(), Bootstrap::Generated(s))
            }
        };
        let info = KeyInfo {
            id: new_key_id()?,
            name: "bootstrap-admin".into(),
            role: Role::Admin,
            created_at: now(),
            revoked_at: None,
        };
        if self.store.bootstrap_key(&info, &secret).await? {
            Ok(outcome)
        } else {
            Ok(Bootstrap::Existing)
        }
    }

    /// The live key with this secret: from what this node knows of the key table (module `keys`),
    /// else from the store. `None` for a key unknown or revoked; 503 `STORE_UNAVAILABLE` for a
    /// key this node has never seen while the database cannot be reached.
    pub async fn key(&self, secret: &str) -> Result<Option<Arc<KeyInfo>>, ApiError> {
        let hash = self.store.hash_secret(secret);
        match self.keys.get(&hash) {
            Known::Live(k) => {
                self.keys.touch(&k.id);
                return Ok(Some(k));
            }
            Known::Revoked => return Ok(None),
            Known::Unknown => {}
        }
        let found = self.store.find_key(secret).await;
        self.observe(&found);
        let found = found?.map(Arc::new);
        if let Some(k) = &found {
            self.keys.touch(&k.id);
            self.keys.live(hash, k.clone());
        }
        Ok(found)
    }

    /// Reads the whole key table again, so that keys created or revoked on other nodes are known
    /// here (periodically, from [`App::spawn_refresh`]). While the database cannot be reached,
    /// what was known stays.
    pub async fn refresh_keys(&self) -> Result<(), ApiError> {
        let all = self.store.export_keys().await;
        self.observe(&all);
        self.keys.replace(all?);
        Ok(())
    }

    /// The live key with this id, from what this node knows of the key table; a key it has not
    /// seen (created on another node since the last read) makes it read the table again.
    /// `None` for a key revoked or unknown.
    pub(crate) async fn key_by_id(&self, id: &str) -> Result<Option<Arc<KeyInfo>>, ApiError> {
        match self.keys.by_id(id) {
            Known::Live(k) => {
                self.keys.touch(id);
                return Ok(Some(k));
            }
            Known::Revoked => return Ok(None),
            Known::Unknown => {}
        }
        self.refresh_keys().await?;
        Ok(match self.keys.by_id(id) {
            Known::Live(k) => {
                self.keys.touch(id);
                Some(k)
            }
            Known::Revoked | Known::Unknown => None,
        })
    }

    /// Creates a key with `name` and `role` (as `POST /api/v1/keys` and the console's keys page
    /// do): its public information and its secret, shown once.
    pub(crate) async fn create_key(&self, name: &str, role: Role) -> Result<(KeyInfo, String), ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(ApiError::field("name", format!("a name of 1 to {MAX_KEY_NAME_CHARS} characters is required")));
        }
        if name.chars().any(char::is_control) {
            // The name is the actor of audit entries and log lines: no newlines, no escapes.
            return Err(ApiError::field("name", "a name cannot contain control characters (newlines, tabs, escapes)"));
        }
        let secret = new_secret()?;
        let info = KeyInfo { id: new_key_id()?, name: name.into(), role, created_at: now(), revoked_at: None };
        self.store.create_key(&info, &secret).await?;
        self.key_created(&secret, info.clone());
        tracing::info!(key = %info.id, role = info.role.as_str(), "key created");
        Ok((info, secret))
    }

    /// Revokes key `id` (the last live admin key cannot be revoked): refused from now on, and its
    /// console sessions end (the store deletes them; this node refuses them at once).
    pub(crate) async fn revoke_key(&self, id: &str) -> Result<(), ApiError> {
        match self.store.revoke_key(id, &now()).await? {
            Revoke::Revoked => {}
            Revoke::NotFound => {
                return Err(ApiError::NotFound(format!("key {id} does not exist or is already revoked")))
            }
            Revoke::LastAdmin => {
                return Err(ApiError::field(
                    "id",
                    "the last live admin key cannot be revoked; create another admin key first",
                ))
            }
        }
        self.key_revoked(id);
        tracing::info!(key = %id, "key revoked");
        Ok(())
    }

    /// Records a key created on this node: known live from now on, also while the database cannot
    /// be reached.
    pub(crate) fn key_created(&self, secret: &str, info: KeyInfo) {
        self.keys.live(self.store.hash_secret(secret), Arc::new(info));
    }

    /// Records a revocation made on this node: the key is refused from now on, also while the
    /// database cannot be reached.
    pub(crate) fn key_revoked(&self, id: &str) {
        self.keys.revoked(id);
    }
}
