//! mcpgate
pub mod app;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod downstream;
pub mod error;
pub mod jsonrpc;
pub mod protocol;
pub mod router;
pub mod telemetry;
pub mod upstream;
