//! Answers the gateway writes itself, as they go on the wire: the errors of `GatewayError` and
//! the handlers' results.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde_json::json;

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

    /// An OAuth-style error body: `{"error": …, "error_description": …}`. Built by
    /// `GatewayError::answer` alone.
    pub(super) fn error(status: u16, error: &str, description: &str) -> Answer {
        Answer::json(status, &json!({"error": error, "error_description": description}))
    }

    /// A JSON body the gateway made (a KRR answer).
    pub fn json_bytes(status: u16, body: Bytes) -> Answer {
        Answer { status, headers: Vec::new(), content_type: "application/json", body }
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
