//! Every refusal and failure the gateway answers itself, in one vocabulary, and the one place
//! (`GatewayError::answer`) where each becomes a status, an RFC 6750 challenge and a JSON body
//! `{"error": …, "error_description": …}`.

use std::borrow::Cow;

use serde_json::json;

use super::respond::Answer;
use super::routes::Denial;
use crate::krr::KrrError;
use crate::krr::client::BackendError;
use crate::oauth::ErrorCode;
use crate::token::{Acr, Reason, TokenError};
use crate::web::bearer::{challenge, challenge_for};

/// How long a client is told to wait after a refusal for its rate.
const RATE_RETRY_AFTER_SECONDS: u64 = 1;
/// How long a client is told to wait when a backend cannot be reached.
const BACKEND_RETRY_AFTER_SECONDS: u64 = 5;
/// `Retry-After` when a lookup cannot be put on the audit trail (a full disk takes an operator).
const AUDIT_RETRY_AFTER: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 400: the request breaks a rule (its path, its head, its body).
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// 400 with a Bearer challenge: the credentials are ambiguous (two Authorization headers).
    #[error("{0}")]
    BadAuthorization(&'static str),
    #[error("no route serves this path")]
    NoRoute,
    /// 405, naming the methods the path takes.
    #[error("this path takes {0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(&'static str),
    /// 408: the head or the body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(&'static str),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// 501 (RFC 9112 §6.1).
    #[error("only the chunked transfer coding is accepted")]
    UnsupportedTransferCoding,
    /// The token: 401 `invalid_token`, or 503 when its issuer cannot be asked, or 429 when the
    /// client makes up too many.
    /// `dpop`: the token came as `Authorization: DPoP`, so the challenge uses that scheme.
    #[error("{error}")]
    Token { error: TokenError, retry_after: u64, dpop: bool },
    /// 401 `invalid_token`: a good token, not meant for this route (issuer, audience).
    #[error("{0}")]
    NotForThisRoute(String),
    /// 401 `invalid_token` with a `DPoP` challenge: the token's binding and how it was sent
    /// disagree (a bound token as Bearer, an unbound one as DPoP), or the route takes bound
    /// tokens only.
    #[error("{0}")]
    SenderConstraint(Cow<'static, str>),
    /// 401 `invalid_dpop_proof`, or `use_dpop_nonce` with a `DPoP-Nonce` (RFC 9449 §7.1, §9).
    #[error("{0}")]
    Dpop(crate::token::dpop::DpopError),
    /// 403 `insufficient_scope`, naming the scopes that would do.
    #[error("{description}")]
    InsufficientScope { scope: String, description: Cow<'static, str> },
    /// 401 `insufficient_user_authentication` (RFC 9470): log in again at this level.
    #[error("this resource needs a login at {} or higher", .0.name())]
    StepUp(Acr),
    #[error("more than {0} requests per second")]
    RateLimited(isize),
    /// 400 for a KRR lookup naming invalid personidentifikatorer (listed in the body).
    #[error("{description}")]
    InvalidPersonIds { description: String, invalid: Vec<crate::krr::rest::InvalidId> },
    /// 503 `temporarily_unavailable` with `Retry-After`.
    #[error("{description}")]
    Unavailable { description: Cow<'static, str>, retry_after: u64 },
    /// 502: an upstream or backend could not be reached, or answered badly.
    #[error("{0}")]
    BadGateway(Cow<'static, str>),
    /// 504: an upstream or backend did not answer in time.
    #[error("{0}")]
    UpstreamTimeout(Cow<'static, str>),
    /// 500: the gateway's own failure.
    #[error("{0}")]
    Internal(Cow<'static, str>),
}

impl GatewayError {
    pub fn token(error: TokenError, retry_after: u64) -> GatewayError {
        GatewayError::Token { error, retry_after, dpop: false }
    }

    /// As `token`, for a token sent as `Authorization: DPoP` (RFC 9449 §7.1: a DPoP challenge).
    pub fn dpop_token(error: TokenError, retry_after: u64) -> GatewayError {
        GatewayError::Token { error, retry_after, dpop: true }
    }

    /// A request body that could not be read: 408 when it was too slow, else 400.
    pub fn unreadable_body(error: &pingora::Error) -> GatewayError {
        match error.etype() {
            pingora::ErrorType::ReadTimedout => GatewayError::RequestTimeout("the request body did not arrive in time"),
            other => GatewayError::BadRequest(format!("the request body could not be read: {}", other.as_str()).into()),
        }
    }

    /// 502, or 504 when the upstream was too slow.
    pub fn upstream(error: &pingora::Error) -> GatewayError {
        use pingora::ErrorType::{ConnectTimedout, ReadTimedout, WriteTimedout};
        match error.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => {
                GatewayError::UpstreamTimeout("the upstream did not answer in time".into())
            }
            _ => GatewayError::BadGateway("the upstream could not be reached or answered badly".into()),
        }
    }

    /// The answer on the wire, with no protected-resource metadata to name.
    pub fn answer(&self) -> Answer {
        self.answer_with(None)
    }

    /// The answer on the wire: the one mapping of the vocabulary to statuses and codes. Every
    /// challenge names the route's RFC 9728 document (`resource_metadata`) when there is one.
    pub fn answer_with(&self, resource_metadata: Option<&str>) -> Answer {
        let description = self.to_string();
        let oauth = |status, code: ErrorCode| Answer::error(status, code.as_str(), &description);
        let challenge = |code: &str, extra: &[(&str, &str)]| {
            let mut extra = extra.to_vec();
            extra.extend(resource_metadata.map(|url| ("resource_metadata", url)));
            challenge(code, &description, &extra)
        };
        let dpop_challenge = |code: &str| {
            let algs = crate::token::dpop::alg_names().join(" ");
            let mut extra = vec![("algs", algs.as_str())];
            extra.extend(resource_metadata.map(|url| ("resource_metadata", url)));
            challenge_for("DPoP", code, &description, &extra)
        };
        let with_challenge = |status, code: ErrorCode, extra: &[(&str, &str)]| {
            Answer::error(status, code.as_str(), &description)
                .with_header("www-authenticate", challenge(code.as_str(), extra))
        };
        match self {
            GatewayError::BadRequest(_) => oauth(400, ErrorCode::InvalidRequest),
            GatewayError::BadAuthorization(_) => with_challenge(400, ErrorCode::InvalidRequest, &[]),
            GatewayError::NoRoute => Answer::error(404, "not_found", &description),
            GatewayError::MethodNotAllowed(allow) => {
                Answer::error(405, "method_not_allowed", &description).with_header("allow", allow.clone())
            }
            GatewayError::NotAcceptable(_) => Answer::error(406, "not_acceptable", &description),
            GatewayError::RequestTimeout(_) => Answer::error(408, "request_timeout", &description),
            GatewayError::BodyTooLarge(_) => oauth(413, ErrorCode::InvalidRequest),
            GatewayError::UnsupportedTransferCoding => Answer::error(501, "not_implemented", &description),
            GatewayError::Token { error, retry_after, dpop } => match error.reason {
                Reason::IssuerUnavailable => {
                    oauth(503, ErrorCode::TemporarilyUnavailable).with_header("retry-after", retry_after.to_string())
                }
                Reason::TooManyIntrospections => Answer::error(429, "rate_limited", &description)
                    .with_header("retry-after", RATE_RETRY_AFTER_SECONDS.to_string()),
                _ if *dpop => Answer::error(401, ErrorCode::InvalidToken.as_str(), &description)
                    .with_header("www-authenticate", dpop_challenge(ErrorCode::InvalidToken.as_str())),
                _ => with_challenge(401, ErrorCode::InvalidToken, &[]),
            },
            GatewayError::NotForThisRoute(_) => with_challenge(401, ErrorCode::InvalidToken, &[]),
            GatewayError::SenderConstraint(_) => Answer::error(401, ErrorCode::InvalidToken.as_str(), &description)
                .with_header("www-authenticate", dpop_challenge(ErrorCode::InvalidToken.as_str())),
            GatewayError::Dpop(error) => {
                let answer = Answer::error(401, error.code(), &description)
                    .with_header("www-authenticate", dpop_challenge(error.code()));
                match error.nonce() {
                    Some(nonce) => answer.with_header("dpop-nonce", nonce.to_owned()),
                    None => answer,
                }
            }
            GatewayError::InsufficientScope { scope, .. } => {
                let code = ErrorCode::InsufficientScope;
                let body = json!({"error": code.as_str(), "error_description": description, "scope": scope});
                Answer::json(403, &body).with_header("www-authenticate", challenge(code.as_str(), &[("scope", scope)]))
            }
            GatewayError::StepUp(acr) => {
                let code = ErrorCode::InsufficientUserAuthentication;
                let body = json!({"error": code.as_str(), "error_description": description, "acr_values": acr.name()});
                Answer::json(401, &body)
                    .with_header("www-authenticate", challenge(code.as_str(), &[("acr_values", acr.name())]))
            }
            GatewayError::RateLimited(_) => Answer::error(429, "rate_limited", &description)
                .with_header("retry-after", RATE_RETRY_AFTER_SECONDS.to_string()),
            GatewayError::InvalidPersonIds { invalid, .. } => {
                let mut body = json!({"error": ErrorCode::InvalidRequest.as_str(), "error_description": description});
                if !invalid.is_empty() {
                    body["invalid_personidentifikatorer"] = json!(invalid);
                }
                Answer::json(400, &body)
            }
            GatewayError::Unavailable { retry_after, .. } => {
                oauth(503, ErrorCode::TemporarilyUnavailable).with_header("retry-after", retry_after.to_string())
            }
            GatewayError::BadGateway(_) => Answer::error(502, "bad_gateway", &description),
            GatewayError::UpstreamTimeout(_) => Answer::error(504, "upstream_timeout", &description),
            GatewayError::Internal(_) => oauth(500, ErrorCode::ServerError),
        }
    }
}

impl From<Denial> for GatewayError {
    fn from(denial: Denial) -> GatewayError {
        match denial {
            Denial::NotForThisRoute(description) => GatewayError::NotForThisRoute(description),
            Denial::Scope { scope, description } => {
                GatewayError::InsufficientScope { scope, description: description.into() }
            }
            Denial::StepUp(acr) => GatewayError::StepUp(acr),
        }
    }
}

impl From<KrrError> for GatewayError {
    fn from(error: KrrError) -> GatewayError {
        match error {
            KrrError::NotJson => GatewayError::BadRequest("Content-Type must be application/json".into()),
            KrrError::BadBody(reason) => GatewayError::BadRequest(
                format!("the body must be {{\"personidentifikatorer\": [...]}}: {reason}").into(),
            ),
            KrrError::InvalidIds { description, invalid } => GatewayError::InvalidPersonIds { description, invalid },
            KrrError::NotACitizen => GatewayError::InsufficientScope {
                scope: "user/kontaktinformasjon.read".into(),
                description: "this resource needs a citizen's token (with pid)".into(),
            },
            KrrError::NotAcceptable => {
                GatewayError::NotAcceptable("the answer is application/json (application/jose is not offered)")
            }
            KrrError::Backend(BackendError::Fault(reason)) => {
                GatewayError::BadGateway(format!("Oppslagstjenesten answered with a fault: {reason}").into())
            }
            KrrError::Backend(BackendError::BadAnswer(reason)) => {
                GatewayError::BadGateway(format!("Oppslagstjenesten's answer was refused: {reason}").into())
            }
            KrrError::Backend(BackendError::Insecure(reason)) => {
                GatewayError::BadGateway(format!("Oppslagstjenesten's answer failed WS-Security: {reason}").into())
            }
            KrrError::Backend(BackendError::Unreachable(_)) => GatewayError::Unavailable {
                description: "Oppslagstjenesten cannot be reached".into(),
                retry_after: BACKEND_RETRY_AFTER_SECONDS,
            },
            KrrError::Backend(BackendError::Timeout) => {
                GatewayError::UpstreamTimeout("Oppslagstjenesten did not answer in time".into())
            }
            KrrError::PersonMissing => GatewayError::BadGateway("Oppslagstjenesten answered without the person".into()),
            KrrError::Audit => GatewayError::Unavailable {
                description: "the lookup cannot be put on the audit trail, so it is not answered".into(),
                retry_after: AUDIT_RETRY_AFTER,
            },
            KrrError::Encode(reason) => {
                GatewayError::Internal(format!("the answer could not be written: {reason}").into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_code_and_challenge() {
        let cases: Vec<(GatewayError, u16, &str, Option<&str>)> = vec![
            (GatewayError::BadRequest("x".into()), 400, "invalid_request", None),
            (GatewayError::BadAuthorization("two"), 400, "invalid_request", Some("error=\"invalid_request\"")),
            (GatewayError::NoRoute, 404, "not_found", None),
            (
                GatewayError::token(TokenError::new(Reason::Expired, "old"), 7),
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (
                GatewayError::token(TokenError::new(Reason::IssuerUnavailable, "down"), 7),
                503,
                "temporarily_unavailable",
                None,
            ),
            (GatewayError::StepUp(Acr::Level4), 401, "insufficient_user_authentication", Some("acr_values=\"Level4\"")),
            (GatewayError::RateLimited(5), 429, "rate_limited", None),
            (GatewayError::UpstreamTimeout("slow".into()), 504, "upstream_timeout", None),
            (KrrError::Backend(BackendError::Timeout).into(), 504, "upstream_timeout", None),
            (KrrError::Backend(BackendError::Unreachable("x".into())).into(), 503, "temporarily_unavailable", None),
        ];
        for (error, status, code, challenge) in cases {
            let answer = error.answer();
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!((answer.status, body["error"].as_str().unwrap()), (status, code), "{error:?}");
            let header = answer.headers.iter().find(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str());
            match challenge {
                Some(part) => assert!(header.is_some_and(|h| h.contains(part)), "{error:?}: {header:?}"),
                None => assert!(header.is_none(), "{error:?}"),
            }
        }
        let retry = GatewayError::token(TokenError::new(Reason::IssuerUnavailable, "down"), 7).answer();
        assert!(retry.headers.contains(&("retry-after", "7".to_owned())));
    }
}
