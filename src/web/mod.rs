//! HTTP plumbing shared by the roles: outgoing clients and axum apps on Pingora listeners.

pub mod app;
pub mod bearer;
pub mod client;
pub mod connection;
pub mod headers;
pub mod path;
