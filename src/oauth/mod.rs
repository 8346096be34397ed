//! The OAuth 2.0 vocabulary both roles speak on the wire: error codes, and how parameters are
//! read from a form or a query.

mod error;
pub mod params;

pub use error::ErrorCode;
