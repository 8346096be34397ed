//! Logs: `tracing` to stderr, as text or JSON. Pingora logs through `log`; the bridge shows it.
//! Personal numbers never reach a log line unmasked (see `personid::mask`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Install the subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("portvakt: logging was already set up: {e}");
    }
}

/// Untrusted text (a kid, a client id, an id from a request) quoted back in a message or a log
/// line: control characters dropped, at most `max` characters.
pub fn excerpt(value: &str, max: usize) -> String {
    value.chars().filter(|c| !c.is_control()).take(max).collect()
}
