//! Test harness: real keys, a real JWKS server, a real upstream, and the real `portvakt`
//! binary started on ephemeral ports with a generated config. Readiness is polled with a
//! deadline; nothing sleeps for a fixed time. One file per concern; each test crate takes what
//! it uses.

#![allow(dead_code)] // each test crate uses a part of the harness

mod browser;
mod demo;
mod keys;
mod machine;
mod process;
mod redis;
mod servers;
mod soap;

// Each test crate uses some of these: the rest would be unused imports there.
#[allow(unused_imports)]
pub use {browser::*, demo::*, keys::*, machine::*, process::*, redis::*, servers::*, soap::*};
