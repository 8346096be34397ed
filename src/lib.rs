//! Portvakt: an ID-porten-style token issuer, a Pingora edge that validates its tokens, the KRR
//! REST API in front of a SOAP Oppslagstjenesten (and a simulator of it), and authlevel.
//!
//! One folder per role (`gateway`, `issuer`, `krr`, `oppslag`) and per shared concern
//! (`token`, `oauth`, `config`, `admin`, `web`, `personid`, `pki`, `soap`, `wssec`, `audit`,
//! `telemetry`, `server`).

pub mod admin;
pub mod audit;
pub mod client;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod issuer;
pub mod krr;
pub mod oauth;
pub mod oppslag;
pub mod personid;
pub mod pki;
pub mod replay;
pub mod server;
pub mod soap;
pub mod telemetry;
pub mod token;
pub mod web;
pub mod wssec;
