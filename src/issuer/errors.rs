//! Errors of the issuer's endpoints: RFC 6749 §5.2 codes (plus the OIDC and RFC 6750 ones),
//! with Maskinporten's MP-nnn codes where the grant defines them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::store::StoreError;
pub use crate::oauth::ErrorCode;

/// Maskinporten's error catalogue (the codes Portvakt emits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mp {
    Mp011,
    Mp012,
    Mp100,
    Mp110,
    Mp120,
    Mp121,
    Mp122,
    Mp123,
    Mp124,
    Mp130,
    Mp200,
    Mp201,
    Mp250,
}

impl Mp {
    pub fn code(self) -> &'static str {
        match self {
            Mp::Mp011 => "MP-011",
            Mp::Mp012 => "MP-012",
            Mp::Mp100 => "MP-100",
            Mp::Mp110 => "MP-110",
            Mp::Mp120 => "MP-120",
            Mp::Mp121 => "MP-121",
            Mp::Mp122 => "MP-122",
            Mp::Mp123 => "MP-123",
            Mp::Mp124 => "MP-124",
            Mp::Mp130 => "MP-130",
            Mp::Mp200 => "MP-200",
            Mp::Mp201 => "MP-201",
            Mp::Mp250 => "MP-250",
        }
    }

    pub fn error(self) -> ErrorCode {
        match self {
            Mp::Mp011 => ErrorCode::InvalidRequest,
            Mp::Mp200 | Mp::Mp201 | Mp::Mp250 => ErrorCode::InvalidScope,
            _ => ErrorCode::InvalidGrant,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Set for Maskinporten errors: the catalogue code and the full `error_uri`.
    pub mp: Option<(Mp, String)>,
    /// `invalid_client` after HTTP Basic gets a `WWW-Authenticate: Basic` challenge.
    pub basic_challenge: bool,
    /// Resource endpoints (userinfo) answer with a Bearer challenge.
    pub bearer_challenge: bool,
    /// `Retry-After` (seconds), for `temporarily_unavailable`.
    pub retry_after: Option<u64>,
    /// `DPoP-Nonce`, for `use_dpop_nonce`.
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
            mp: None,
            basic_challenge: false,
            bearer_challenge: false,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// A DPoP proof at the token endpoint that does not hold (400, RFC 9449 §5.1), or one
    /// without the nonce asked for (with `DPoP-Nonce`).
    pub fn dpop(error: crate::token::dpop::DpopError) -> OAuthError {
        use crate::token::dpop::DpopError;
        match error {
            DpopError::UseNonce(nonce) => OAuthError {
                dpop_nonce: Some(nonce),
                ..OAuthError::new(ErrorCode::UseDpopNonce, "a DPoP nonce is required: retry with the one in DPoP-Nonce")
            },
            DpopError::Invalid(reason) => OAuthError::new(ErrorCode::InvalidDpopProof, reason),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidClient, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidScope, description)
    }

    pub fn server_error(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::ServerError, description)
    }

    pub fn invalid_token(description: impl Into<String>) -> OAuthError {
        OAuthError { bearer_challenge: true, ..OAuthError::new(ErrorCode::InvalidToken, description) }
    }

    /// A Maskinporten error: `error_uri` is `{base}/MP-nnn`, the description ends with a trace id.
    pub fn mp(mp: Mp, description: impl Into<String>, error_uri_base: &str) -> OAuthError {
        let uri = format!("{}/{}", error_uri_base.trim_end_matches('/'), mp.code());
        OAuthError { mp: Some((mp, uri)), ..OAuthError::new(mp.error(), description) }
    }

    pub fn with_basic_challenge(mut self, basic: bool) -> OAuthError {
        self.basic_challenge = basic && self.code == ErrorCode::InvalidClient;
        self
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Full { space, retry_after } => {
                tracing::warn!(space, "issuer state is full: a request is refused");
                OAuthError {
                    retry_after: Some(retry_after),
                    ..OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        format!(
                            "the issuer holds as many {space} entries as it may (issuer.store bounds); try again in \
                             {retry_after} s"
                        ),
                    )
                }
            }
            StoreError::Unavailable { reason, retry_after } => {
                tracing::error!(%reason, "issuer state store unavailable: a request is refused");
                OAuthError {
                    retry_after: Some(retry_after),
                    ..OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        "the issuer's state store is unavailable; try again later",
                    )
                }
            }
            corrupt @ StoreError::Corrupt { .. } => {
                tracing::error!(error = %corrupt, "issuer state store holds a value it cannot read");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the issuer's state store holds a value it cannot read",
                )
            }
        }
    }
}

/// Set `Retry-After` on an answer when the error says how long to wait.
pub fn with_retry_after(mut response: Response, retry_after: Option<u64>) -> Response {
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub fn trace_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code.as_str()});
        match &self.mp {
            Some((_, uri)) => {
                body["error_description"] = json!(format!("{} (trace_id: {})", self.description, trace_id()));
                body["error_uri"] = json!(uri);
            }
            None => body["error_description"] = json!(self.description),
        }
        let status = if self.mp.is_some() { StatusCode::BAD_REQUEST } else { issuer_status(self.code) };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portvakt\""));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(nonce) = self.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            headers.insert("dpop-nonce", nonce);
        }
        if self.bearer_challenge {
            let value = crate::web::bearer::challenge(self.code.as_str(), &self.description, &[]);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The status an issuer endpoint answers a code with (RFC 6749 §5.2, RFC 6750 §3.1).
fn issuer_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope | ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}
