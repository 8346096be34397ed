//! Error codes: what the issuer answers its endpoints with, and the gateway its refusals.

/// Error codes: RFC 6749 §5.2 (token endpoint), §4.1.2.1 (authorization endpoint), RFC 6750 §3.1
/// (resource servers), RFC 9470 (step-up) and RFC 7009 / 7662 use of the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    InvalidToken,
    InsufficientScope,
    InsufficientUserAuthentication,
    ServerError,
    TemporarilyUnavailable,
    /// RFC 9449 §12.2: the DPoP proof is missing, wrong or replayed.
    InvalidDpopProof,
    /// RFC 9449 §8: retry with the server's nonce (in `DPoP-Nonce`).
    UseDpopNonce,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InsufficientUserAuthentication => "insufficient_user_authentication",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }
}
