//! DNS-rebinding protection for the MCP endpoint (Streamable HTTP "Security Warning": servers
//! MUST validate `Origin`; a present, invalid `Origin` gets 403).
//!
//! - `Origin`, when present, must be a configured allowed origin, or the same origin as the
//!   request's `Host` (a page served by the gateway itself).
//! - `Host` must be one of the listener's own names: on a loopback listener `localhost`,
//!   `127.0.0.1` and `[::1]` (any port); the host of `public_url`; and any configured
//!   `allowed_hosts`. A non-loopback listener without `public_url` or `allowed_hosts` accepts any
//!   `Host` (there is no name to check against; the listener warns at start).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

use crate::config::ListenConfig;
use crate::error::GatewayError;

/// The checks for one listener, prepared once.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed_origins: Vec<String>,
    /// Lowercase host names (no port) and `host:port` values accepted in `Host`; empty = any.
    allowed_hosts: Vec<String>,
}

/// Middleware: answers 403 to a request whose `Origin` or `Host` the policy refuses.
pub async fn enforce(
    axum::extract::State(gw): axum::extract::State<std::sync::Arc<super::Gateway>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match gw.origin.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            let era = super::streamable_http::header_era(request.headers());
            super::wire::Failure::new(e, era, None).into_response()
        }
    }
}

impl OriginPolicy {
    /// Prepares the policy for a listener.
    pub fn new(cfg: &ListenConfig) -> Self {
        let mut allowed_hosts = cfg.allowed_hosts.clone();
        if cfg.addr.ip().is_loopback() {
            allowed_hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        }
        if let Some(host) = cfg.public_url.as_ref().and_then(|u| u.host_str()) {
            allowed_hosts.push(host.to_ascii_lowercase());
        }
        Self {
            allowed_origins: cfg.allowed_origins.clone(),
            allowed_hosts,
        }
    }

    /// Whether `Host` is unrestricted (for the start-up warning).
    pub fn accepts_any_host(&self) -> bool {
        self.allowed_hosts.is_empty()
    }

    /// Checks a request's `Host` and `Origin`.
    ///
    /// # Errors
    /// [`GatewayError::ForbiddenOrigin`] naming the rejected header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !self.allowed_hosts.is_empty() && !self.host_allowed(&host) {
            return Err(GatewayError::ForbiddenOrigin {
                header: "Host",
                value: host,
            });
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            let same_origin = origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host);
            if !same_origin
                && !self
                    .allowed_origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&origin))
            {
                return Err(GatewayError::ForbiddenOrigin {
                    header: "Origin",
                    value: origin,
                });
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed == host || allowed == name)
    }
}

/// `example.com:443` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn policy(addr: &str, origins: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&ListenConfig {
            addr: addr.parse().unwrap(),
            public_url: Some("https://mcp.example.com/mcp".parse().unwrap()),
            max_body_bytes: 1,
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_hosts: vec![],
            tls: None,
            limits: crate::listener::Limits {
                header_read_timeout: std::time::Duration::from_secs(1),
                idle_timeout: std::time::Duration::from_secs(1),
                max_connections: 1,
            },
        })
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn loopback_accepts_local_names_and_rejects_rebinding() {
        let p = policy("127.0.0.1:8080", &[]);
        assert!(p.check(&headers("localhost:8080", None)).is_ok());
        assert!(p.check(&headers("127.0.0.1:9", None)).is_ok());
        assert!(p.check(&headers("[::1]:8080", None)).is_ok());
        assert!(p.check(&headers("mcp.example.com", None)).is_ok());
        assert!(p.check(&headers("evil.example:8080", None)).is_err());
    }

    #[test]
    fn origin_must_be_allowed_or_same_origin() {
        let p = policy("127.0.0.1:8080", &["https://app.example.com"]);
        assert!(
            p.check(&headers("localhost:8080", Some("http://localhost:8080")))
                .is_ok()
        );
        assert!(
            p.check(&headers("localhost:8080", Some("https://app.example.com")))
                .is_ok()
        );
        let err = p
            .check(&headers("localhost:8080", Some("https://evil.example")))
            .unwrap_err();
        assert!(matches!(
            err,
            GatewayError::ForbiddenOrigin {
                header: "Origin",
                ..
            }
        ));
    }
}
