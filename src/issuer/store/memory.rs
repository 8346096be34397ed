//! The in-memory store: moka caches with a TTL per entry, and the login history in a map.
//! It lives as long as the process; run one issuer, or a shared store, for several.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;

use super::{LoginRecord, Space, Store, StoreError};

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<(Space, String), Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &(Space, String), value: &Entry, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &(Space, String),
        value: &Entry,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Logins kept per citizen: authlevel looks back 18 months by default, and the newest logins
/// are the ones that matter.
const MAX_LOGINS_PER_PERSON: usize = 500;

pub struct MemoryStore {
    // Not size-bounded on purpose: evicting a used `jti` under pressure would allow a replay.
    // Every entry has a TTL, so memory is bounded by request rate × lifetime.
    entries: Cache<(Space, String), Entry>,
    logins: Mutex<HashMap<String, VecDeque<LoginRecord>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore { entries: Cache::builder().expire_after(PerEntryTtl).build(), logins: Mutex::new(HashMap::new()) }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("the login history lock is poisoned".into())
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.entries.insert((space, key.to_owned()), Entry { value: value.into(), ttl });
        Ok(())
    }

    async fn insert_new(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let entry = self.entries.entry((space, key.to_owned())).or_insert_with(|| Entry { value: value.into(), ttl });
        Ok(entry.is_fresh())
    }

    async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(&(space, key.to_owned())).map(|e| e.value.to_vec()))
    }

    async fn take(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.remove(&(space, key.to_owned())).map(|e| e.value.to_vec()))
    }

    async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        self.entries.invalidate(&(space, key.to_owned()));
        Ok(())
    }

    async fn record_login(&self, record: LoginRecord) -> Result<(), StoreError> {
        let mut logins = self.logins.lock().map_err(poisoned)?;
        let history = logins.entry(record.pid.clone()).or_default();
        if history.len() == MAX_LOGINS_PER_PERSON {
            history.pop_front();
        }
        history.push_back(record);
        Ok(())
    }

    async fn logins(&self, pid: &str) -> Result<Vec<LoginRecord>, StoreError> {
        let logins = self.logins.lock().map_err(poisoned)?;
        Ok(logins.get(pid).map(|h| h.iter().cloned().collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Acr;

    #[tokio::test]
    async fn single_use_and_replay_semantics() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        store.put(Space::AuthorizationCode, "c", b"v".to_vec(), ttl).await.unwrap();
        assert_eq!(store.take(Space::AuthorizationCode, "c").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.take(Space::AuthorizationCode, "c").await.unwrap(), None);
        assert!(store.insert_new(Space::AssertionId, "j", vec![], ttl).await.unwrap());
        assert!(!store.insert_new(Space::AssertionId, "j", vec![], ttl).await.unwrap());
        // Spaces do not share keys.
        assert!(store.insert_new(Space::Session, "j", vec![], ttl).await.unwrap());
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let store = MemoryStore::new();
        store.put(Space::Grant, "g", b"v".to_vec(), Duration::from_millis(1)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.get(Space::Grant, "g").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the entry never expired");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_login_history_keeps_order_per_person() {
        let store = MemoryStore::new();
        for (time, acr) in [(1, Acr::Level3), (2, Acr::Level4)] {
            store.record_login(LoginRecord { pid: "p".into(), acr, method: "TestID".into(), time }).await.unwrap();
        }
        let history = store.logins("p").await.unwrap();
        assert_eq!(history.iter().map(|r| r.time).collect::<Vec<_>>(), vec![1, 2]);
        assert!(store.logins("other").await.unwrap().is_empty());
    }
}
