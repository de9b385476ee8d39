//! netpol-input: what both the command line and the HTTP API read, over `netpol-core`. Manifests from files,
//! directories and stdin ([`files`]), flows in the JSON Lines query contract with endpoint and port parsing
//! ([`query`]), and the line of a field in a manifest's text ([`locate`]).

#![forbid(unsafe_code)]

pub mod files;
pub mod locate;
pub mod query;
