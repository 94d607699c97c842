//! TLS termination (rustls): the server configuration ([`config`]) with certificates reloaded
//! from disk without dropping connections, and client certificate identities for mTLS
//! ([`identity`]). The accept loop is [`crate::listener`]'s, the same as for plain HTTP.

pub mod config;
pub mod identity;

pub use config::{TlsError, TlsSetup};
