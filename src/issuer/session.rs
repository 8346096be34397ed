//! The SSO session cookie and the interaction cookie that binds a login page to its browser.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

use super::model::Session;
use super::store::Space;
use super::{Issuer, random_token, storage_key};
use crate::token::verify::unix_now;

pub const SSO_COOKIE: &str = "portvakt_sso";
pub const INTERACTION_COOKIE: &str = "portvakt_interaction";

/// A cookie value sent by the browser.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| Cookie::parse(c.trim().to_owned()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// `HttpOnly`, `SameSite=Lax` (the authorization request is a cross-site top-level GET), and
/// `Secure` over https. No `Max-Age`: the server decides when a session ends.
pub fn set_cookie(issuer: &Issuer, name: &str, value: &str) -> HeaderValue {
    let cookie = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(issuer.secure_cookies)
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn clear_cookie(issuer: &Issuer, name: &str) -> HeaderValue {
    let cookie = Cookie::build((name.to_owned(), String::new()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(issuer.secure_cookies)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// How long a session may still live: the idle limit, never past the absolute one.
fn remaining(issuer: &Issuer, session: &Session, now: i64) -> Option<Duration> {
    let left_total = session.created + issuer.lifetimes.sso_max_seconds as i64 - now;
    let ttl = left_total.min(issuer.lifetimes.sso_idle_seconds as i64);
    (ttl > 0).then(|| Duration::from_secs(ttl as u64))
}

/// The live session of the browser sending `headers`, with its storage key.
pub async fn current(
    issuer: &Issuer,
    headers: &HeaderMap,
) -> Result<Option<(String, Session)>, super::store::StoreError> {
    let Some(secret) = read_cookie(headers, SSO_COOKIE) else { return Ok(None) };
    let key = storage_key(&secret);
    let session: Option<Session> = issuer.state.get(Space::Session, &key).await?;
    Ok(session.and_then(|s| remaining(issuer, &s, unix_now()).map(|_| (key, s))))
}

/// Store (or touch) a session: every use extends it by the idle time, up to the maximum age.
pub async fn save(issuer: &Issuer, key: &str, session: &Session) -> Result<(), super::store::StoreError> {
    let Some(ttl) = remaining(issuer, session, unix_now()) else {
        return end(issuer, key, session).await;
    };
    // Sent together: a shared store gets both in one round trip.
    let sid = sid_key(&session.sid);
    let key_value = key.to_owned();
    tokio::try_join!(
        issuer.state.put(Space::Session, key, session, ttl),
        issuer.state.put(Space::Session, &sid, &key_value, ttl),
    )
    .map(|_| ())
}

/// A new session: a new secret (never reuse one across logins) and a new public `sid`.
pub fn new_secret() -> (String, String) {
    let secret = random_token();
    let key = storage_key(&secret);
    (secret, key)
}

pub async fn end(issuer: &Issuer, key: &str, session: &Session) -> Result<(), super::store::StoreError> {
    // Grants first: a failure half way leaves the session to find them by, not stranded grants.
    for grant in &session.grants {
        issuer.state.delete(Space::Grant, grant).await?;
    }
    issuer.state.delete(Space::Session, key).await?;
    issuer.state.delete(Space::Session, &sid_key(&session.sid)).await
}

/// Find a session by its public `sid` (logout with an `id_token_hint` from another browser).
pub async fn by_sid(issuer: &Issuer, sid: &str) -> Result<Option<(String, Session)>, super::store::StoreError> {
    let Some(key) = issuer.state.get::<String>(Space::Session, &sid_key(sid)).await? else { return Ok(None) };
    Ok(issuer.state.get::<Session>(Space::Session, &key).await?.map(|s| (key, s)))
}

fn sid_key(sid: &str) -> String {
    format!("sid:{sid}")
}
