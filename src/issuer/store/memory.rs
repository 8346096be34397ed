//! The in-memory store: one moka cache per kind of state, each entry with its own TTL, and the
//! login history (per person, expiring with the retention period).
//!
//! Every cache is bounded in entries and in bytes. A full cache refuses new entries
//! ([`StoreError::Full`], answered 503 with `Retry-After`) instead of evicting old ones: eviction
//! would let a used assertion id, or a redeemed code, be forgotten before it expires, and so be
//! accepted again. moka gives the expiry; the bound is an admission check on counters that its
//! eviction listener keeps exact (every entry that leaves, by expiry, removal or replacement,
//! gives back what it took). It lives as long as the process; run one issuer, or a shared store,
//! for several.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::{LoginRecord, Space, Store, StoreError};
use crate::config::StoreSettings;
use crate::token::Acr;
use crate::token::verify::unix_now;

/// What moka and the map spend on an entry besides its key and value, counted in its weight so
/// the byte bound tracks real memory.
const ENTRY_OVERHEAD: u64 = 160;

/// A stored value: how long it lives and what it weighs.
trait Stored: Clone + Send + Sync + 'static {
    fn ttl(&self) -> Duration;
    fn weight(&self) -> u64;
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

impl Stored for Entry {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn weight(&self) -> u64 {
        self.value.len() as u64
    }
}

/// One person's logins, oldest first; it expires with the retention period after the newest.
#[derive(Clone)]
struct History {
    logins: Arc<VecDeque<LoginRecord>>,
    ttl: Duration,
}

/// pid, acr, method and time of one record, with their allocations.
const LOGIN_RECORD_WEIGHT: u64 = 96;

impl Stored for History {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn weight(&self) -> u64 {
        self.logins.iter().map(|l| LOGIN_RECORD_WEIGHT + l.pid.len() as u64 + l.method.len() as u64).sum()
    }
}

struct PerEntryTtl;

impl<V: Stored> Expiry<String, V> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &V, _at: Instant) -> Option<Duration> {
        Some(value.ttl())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &V,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

#[derive(Default)]
struct Usage {
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Usage {
    fn release(&self, weight: u64) {
        self.entries.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(weight, Ordering::AcqRel);
    }
}

fn weight_of<V: Stored>(key: &str, value: &V) -> u64 {
    key.len() as u64 + value.weight() + ENTRY_OVERHEAD
}

/// A moka cache with per-entry TTLs and an admission bound in entries and bytes.
struct Bounded<V: Stored> {
    space: &'static str,
    cache: Cache<String, V>,
    usage: Arc<Usage>,
    max_entries: u64,
    max_bytes: u64,
    retry_after: u64,
    /// When expired entries were last collected because the cache looked full.
    last_sweep: Mutex<Option<Instant>>,
}

impl<V: Stored> Bounded<V> {
    fn new(space: &'static str, max_entries: u64, max_bytes: u64, retry_after: u64) -> Bounded<V> {
        let usage = Arc::new(Usage::default());
        let listener_usage = usage.clone();
        let cache = Cache::builder()
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<String>, value: V, _cause: RemovalCause| {
                listener_usage.release(weight_of(&key, &value));
            })
            .build();
        Bounded { space, cache, usage, max_entries, max_bytes, retry_after, last_sweep: Mutex::new(None) }
    }

    /// Take room for an entry of `weight` that replaces one of `replaces` (its weight), or
    /// refuse. The counters are raised first and lowered again on refusal, so racing inserts
    /// cannot together pass the bound.
    fn try_reserve(&self, weight: u64, replaces: Option<u64>) -> bool {
        let (credit_entries, credit_bytes) = replaces.map_or((0, 0), |w| (1, w));
        let entries = self.usage.entries.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = self.usage.bytes.fetch_add(weight, Ordering::AcqRel) + weight;
        if entries.saturating_sub(credit_entries) > self.max_entries
            || bytes.saturating_sub(credit_bytes) > self.max_bytes
        {
            self.usage.release(weight);
            return false;
        }
        true
    }

    fn reserve(&self, key: &str, value: &V) -> Result<u64, StoreError> {
        let weight = weight_of(key, value);
        let replaces = self.cache.get(key).map(|old| weight_of(key, &old));
        if self.try_reserve(weight, replaces) {
            return Ok(weight);
        }
        // Expired entries give their room back when moka's housekeeping collects them; do that
        // now, at most once a second, and try once more.
        let sweep = match self.last_sweep.lock() {
            Ok(mut last) if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        };
        if sweep {
            self.cache.run_pending_tasks();
            if self.try_reserve(weight, replaces) {
                return Ok(weight);
            }
        }
        Err(StoreError::Full { space: self.space, retry_after: self.retry_after })
    }

    fn put(&self, key: &str, value: V) -> Result<(), StoreError> {
        self.reserve(key, &value)?;
        // A replaced value gives its room back through the eviction listener.
        self.cache.insert(key.to_owned(), value);
        Ok(())
    }

    fn insert_new(&self, key: &str, value: V) -> Result<bool, StoreError> {
        if self.cache.contains_key(key) {
            return Ok(false);
        }
        // Full means refused (fail closed), never "forget an old id to make room".
        let weight = self.reserve(key, &value)?;
        let entry = self.cache.entry(key.to_owned()).or_insert_with(|| value);
        if !entry.is_fresh() {
            // Another request inserted it first: nothing was added for this reservation.
            self.usage.release(weight);
        }
        Ok(entry.is_fresh())
    }
}

const SPACES: [Space; 10] = [
    Space::Interaction,
    Space::AuthorizationCode,
    Space::PushedRequest,
    Space::AssertionId,
    Space::DpopProof,
    Space::Session,
    Space::Consent,
    Space::Grant,
    Space::RefreshToken,
    Space::AccessToken,
];

pub struct MemoryStore {
    spaces: Vec<Bounded<Entry>>,
    logins: Bounded<History>,
    /// Login records are read, changed and written back: one writer at a time.
    login_writer: Mutex<()>,
    retention: Duration,
    max_logins_per_person: usize,
}

impl MemoryStore {
    /// A store with the default bounds.
    pub fn new() -> MemoryStore {
        MemoryStore::with_limits(&StoreSettings::default())
    }

    pub fn with_limits(limits: &StoreSettings) -> MemoryStore {
        let spaces = SPACES
            .iter()
            .map(|space| Bounded::new(space.name(), limits.max_entries, limits.max_bytes, limits.retry_after_seconds))
            .collect();
        MemoryStore {
            spaces,
            logins: Bounded::new(
                "login history",
                limits.login_history_max_persons,
                limits.login_history_max_bytes,
                limits.retry_after_seconds,
            ),
            login_writer: Mutex::new(()),
            retention: Duration::from_secs(limits.login_history_days.saturating_mul(86_400)),
            max_logins_per_person: limits.max_logins_per_person.max(1),
        }
    }

    fn space(&self, space: Space) -> &Bounded<Entry> {
        // SPACES lists every variant, in this order.
        let index = SPACES.iter().position(|s| *s == space).unwrap_or_default();
        &self.spaces[index]
    }

    /// Logins of `history` still inside the retention period at `now`.
    fn retained(&self, history: &VecDeque<LoginRecord>, now: i64) -> VecDeque<LoginRecord> {
        let oldest = now - self.retention.as_secs() as i64;
        history.iter().filter(|l| l.time >= oldest).cloned().collect()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable { reason: "the login history lock is poisoned".into(), retry_after: 1 }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.space(space).put(key, Entry { value: value.into(), ttl })
    }

    async fn insert_new(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        self.space(space).insert_new(key, Entry { value: value.into(), ttl })
    }

    async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.space(space).cache.get(key).map(|e| e.value.to_vec()))
    }

    async fn take(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.space(space).cache.remove(key).map(|e| e.value.to_vec()))
    }

    async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        self.space(space).cache.invalidate(key);
        Ok(())
    }

    async fn record_login(&self, record: LoginRecord) -> Result<(), StoreError> {
        let _writer = self.login_writer.lock().map_err(poisoned)?;
        let now = unix_now();
        let mut logins = self.logins.cache.get(&record.pid).map(|h| self.retained(&h.logins, now)).unwrap_or_default();
        let pid = record.pid.clone();
        logins.push_back(record);
        while logins.len() > self.max_logins_per_person {
            // Drop the oldest, but keep the newest Level4: authlevel asks whether there is one.
            let newest_level4 = logins.iter().rposition(|l| l.acr == Acr::Level4);
            let drop = if newest_level4 == Some(0) { 1 } else { 0 };
            logins.remove(drop);
        }
        let newest = logins.iter().map(|l| l.time).max().unwrap_or(now);
        let left = (newest + self.retention.as_secs() as i64 - now).max(1) as u64;
        self.logins.put(&pid, History { logins: Arc::new(logins), ttl: Duration::from_secs(left) })
    }

    async fn logins(&self, pid: &str) -> Result<Vec<LoginRecord>, StoreError> {
        Ok(self.logins.cache.get(pid).map(|h| self.retained(&h.logins, unix_now()).into()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Acr;

    fn small(max_entries: u64, max_bytes: u64) -> MemoryStore {
        MemoryStore::with_limits(&StoreSettings {
            max_entries,
            max_bytes,
            login_history_max_persons: max_entries,
            login_history_max_bytes: max_bytes,
            max_logins_per_person: 3,
            ..StoreSettings::default()
        })
    }

    fn login(pid: &str, acr: Acr, time: i64) -> LoginRecord {
        LoginRecord { pid: pid.into(), acr, method: "TestID".into(), time }
    }

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
    async fn a_full_space_refuses_new_entries_and_forgets_no_used_assertion_id() {
        let store = small(3, 1 << 20);
        let ttl = Duration::from_secs(60);
        for id in ["a", "b", "c"] {
            assert!(store.insert_new(Space::AssertionId, id, vec![], ttl).await.unwrap());
        }
        let refused = store.insert_new(Space::AssertionId, "d", vec![], ttl).await;
        assert!(
            matches!(refused, Err(StoreError::Full { space: "used assertion id", retry_after: 30 })),
            "{refused:?}"
        );
        // Fail closed: the old ids are all still known, so each is still a replay.
        for id in ["a", "b", "c"] {
            assert!(!store.insert_new(Space::AssertionId, id, vec![], ttl).await.unwrap(), "{id} was forgotten");
        }
        // Other spaces have their own room; replacing and removing keep the count exact.
        store.put(Space::Session, "s", b"1".to_vec(), ttl).await.unwrap();
        for _ in 0..10 {
            store.put(Space::Session, "s", b"2".to_vec(), ttl).await.unwrap();
        }
        store.put(Space::Session, "t", vec![], ttl).await.unwrap();
        store.put(Space::Session, "u", vec![], ttl).await.unwrap();
        assert!(store.put(Space::Session, "v", vec![], ttl).await.is_err());
        store.delete(Space::Session, "u").await.unwrap();
        store.take(Space::Session, "t").await.unwrap();
        store.put(Space::Session, "v", vec![], ttl).await.unwrap();
        store.put(Space::Session, "w", vec![], ttl).await.unwrap();
    }

    #[tokio::test]
    async fn the_byte_bound_holds_and_expired_entries_give_their_room_back() {
        let store = small(1000, 4 * 1024);
        let big = vec![0u8; 1024];
        let short = Duration::from_millis(50);
        let mut stored = 0;
        while store.put(Space::Interaction, &format!("k{stored}"), big.clone(), short).await.is_ok() {
            stored += 1;
            assert!(stored < 10, "the byte bound did not hold");
        }
        assert!(stored >= 2, "{stored}");
        let start = Instant::now();
        loop {
            if store.put(Space::Interaction, "later", big.clone(), short).await.is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "expired entries never gave their room back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_login_history_keeps_order_caps_per_person_and_forgets_old_logins() {
        let store = small(2, 1 << 20);
        let now = unix_now();
        for (time, acr) in [(now - 4, Acr::Level4), (now - 3, Acr::Level3), (now - 2, Acr::Level3)] {
            store.record_login(login("p", acr, time)).await.unwrap();
        }
        let history = store.logins("p").await.unwrap();
        assert_eq!(history.iter().map(|r| r.time).collect::<Vec<_>>(), vec![now - 4, now - 3, now - 2]);
        // Capped at 3 a person; the one Level4 is kept, the oldest Level3 goes.
        store.record_login(login("p", Acr::Level3, now - 1)).await.unwrap();
        let history = store.logins("p").await.unwrap();
        assert_eq!(history.iter().map(|r| r.time).collect::<Vec<_>>(), vec![now - 4, now - 2, now - 1]);
        assert!(store.logins("other").await.unwrap().is_empty());
        // Logins older than the retention period are not kept.
        let old = now - 553 * 86_400;
        store.record_login(login("q", Acr::Level4, old)).await.unwrap();
        store.record_login(login("q", Acr::Level3, now)).await.unwrap();
        assert_eq!(store.logins("q").await.unwrap().iter().map(|r| r.time).collect::<Vec<_>>(), vec![now]);
        // Two people fill this history: a third is refused, not stored by forgetting another.
        assert!(matches!(store.record_login(login("r", Acr::Level3, now)).await, Err(StoreError::Full { .. })));
        assert_eq!(store.logins("p").await.unwrap().len(), 3);
    }
}
