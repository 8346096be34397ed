//! Answers the gateway writes itself: RFC 6750 errors (with JSON bodies) and handler results.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::token::{Acr, Reason, TokenError};
use crate::web::bearer::challenge;

/// A finished answer: status, headers and a body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Answer {
    pub fn json(status: u16, body: &serde_json::Value) -> Answer {
        Answer { status, headers: Vec::new(), content_type: "application/json", body: Bytes::from(body.to_string()) }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    /// An OAuth-style error body: `{"error": …, "error_description": …}`.
    pub fn error(status: u16, error: &str, description: &str) -> Answer {
        Answer::json(status, &json!({"error": error, "error_description": description}))
    }

    /// 401 `invalid_token` (missing, malformed, expired, untrusted…).
    pub fn invalid_token(description: &str) -> Answer {
        Answer::error(401, "invalid_token", description)
            .with_header("www-authenticate", challenge("invalid_token", description, &[]))
    }

    /// 400 `invalid_request` (two Authorization headers and the like).
    pub fn invalid_request(description: &str) -> Answer {
        Answer::error(400, "invalid_request", description)
            .with_header("www-authenticate", challenge("invalid_request", description, &[]))
    }

    /// 403 `insufficient_scope` naming the scopes that would do.
    pub fn insufficient_scope(scope: &str, description: &str) -> Answer {
        let mut answer = Answer::json(
            403,
            &json!({"error": "insufficient_scope", "error_description": description, "scope": scope}),
        );
        answer.headers.push(("www-authenticate", challenge("insufficient_scope", description, &[("scope", scope)])));
        answer
    }

    /// 401 `insufficient_user_authentication` (RFC 9470): log in again at a higher level.
    pub fn step_up(required: Acr, description: &str) -> Answer {
        let mut answer = Answer::json(
            401,
            &json!({"error": "insufficient_user_authentication", "error_description": description, "acr_values": required.name()}),
        );
        answer.headers.push((
            "www-authenticate",
            challenge("insufficient_user_authentication", description, &[("acr_values", required.name())]),
        ));
        answer
    }

    /// 503 with `Retry-After`: the token's issuer cannot be checked right now.
    pub fn issuer_unavailable(description: &str, retry_after: u64) -> Answer {
        Answer::error(503, "temporarily_unavailable", description).with_header("retry-after", retry_after.to_string())
    }

    /// 502, or 504 when the upstream was too slow: it could not be reached or answered badly.
    pub fn upstream_failed(error: &pingora::Error) -> Answer {
        use pingora::ErrorType::{ConnectTimedout, ReadTimedout, WriteTimedout};
        match error.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => {
                Answer::error(504, "upstream_timeout", "the upstream did not answer in time")
            }
            _ => Answer::error(502, "bad_gateway", "the upstream could not be reached or answered badly"),
        }
    }

    /// The answer for a refused token.
    pub fn for_token_error(error: &TokenError, retry_after: u64) -> Answer {
        match error.reason {
            Reason::IssuerUnavailable => Answer::issuer_unavailable(&error.detail, retry_after),
            Reason::TooManyIntrospections => {
                Answer::error(429, "rate_limited", &error.detail).with_header("retry-after", "1")
            }
            _ => Answer::invalid_token(&error.detail),
        }
    }
}

/// Write an answer to the downstream, keeping the connection reusable.
pub async fn send(session: &mut ServerSession, answer: &Answer, request_id: &str) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(answer.status, Some(answer.headers.len() + 4))?;
    header.insert_header("content-type", answer.content_type)?;
    header.insert_header("content-length", answer.body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("x-request-id", request_id)?;
    for (name, value) in &answer.headers {
        header.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(header)).await?;
    session.write_response_body(answer.body.clone(), true).await?;
    Ok(())
}
