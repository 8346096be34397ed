//! Parameters of a form body or a query string (`application/x-www-form-urlencoded`), read
//! once for every endpoint: each name at most once (RFC 6749 §3.1: "Request and response
//! parameters MUST NOT be included more than once"), and each value bounded where the endpoint
//! says so.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("parameter {0} is longer than {1} characters")]
    TooLong(String, usize),
}

/// Read `text` into one value per name; values longer than `max_value` bytes are refused.
pub fn parse(text: &str, max_value: Option<usize>) -> Result<HashMap<String, String>, ParamError> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        if let Some(max) = max_value
            && value.len() > max
        {
            return Err(ParamError::TooLong(name.into_owned(), max));
        }
        if params.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(ParamError::Repeated(name.into_owned()));
        }
    }
    Ok(params)
}

/// Read parameters already parsed into a typed request (serde). Parameters sent without a value
/// count as omitted (RFC 6749 §3.1) and unknown ones are ignored; a missing or malformed one is
/// named in the error.
pub fn typed<T: serde::de::DeserializeOwned>(params: &HashMap<String, String>) -> Result<T, String> {
    // Through a JSON map of strings: serde's plain string deserializers cannot fill an `Option`.
    let present: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(present)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_once_and_values_bounded() {
        assert_eq!(parse("a=1&b=2", None).unwrap().len(), 2);
        assert_eq!(parse("a=1&a=2", None), Err(ParamError::Repeated("a".into())));
        assert_eq!(parse("a=1&%61=2", None), Err(ParamError::Repeated("a".into())), "decoded names count");
        assert_eq!(parse("a=123", Some(2)), Err(ParamError::TooLong("a".into(), 2)));
    }

    #[test]
    fn typed_requests_read_present_values_and_name_what_is_missing() {
        #[derive(serde::Deserialize, Debug)]
        struct Request {
            code: String,
            scope: Option<String>,
        }
        let read = |text: &str| typed::<Request>(&parse(text, None).unwrap());
        let request = read("code=abc&scope=&unknown=1").unwrap();
        assert_eq!((request.code.as_str(), request.scope), ("abc", None), "an empty value is an omitted one");
        assert_eq!(read("code=abc&scope=openid").unwrap().scope.as_deref(), Some("openid"));
        assert!(read("code=").unwrap_err().contains("missing field `code`"));
    }
}
