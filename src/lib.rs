//! mcpgate: one MCP (Model Context Protocol) endpoint in front of many MCP servers.
//!
//! Agents connect to one Streamable HTTP endpoint; mcpgate merges the tools, prompts, resources
//! and resource templates of every configured upstream MCP server into one namespaced catalogue
//! and routes each call to the upstream that owns it. Both eras of MCP are spoken on both faces:
//! *legacy* (`initialize`, `Mcp-Session-Id`; 2025-03-26 … 2025-11-25) and *modern* (stateless,
//! per-request `_meta`; 2026-07-28), and the gateway bridges between them.
//!
//! # Life of a request
//!
//! ```text
//! client ── POST /mcp ──▶ downstream::streamable_http
//!     ▶ Origin/Host check · body limit · decode the JSON-RPC envelope once (jsonrpc)
//!     ▶ detect the era from the request itself
//!         modern: validate _meta and the mirrored headers (downstream::modern)
//!         legacy: initialize mints a sealed session id; later requests open it (downstream::legacy)
//!     ▶ router: by method
//!         tools/list, prompts/list, resources/list, resources/templates/list
//!             ──▶ catalogue: current merged snapshot, sorted, paged with gateway cursors
//!         tools/call, prompts/get, resources/read, completion/complete
//!             ──▶ resolve owner, rewrite name/URI to the upstream's own
//!             ──▶ upstream: HTTP or stdio, modern or legacy (era probed once and cached)
//!             ◀── rewrite URIs in the result back to client-facing form
//!     ◀ result decorated for the client's era; every failure through one boundary
//!       (error::GatewayError::to_wire, downstream::wire::Failure)
//! ```
//!
//! Data flows one way: each stage adds typed facts (decoded message, era, call context, resolved
//! owner) and later stages read them; nothing re-parses the body. Fields the gateway does not
//! route on are never modelled, so they pass through untouched.
//!
//! # Layout
//!
//! - [`app`]: the composition root; builds the stack, binds listeners, shuts down.
//! - [`admin`]: the operations listener (`/healthz`, `/readyz`, `/metrics`).
//! - [`listener`]: accepting connections (plain and TLS) within connection and time bounds.
//! - [`config`]: YAML → validated [`config::Config`], every issue reported with its key path.
//! - [`downstream`]: the client-facing Streamable HTTP endpoint for both eras.
//! - [`router`]: method dispatch, name/URI rewriting.
//! - [`catalogue`]: merging, namespacing, cursors, background refresh.
//! - [`upstream`]: the MCP client side (Streamable HTTP and stdio, both eras), with each
//!   upstream's bulkhead, circuit breaker, timeouts, retries and health checks.
//! - [`limits`]: rate limits per call (global, principal, role, upstream, tool).
//! - [`jsonrpc`], [`protocol`], [`error`]: envelopes, protocol constants, the error mapping.
//! - [`param_headers`]: `Mcp-Param-*` headers mirrored from tool arguments.
//! - [`auth`]: the calling principal. [`telemetry`]: metrics, logs, trace context.
//! - [`audit`]: the tamper-evident audit log (records, hash chain, sinks, `audit verify`).
//! - [`backoff`]: the exponential backoff of every retry loop.
//! - [`redact`]: URLs without userinfo or query in logs and errors.
//! - [`uri`]: resource URIs in RFC 3986 normal form, what policies decide on.
//!
//! Dependencies point downward: downstream → router → catalogue → upstream; `error`,
//! `telemetry`, `jsonrpc` and `protocol` are leaves.

/// The git revision the binary was built from (12 hex digits, or `unknown`); see `build.rs`.
pub const GIT_REVISION: &str = env!("MCPGATE_GIT_REVISION");

/// `mcpgate --version`: the package version and the git revision, e.g. `0.1.0 (684b347ec236)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MCPGATE_GIT_REVISION"),
    ")"
);

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod error;
pub mod glob;
pub mod jsonrpc;
pub mod limits;
pub mod listener;
pub mod param_headers;
pub mod policy;
pub mod protocol;
pub mod redact;
pub mod redis_client;
pub mod redis_writes;
pub mod reload;
pub mod router;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod uri;
pub mod watch;
