//! The OAuth 2.0 vocabulary both roles speak on the wire: error codes, and how parameters are
//! read from a form or a query.

mod error;
pub mod params;

pub use error::ErrorCode;

/// RFC 7523 §2.1: the JWT-bearer grant (Maskinporten's).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 7523 §2.2: client authentication by a signed JWT (`private_key_jwt`).
pub const JWT_CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
