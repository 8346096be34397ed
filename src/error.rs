//! The error of operations: building a role from its config, reloading, loading keys and files,
//! fetching keys in the background. It says what was being done and keeps the cause chain,
//! as `pingora-error` does. Requests have their own vocabulary per role (`GatewayError`,
//! `OAuthError`, `KrrError`), mapped to the wire in one place each.

use std::borrow::Cow;
use std::fmt;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What failed (`context`), and why (`cause`, itself possibly an [`Error`] with a cause).
///
/// `{}` shows the context only; `{:#}` shows the whole chain on one line, `a: b: c`.
pub struct Error {
    context: Cow<'static, str>,
    cause: Option<Cause>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with no underlying cause.
    pub fn new(context: impl Into<Cow<'static, str>>) -> Error {
        Error { context: context.into(), cause: None }
    }

    /// `context`, because of `cause`.
    pub fn because(context: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Error {
        Error { context: context.into(), cause: Some(cause.into()) }
    }

    /// The whole chain on one line, for logs and for answers to operators.
    pub fn chain(&self) -> String {
        format!("{self:#}")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(next) = cause {
                write!(f, ": {next}")?;
                cause = next.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:#}")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Add what was being done to any error.
pub trait Context<T> {
    fn context(self, context: impl Into<Cow<'static, str>>) -> Result<T>;
    fn with_context<C: Into<Cow<'static, str>>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Cause>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<Cow<'static, str>>) -> Result<T> {
        self.map_err(|cause| Error::because(context, cause))
    }

    fn with_context<C: Into<Cow<'static, str>>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|cause| Error::because(context(), cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_kept_and_shown_on_request() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let read: std::result::Result<(), _> = Err(io);
        let error = read.context("cannot read keys.pem").context("issuer.signing_keys[0]").unwrap_err();
        assert_eq!(error.to_string(), "issuer.signing_keys[0]");
        assert_eq!(error.chain(), "issuer.signing_keys[0]: cannot read keys.pem: no such file");
        let inner = std::error::Error::source(&error).and_then(|e| e.source()).map(ToString::to_string);
        assert_eq!(inner.as_deref(), Some("no such file"), "the io::Error itself is reachable");
    }
}
