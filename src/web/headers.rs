//! What Portvakt knows of HTTP header names, in one place: which describe one hop, which frame
//! a message, and which a configured name may not take. The gateway's forwarding and the
//! config's validation both read it here.

/// Headers that describe one hop, never the message (RFC 9110 §7.6.1), and are never passed
/// on. `Upgrade` is among them (the gateway does not tunnel protocol switches), and so are the
/// framing headers: the gateway writes its own.
pub const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "http2-settings",
];

/// Headers that frame a message or name its host: only the gateway writes them upstream.
const FRAMING: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// A configured header name (`gateway.forward.strip`) may not be one of these.
pub fn is_framing(name: &str) -> bool {
    FRAMING.contains(&name.to_ascii_lowercase().as_str())
}

/// A claim header may not be named after a hop-by-hop or framing header, the credentials or
/// the request id.
pub fn is_reserved(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&name.as_str())
        || is_framing(&name)
        || ["authorization", "x-request-id"].contains(&name.as_str())
}

/// The items of a comma-separated header value (RFC 9110 §5.6.1), trimmed; empty ones kept.
pub fn list_items(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}
