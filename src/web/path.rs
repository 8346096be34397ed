//! Request paths are checked before any route is matched: anything an upstream might decode or
//! normalise differently from the gateway (encoded slashes, dot-segments, NUL, `;` parameters)
//! is refused rather than guessed at.

/// Why a request path was refused (the text goes to the client).
pub type PathRefusal = &'static str;

/// Check the request-target and return its path (without the query).
pub fn check_request_path(target: &[u8]) -> Result<&str, PathRefusal> {
    let path = match target.iter().position(|b| *b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    if path.first() != Some(&b'/') {
        return Err("the request target must be an absolute path");
    }
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            0..=0x20 | 0x7f..=0xff => return Err("the path holds a control, space or non-ASCII byte"),
            b'\\' => return Err("the path holds a backslash"),
            b';' => return Err("the path holds ';' (path parameters are not accepted)"),
            b'%' => {
                let hex = path.get(i + 1..i + 3).ok_or("the path holds a truncated %-escape")?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("the path holds an invalid %-escape")?;
                match value {
                    b'/' => return Err("the path holds an encoded slash (%2F)"),
                    b'\\' => return Err("the path holds an encoded backslash (%5C)"),
                    b'.' => return Err("the path holds an encoded dot (%2E)"),
                    b'%' => return Err("the path holds an encoded percent sign (%25)"),
                    b';' => return Err("the path holds an encoded ';' (%3B)"),
                    0..=0x1f | 0x7f => return Err("the path holds an encoded control byte"),
                    _ => {}
                }
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    // Safe: every byte was checked to be printable ASCII above.
    let path = std::str::from_utf8(path).map_err(|_| "the path is not ASCII")?;
    for segment in path[1..].split('/') {
        match segment {
            "." | ".." => return Err("the path holds a dot-segment (. or ..)"),
            "" if path != "/" && !path.ends_with('/') => return Err("the path holds an empty segment (//)"),
            _ => {}
        }
    }
    if path.contains("//") {
        return Err("the path holds an empty segment (//)");
    }
    Ok(path)
}

/// A route's configured prefix: an absolute path of plain segments, no trailing slash.
pub fn check_route_prefix(prefix: &str) -> Result<(), String> {
    if prefix == "/" {
        return Ok(());
    }
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with '/'"));
    }
    if prefix.ends_with('/') {
        return Err(format!("{prefix:?} must not end with '/' (prefixes match whole segments)"));
    }
    if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || "/-._~!$&'()*+,=:@".contains(*c))) {
        return Err(format!("{prefix:?} holds {bad:?}; use plain, unencoded path characters"));
    }
    if prefix[1..].split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("{prefix:?} holds an empty or dot segment"));
    }
    Ok(())
}

/// Segment-aware prefix match: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/" || (path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_with_their_query_removed() {
        assert_eq!(check_request_path(b"/rest/v1/person?x=%2F"), Ok("/rest/v1/person"));
        assert_eq!(check_request_path(b"/"), Ok("/"));
        assert_eq!(check_request_path(b"/a/b/"), Ok("/a/b/"));
        assert_eq!(check_request_path(b"/a%20b"), Ok("/a%20b"));
    }

    #[test]
    fn confusing_paths_are_refused() {
        for bad in [
            &b"/rest%2Fv1/person"[..],
            b"/rest%2fv1",
            b"/rest/v1/../admin",
            b"/rest/./v1",
            b"/rest/v1/person/..",
            b"/rest/v1/person;jsessionid=1",
            b"/rest/v1/person%3b",
            b"/rest\\v1",
            b"/rest/%2e%2e/admin",
            b"/rest/v1\0",
            b"/rest/%00",
            b"/rest/%252F",
            b"//rest/v1/person",
            b"/rest//v1",
            b"/bad%zz",
            b"/trunc%2",
            b"http://evil/rest",
            b"*",
        ] {
            assert!(check_request_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/rest/v1/person", "/rest/v1/person"));
        assert!(prefix_matches("/rest/v1/person", "/rest/v1/person/x"));
        assert!(!prefix_matches("/rest/v1/person", "/rest/v1/personer"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn route_prefixes_are_checked() {
        assert!(check_route_prefix("/rest/v1/personer").is_ok());
        assert!(check_route_prefix("rest").is_err());
        assert!(check_route_prefix("/rest/").is_err());
        assert!(check_route_prefix("/a/../b").is_err());
        assert!(check_route_prefix("/a%2Fb").is_err());
        assert!(check_route_prefix("/a;b").is_err());
    }
}
