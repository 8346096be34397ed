//! The issuer's form requests as types: the token request (one variant per `grant_type`), the
//! client authentication every back-channel endpoint reads, and the token that introspection
//! and revocation are asked about. The forms are read by `oauth::params` (each name once, empty
//! means absent), then into these.

use std::collections::HashMap;

use serde::Deserialize;

use super::errors::{ErrorCode, OAuthError};
use crate::oauth::{JWT_BEARER_GRANT, params};
use crate::telemetry::excerpt;

/// RFC 6749 §2.3 and RFC 7523 §2.2: how a client may authenticate in the body.
#[derive(Debug, Default, Deserialize)]
pub struct ClientAuthentication {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
}

/// The grant a token request asks for, with the parameters that grant requires.
#[derive(Debug, Deserialize)]
#[serde(tag = "grant_type")]
pub enum GrantRequest {
    /// RFC 6749 §4.1.3, with RFC 7636's `code_verifier`.
    #[serde(rename = "authorization_code")]
    AuthorizationCode { code: String, redirect_uri: Option<String>, code_verifier: Option<String> },
    /// RFC 6749 §6.
    #[serde(rename = "refresh_token")]
    RefreshToken { refresh_token: String, scope: Option<String> },
    /// RFC 6749 §4.4, with RFC 8707's `resource`.
    #[serde(rename = "client_credentials")]
    ClientCredentials { scope: String, resource: Option<String> },
    /// RFC 7523 §2.1: Maskinporten's grant.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer { assertion: String },
}

/// In the order discovery lists them.
pub const GRANT_TYPES: [&str; 4] = ["authorization_code", "refresh_token", JWT_BEARER_GRANT, "client_credentials"];

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    #[serde(flatten)]
    pub grant: GrantRequest,
    #[serde(flatten)]
    pub client: ClientAuthentication,
}

impl TokenRequest {
    /// A missing `grant_type` is `invalid_request`, an unknown one `unsupported_grant_type`
    /// (RFC 6749 §5.2), a missing parameter of a known grant `invalid_request` naming it.
    pub fn read(form: &HashMap<String, String>) -> Result<TokenRequest, OAuthError> {
        match form.get("grant_type").map(String::as_str) {
            None | Some("") => return Err(OAuthError::invalid_request("grant_type is required")),
            Some(known) if GRANT_TYPES.contains(&known) => {}
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type {:?} is not supported", excerpt(other, 64)),
                ));
            }
        }
        read(form)
    }
}

/// An authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636), from the query,
/// a POSTed form or a push to `/par` (RFC 9126). Every parameter is optional here: which one
/// is missing decides whether the refusal is a page or a redirect back to the client.
#[derive(Debug, Default, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub acr_values: Option<String>,
    pub ui_locales: Option<String>,
    pub prompt: Option<String>,
    /// Request objects (RFC 9101) are not supported; named only to refuse them.
    pub request: Option<String>,
    /// A handle from `/par`.
    pub request_uri: Option<String>,
}

/// RFC 7662 §2.1 and RFC 7009 §2.1: the token asked about (`token_type_hint` is only a hint,
/// and every kind of token is looked for anyway).
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: String,
    #[serde(flatten)]
    pub client: ClientAuthentication,
}

/// A back-channel form body: each parameter at most once.
pub fn parse_form(body: &str) -> Result<HashMap<String, String>, OAuthError> {
    params::parse(body, None).map_err(|e| OAuthError::invalid_request(e.to_string()))
}

/// Any of these requests from a parsed form; what is missing or malformed is `invalid_request`.
pub fn read<T: serde::de::DeserializeOwned>(form: &HashMap<String, String>) -> Result<T, OAuthError> {
    params::typed(form).map_err(|e| OAuthError::invalid_request(format!("the request is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_request(text: &str) -> Result<TokenRequest, OAuthError> {
        TokenRequest::read(&params::parse(text, None).unwrap())
    }

    #[test]
    fn each_grant_reads_its_own_parameters_and_the_client_authentication() {
        let request = token_request("grant_type=authorization_code&code=c&code_verifier=v&client_id=app").unwrap();
        assert!(matches!(
            request.grant,
            GrantRequest::AuthorizationCode { ref code, redirect_uri: None, code_verifier: Some(ref v) }
                if code == "c" && v == "v"
        ));
        assert_eq!(request.client.client_id.as_deref(), Some("app"));
        let request = token_request(&format!("grant_type={}&assertion=a.b.c", urlencode(JWT_BEARER_GRANT))).unwrap();
        assert!(matches!(request.grant, GrantRequest::JwtBearer { ref assertion } if assertion == "a.b.c"));
    }

    #[test]
    fn refusals_name_the_rfc_error_and_the_parameter() {
        let code = |text: &str| token_request(text).unwrap_err();
        assert_eq!(code("code=c").code, ErrorCode::InvalidRequest);
        assert_eq!(code("grant_type=&code=c").code, ErrorCode::InvalidRequest);
        assert_eq!(code("grant_type=password&username=u").code, ErrorCode::UnsupportedGrantType);
        let missing = code("grant_type=client_credentials&scope=");
        assert_eq!(missing.code, ErrorCode::InvalidRequest);
        assert!(missing.description.contains("`scope`"), "{}", missing.description);
    }

    fn urlencode(text: &str) -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
