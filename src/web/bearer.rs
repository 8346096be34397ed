//! Bearer tokens (RFC 6750): reading them from `Authorization` (and only there: tokens in query
//! strings or form bodies end up in logs), and the `WWW-Authenticate` challenge of a refusal.

use http::HeaderMap;

/// The realm in every `WWW-Authenticate: Bearer` challenge.
const REALM: &str = "portvakt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    /// Another scheme, such as `Basic`.
    OtherScheme,
    /// More than one `Authorization` header: which one would the upstream read?
    Repeated,
    /// The value is not `Bearer <b64token>`.
    Malformed,
}

impl BearerError {
    pub fn describe(self) -> &'static str {
        match self {
            BearerError::Missing => "no bearer token: send Authorization: Bearer <token>",
            BearerError::OtherScheme => "the Authorization scheme is not Bearer (or DPoP, where a route takes it)",
            BearerError::Repeated => "more than one Authorization header",
            BearerError::Malformed => "the Authorization header is not Bearer followed by a token",
        }
    }
}

/// How an access token was presented: `Bearer` (RFC 6750) or `DPoP` (RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// A `Bearer` token; any other scheme is refused.
pub fn extract(headers: &HeaderMap) -> Result<&str, BearerError> {
    match credential(headers)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(BearerError::OtherScheme),
    }
}

/// The access token of `Authorization: Bearer …` or `Authorization: DPoP …`, and which it was.
pub fn credential(headers: &HeaderMap) -> Result<(Scheme, &str), BearerError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Repeated);
    }
    let value = value.to_str().map_err(|_| BearerError::Malformed)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(if scheme.is_empty() { BearerError::Missing } else { BearerError::OtherScheme });
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || !is_b64token(token) {
        return Err(BearerError::Malformed);
    }
    Ok((scheme, token))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. This runs over
/// every byte of every token: the fold without early exit lets the compiler vectorise it.
fn is_b64token(token: &str) -> bool {
    let b64 = |c: u8| {
        (c.wrapping_sub(b'a') < 26)
            | (c.wrapping_sub(b'A') < 26)
            | (c.wrapping_sub(b'0') < 10)
            | (c == b'-')
            | (c == b'.')
            | (c == b'_')
            | (c == b'~')
            | (c == b'+')
            | (c == b'/')
    };
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().fold(true, |ok, c| ok & b64(c))
}

/// `Bearer realm="portvakt", error="…", error_description="…"`. RFC 6750 allows neither `"`
/// nor `\` in the quoted values, so they are replaced rather than escaped.
pub fn challenge(error: &str, description: &str, extra: &[(&str, &str)]) -> String {
    challenge_for("Bearer", error, description, extra)
}

/// The same challenge under another scheme (`DPoP`, RFC 9449 §7.1).
pub fn challenge_for(scheme: &str, error: &str, description: &str, extra: &[(&str, &str)]) -> String {
    let mut value =
        format!("{scheme} realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\"", quotable(description));
    for (name, v) in extra {
        value.push_str(&format!(", {name}=\"{}\"", quotable(v)));
    }
    value
}

fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn challenges_stay_within_rfc_6750_characters() {
        let value = challenge("invalid_token", "bad \"kid\" \\ ø", &[("scope", "a b")]);
        assert_eq!(
            value,
            "Bearer realm=\"portvakt\", error=\"invalid_token\", error_description=\"bad 'kid' / ?\", scope=\"a b\""
        );
    }

    #[test]
    fn reads_one_bearer_token() {
        assert_eq!(extract(&headers(&["Bearer abc.def.ghi"])), Ok("abc.def.ghi"));
        assert_eq!(
            extract(&headers(&["bearer  IxC0B76vlWl3fiQhAwZUmD0hr_PPwC9hSIXRdoUslPU="])),
            Ok("IxC0B76vlWl3fiQhAwZUmD0hr_PPwC9hSIXRdoUslPU=")
        );
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(extract(&headers(&[])), Err(BearerError::Missing));
        assert_eq!(extract(&headers(&["Basic dXNlcjpwYXNz"])), Err(BearerError::OtherScheme));
        assert_eq!(extract(&headers(&["Bearer a", "Bearer b"])), Err(BearerError::Repeated));
        assert_eq!(extract(&headers(&["Bearer"])), Err(BearerError::Malformed));
        assert_eq!(extract(&headers(&["Bearer a b"])), Err(BearerError::Malformed));
        assert_eq!(extract(&headers(&["Bearer a,Bearer b"])), Err(BearerError::Malformed));
        assert_eq!(extract(&headers(&["Bearer ==="])), Err(BearerError::Malformed));
    }
}
