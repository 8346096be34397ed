//! The issuer's state behind one storage trait: single-use items (codes, PAR requests, assertion
//! ids), sessions, consents, grants and tokens, all with TTLs, and the authentication history.
//! The default is in memory; a shared store (Redis, SQL) implements the same trait.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::token::Acr;

/// Each kind of state has its own key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// A login or consent page in progress.
    Interaction,
    AuthorizationCode,
    PushedRequest,
    /// `jti`s (or hashes) of JWT grants and client assertions already used.
    AssertionId,
    /// DPoP proofs already used at `/token`: apart from assertion ids, so that proofs anyone can
    /// make (before any client is authenticated) cannot fill the room grants need.
    DpopProof,
    Session,
    Consent,
    Grant,
    RefreshToken,
    AccessToken,
}

impl Space {
    /// What each kind of state is called in messages ("… login page entries …").
    pub fn name(self) -> &'static str {
        match self {
            Space::Interaction => "login page",
            Space::AuthorizationCode => "authorization code",
            Space::PushedRequest => "pushed request",
            Space::AssertionId => "used assertion id",
            Space::DpopProof => "used DPoP proof",
            Space::Session => "session",
            Space::Consent => "consent",
            Space::Grant => "grant",
            Space::RefreshToken => "refresh token",
            Space::AccessToken => "access token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, too slow, or refusing: the request fails closed, to be tried again later.
    #[error("the state store is unavailable: {reason}")]
    Unavailable { reason: String, retry_after: u64 },
    #[error("a stored {what} cannot be read: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The bound of one kind of state is reached: new entries are refused until old ones expire.
    #[error("the issuer holds as many {space} entries as it is configured to; try again in {retry_after} s")]
    Full { space: &'static str, retry_after: u64 },
}

/// One successful login, as the IdP recorded it; authlevel reads these.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginRecord {
    pub pid: String,
    pub acr: Acr,
    pub method: String,
    /// Seconds since the epoch.
    pub time: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store `value` under `key` for `ttl`, replacing what was there. A store that is full for
    /// `space` answers [`StoreError::Full`]; it never makes room by forgetting other entries.
    async fn put(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;
    /// Store only when the key is absent: `false` means it was already there (a replay). Full
    /// means [`StoreError::Full`] (fail closed), never an old key forgotten.
    async fn insert_new(&self, space: Space, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError>;
    async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Remove and return, atomically: what single-use means.
    async fn take(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError>;
    async fn record_login(&self, record: LoginRecord) -> Result<(), StoreError>;
    /// The logins of `pid`, oldest first.
    async fn logins(&self, pid: &str) -> Result<Vec<LoginRecord>, StoreError>;
    /// Why the store cannot serve now, for `/readyz`; `None` when it can.
    fn unready(&self) -> Option<String> {
        None
    }
    /// Check the store now (a shared store is asked for an answer), updating `unready`.
    async fn check(&self) {}
}

/// Keeps a shared store's `unready` current while nothing else uses it.
pub struct StoreWatch(pub std::sync::Arc<dyn Store>);

#[async_trait]
impl pingora::services::background::BackgroundService for StoreWatch {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            self.0.check().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Typed access on top of a [`Store`]: values are JSON.
#[derive(Clone)]
pub struct Typed {
    store: std::sync::Arc<dyn Store>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(space: Space, bytes: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    bytes
        .map(|b| {
            serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt { what: space.name(), reason: e.to_string() })
        })
        .transpose()
}

impl Typed {
    pub fn new(store: std::sync::Arc<dyn Store>) -> Typed {
        Typed { store }
    }

    pub fn raw(&self) -> &dyn Store {
        &*self.store
    }

    pub async fn put<T: Serialize>(&self, space: Space, key: &str, value: &T, ttl: Duration) -> Result<(), StoreError> {
        self.store.put(space, key, encode(value), ttl).await
    }

    pub async fn insert_new<T: Serialize>(
        &self,
        space: Space,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.store.insert_new(space, key, encode(value), ttl).await
    }

    pub async fn get<T: DeserializeOwned>(&self, space: Space, key: &str) -> Result<Option<T>, StoreError> {
        decode(space, self.store.get(space, key).await?)
    }

    pub async fn take<T: DeserializeOwned>(&self, space: Space, key: &str) -> Result<Option<T>, StoreError> {
        decode(space, self.store.take(space, key).await?)
    }

    pub async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        self.store.delete(space, key).await
    }
}
