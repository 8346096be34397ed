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
}
