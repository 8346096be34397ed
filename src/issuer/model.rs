//! The issuer's records: what is kept between requests (in the store) and what a token says.

use serde::{Deserialize, Serialize};

use crate::token::Acr;

/// How the authorization response travels back to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// A validated authorization request (from `/authorize` or `/par`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub acr: Option<Acr>,
    pub prompt_login: bool,
    pub locale: String,
    pub response_mode: ResponseMode,
}

/// The result of a login at the IdP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Authentication {
    pub pid: String,
    pub acr: Acr,
    /// The eID used (`amr`): `TestID` for the built-in IdP.
    pub amr: String,
    pub auth_time: i64,
    pub locale: String,
}

/// A login or consent page in progress, bound to the browser by a cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interaction {
    pub csrf: String,
    pub request: AuthRequest,
    /// Set once the citizen has logged in (the consent step comes after).
    pub authentication: Option<Authentication>,
    pub session: Option<String>,
    /// Scopes waiting for the citizen's decision.
    pub consent_needed: Vec<String>,
}

/// An SSO session (the IdP's), stored under the hash of its cookie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// Public id, sent as `sid` to clients for front-channel logout.
    pub sid: String,
    pub auth: Authentication,
    pub created: i64,
    /// Clients logged in through this session, and the grants they hold.
    pub clients: Vec<String>,
    pub grants: Vec<String>,
}

/// An authorization code, stored under its hash until redeemed or expired.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub request: AuthRequest,
    pub auth: Authentication,
    pub granted_scopes: Vec<String>,
    pub session_key: String,
    pub sid: String,
    pub expires_at: i64,
    /// Set when redeemed: a second redemption revokes this grant (RFC 6749 §4.1.2).
    pub redeemed_grant: Option<String>,
}

/// An authorization: the grant behind refresh tokens and opaque access tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub auth: Authentication,
    pub session_key: String,
    pub sid: String,
    pub expires_at: i64,
    /// The grant's tokens were bound to a DPoP key (its thumbprint) when the code was redeemed:
    /// a refresh must come with a proof too. (Absent in grants stored before DPoP.)
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant_id: String,
    pub client_id: String,
    pub expires_at: i64,
}

/// An opaque access token: its claims, kept for `/tokeninfo` and `/userinfo`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessRecord {
    pub claims: crate::token::AccessClaims,
    pub grant_id: Option<String>,
    /// The token was issued with `no_pid`: its pid is shown only to holders of `tokeninfo`.
    pub no_pid: bool,
    pub pid: Option<String>,
}

/// A JWT access token, kept under its `jti` for as long as it lives: `/tokeninfo` and
/// `/userinfo` call it active only while this record (and its grant, if any) is there, so
/// revoking the grant, or the token itself, ends it at once for them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JwtRecord {
    pub client_id: String,
    pub grant_id: Option<String>,
}

/// Consent decisions of one citizen for one client: scope → approved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Consents {
    pub decisions: std::collections::BTreeMap<String, bool>,
}
