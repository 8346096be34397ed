//! HTTP values in the config, parsed once when the file is read: a method or a header name that
//! does not parse is a config error naming its key, and the roles use the parsed value.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error};

/// An upper-case HTTP method (`GET`, `POST`…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMethod(pub http::Method);

impl<'de> Deserialize<'de> for HttpMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HttpMethod, D::Error> {
        let text = String::deserialize(deserializer)?;
        match http::Method::from_bytes(text.as_bytes()) {
            Ok(method) if text.to_ascii_uppercase() == text => Ok(HttpMethod(method)),
            _ => Err(D::Error::custom(format!("{text:?} is not an upper-case HTTP method"))),
        }
    }
}

/// A header name, held in lower case (as HTTP/2 and the gateway write them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderName(pub http::HeaderName);

impl HeaderName {
    pub const fn from_static(name: &'static str) -> HeaderName {
        HeaderName(http::HeaderName::from_static(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HeaderName, D::Error> {
        let text = String::deserialize(deserializer)?;
        http::HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
            .map(HeaderName)
            .map_err(|_| D::Error::custom(format!("{text:?} is not a valid header name")))
    }
}
