//! TLS termination (rustls): the server configuration ([`config`]) with certificates reloaded
//! from disk without dropping connections, client certificate identities for mTLS
//! ([`identity`]), and the accept loop that serves the gateway over TLS ([`serve`]).

pub mod config;
pub mod identity;
pub mod serve;

pub use config::{TlsError, TlsSetup};
