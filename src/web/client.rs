//! Outgoing HTTP (JWKS, discovery, introspection, SOAP): one way to build a client and one way
//! to read a bounded body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// A client for calls to a service Portvakt trusts by configuration: no redirects (a moved
/// JWKS is a configuration error, not something to follow), bounded connect time, pooled.
pub fn build(connect_timeout: Duration, user_agent: &str) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(user_agent)
        .build()
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the response failed")]
    Read(#[from] reqwest::Error),
}

/// Read a response body, refusing more than `max` bytes without buffering the excess.
pub async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// reqwest's Display hides the cause ("error sending request"); operators need the cause.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
