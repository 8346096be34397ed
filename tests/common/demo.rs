//! The default config's demo material that several test crates use.

pub const RP: &str = "demo-rp";
pub const RP_SECRET: &str = "demo-rp-secret";
pub const RP_REDIRECT: &str = "http://127.0.0.1:8765/callback";
/// A synthetic citizen of the register.
pub const CITIZEN: &str = "23079421936";
/// RFC 7636 appendix B: the verifier of the challenge the tests send.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// RFC 7636 appendix B: the S256 challenge of `VERIFIER`.
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
