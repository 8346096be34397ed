//! HTTP values in the config, parsed once when the file is read: a method or a header name that
//! does not parse is a config error naming its key, and the roles use the parsed value.

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
pub fn header_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<http::HeaderName, D::Error> {
    let text = String::deserialize(deserializer)?;
    http::HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
        .map_err(|_| D::Error::custom(format!("{text:?} is not a valid header name")))
}

/// A list of header names, each as `header_name` reads it.
pub fn header_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<http::HeaderName>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Name(#[serde(deserialize_with = "header_name")] http::HeaderName);
    Ok(Vec::<Name>::deserialize(deserializer)?.into_iter().map(|Name(name)| name).collect())
}
