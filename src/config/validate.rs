//! [`RawConfig`] → [`Config`]: every check, every issue collected with its key path.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::raw::{RawCatalogue, RawListen, RawSession, RawShutdown, RawSize, RawUpstream};
use super::{
    AdminConfig, CatalogueConfig, Config, ConfigIssue, EraPreference, ListenConfig,
    NamespacingConfig, PolicyConfig, PolicyMode, PrefixMode, Secret, SessionConfig, ShutdownConfig,
    UpstreamConfig, UpstreamId, UpstreamTransport, expand_env,
};

const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
const DEFAULT_MAX_SESSIONS: u64 = 100_000;
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024 * 1024;

/// Collects issues while validating.
pub(super) struct Issues(Vec<ConfigIssue>);

impl Issues {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Runs `check`, recording its error under `path`; `None` when it failed.
    pub(super) fn check<T>(&mut self, path: &str, check: Result<T, String>) -> Option<T> {
        check.map_err(|message| self.push(path, message)).ok()
    }
}

pub(super) fn validate(
    raw: super::RawConfig,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());
    let listen = listen(&raw.listen, base, &mut issues);
    let auth = match (&raw.auth, &listen) {
        (None, _) => Some(None),
        (Some(a), Some(l)) => {
            super::auth::auth(a, l.public_url.as_ref(), base, &mut issues).map(Some)
        }
        (Some(_), None) => None,
    };
    let admin = raw.admin.as_ref().and_then(|a| {
        issues
            .check("admin.addr", socket_addr(&a.addr))
            .map(|addr| AdminConfig { addr })
    });
    let session = session(&raw.session, base, &mut issues);
    let upstreams = upstreams(&raw.upstreams, base, env, &mut issues);
    let namespacing = namespacing(&raw.namespacing, &mut issues);
    let policies = raw.policies.as_ref().and_then(|p| {
        let dir = base.join(&p.dir);
        if !dir.is_dir() {
            issues.push(
                "policies.dir",
                format!("{} is not a directory", dir.display()),
            );
        }
        let mode = issues.check(
            "policies.mode",
            match p.mode.as_deref() {
                None | Some("enforce") => Ok(PolicyMode::Enforce),
                Some("audit") => Ok(PolicyMode::Audit),
                Some(other) => Err(format!("{other:?} is not one of enforce, audit")),
            },
        )?;
        Some(PolicyConfig { dir, mode })
    });
    let catalogue = catalogue(&raw.catalogue, &mut issues);
    let limits = super::traffic::limits(&raw.limits, env, &mut issues);
    let audit = match &raw.audit {
        None => Some(None),
        Some(a) => super::telemetry::audit(a, base, &mut issues).map(Some),
    };
    let telemetry = super::telemetry::telemetry(&raw.telemetry, &mut issues);
    let shutdown = shutdown(&raw.shutdown, &mut issues);
    match (
        listen,
        session,
        namespacing,
        catalogue,
        auth,
        audit,
        telemetry,
        shutdown,
    ) {
        (
            Some(listen),
            Some(session),
            Some(namespacing),
            Some(catalogue),
            Some(auth),
            Some(audit),
            Some(telemetry),
            Some(shutdown),
        ) if issues.0.is_empty() => Ok(Config {
            listen,
            admin,
            session,
            upstreams,
            namespacing,
            catalogue,
            auth,
            policies,
            limits,
            audit,
            telemetry,
            shutdown,
            source: super::ConfigSource::default(),
        }),
        _ => Err(issues.0),
    }
}

/// A duration that must not be zero.
pub(super) fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be longer than zero".into())
    } else {
        Ok(d)
    }
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a socket address such as 127.0.0.1:8080"))
}

pub(super) fn duration(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| format!("{t:?} is not a duration such as 30s or 500ms: {e}")),
    }
}

fn listen(raw: &RawListen, base: &Path, issues: &mut Issues) -> Option<ListenConfig> {
    let addr = issues.check("listen.addr", socket_addr(&raw.addr));
    let tls = match &raw.tls {
        None => Some(None),
        Some(t) => super::auth::tls(t, base, issues).map(Some),
    };
    match (&raw.tls, raw.plain_http, addr) {
        (Some(_), true, _) => issues.push("listen.plain_http", "contradicts listen.tls"),
        (None, false, Some(a)) if !a.ip().is_loopback() => issues.push(
            "listen",
            format!("{a} is not a loopback address: configure `tls`, or set `plain_http: true` when a proxy in front terminates TLS"),
        ),
        _ => {}
    }
    let public_url = match &raw.public_url {
        None => Some(None),
        Some(u) => issues.check("listen.public_url", http_url(u)).map(Some),
    };
    let max_body_bytes = match &raw.max_body_bytes {
        None => Some(DEFAULT_MAX_BODY),
        Some(size) => issues.check("listen.max_body_bytes", byte_size(size)),
    };
    let mut allowed_origins = Vec::new();
    for (i, origin) in raw.allowed_origins.iter().enumerate() {
        let parsed = Url::parse(origin)
            .ok()
            .filter(|u| u.has_host() && matches!(u.scheme(), "http" | "https"))
            .map(|u| u.origin().ascii_serialization());
        match parsed {
            Some(o) => allowed_origins.push(o),
            None => issues.push(
                format!("listen.allowed_origins[{i}]"),
                format!("{origin:?} is not an origin such as https://app.example.com"),
            ),
        }
    }
    let allowed_hosts = raw
        .allowed_hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let header_read_timeout = issues.check(
        "listen.header_read_timeout",
        duration(raw.header_read_timeout.as_deref(), Duration::from_secs(10)).and_then(positive),
    );
    let idle_timeout = issues.check(
        "listen.idle_timeout",
        duration(raw.idle_timeout.as_deref(), Duration::from_secs(60)).and_then(positive),
    );
    let max_connections = match raw.max_connections {
        None => Some(DEFAULT_MAX_CONNECTIONS),
        Some(0) => {
            issues.push("listen.max_connections", "must be at least 1");
            None
        }
        Some(n) => Some(n as usize),
    };
    Some(ListenConfig {
        addr: addr?,
        public_url: public_url?,
        max_body_bytes: max_body_bytes?,
        allowed_origins,
        allowed_hosts,
        tls: tls?,
        limits: crate::listener::Limits {
            header_read_timeout: header_read_timeout?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections?,
        },
    })
}

/// Parses an `http(s)` URL; the message of a bad one quotes it redacted ([`crate::redact`]):
/// expanded `${ENV}` secrets stay out of validation output.
pub(super) fn http_url(text: &str) -> Result<Url, String> {
    let quoted = crate::redact::text(text);
    let url = Url::parse(text).map_err(|e| format!("{quoted:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("{quoted:?} must be an http:// or https:// URL"));
    }
    Ok(url)
}

pub(super) fn byte_size(size: &RawSize) -> Result<usize, String> {
    let bytes = match size {
        RawSize::Bytes(n) => *n,
        RawSize::Text(t) => t
            .parse::<bytesize::ByteSize>()
            .map_err(|e| format!("{t:?} is not a size such as 4MiB: {e}"))?
            .as_u64(),
    };
    if bytes == 0 {
        return Err("must be greater than zero".into());
    }
    usize::try_from(bytes).map_err(|_| "too large for this platform".into())
}

fn session(raw: &RawSession, base: &Path, issues: &mut Issues) -> Option<SessionConfig> {
    let key = match &raw.key_file {
        None => Some(None),
        Some(file) => issues
            .check("session.key_file", read_key(&base.join(file)))
            .map(Some),
    };
    let idle_timeout = issues.check(
        "session.idle_timeout",
        duration(raw.idle_timeout.as_deref(), Duration::from_secs(30 * 60)),
    );
    let max_lifetime = issues.check(
        "session.max_lifetime",
        duration(raw.max_lifetime.as_deref(), Duration::from_secs(24 * 3600)),
    );
    let max_sessions = match raw.max_sessions {
        None => Some(DEFAULT_MAX_SESSIONS),
        Some(0) => {
            issues.push("session.max_sessions", "must be at least 1");
            None
        }
        Some(n) => Some(n),
    };
    let replay_buffer_bytes = match &raw.replay_buffer_bytes {
        None => Some(DEFAULT_REPLAY_BUFFER),
        Some(size) => issues.check("session.replay_buffer_bytes", byte_size(size)),
    };
    Some(SessionConfig {
        key: key?,
        idle_timeout: idle_timeout?,
        max_lifetime: max_lifetime?,
        max_sessions: max_sessions?,
        replay_buffer_bytes: replay_buffer_bytes?,
    })
}

/// Reads a 32-byte key: 64 hex characters (whitespace trimmed) or exactly 32 raw bytes.
pub(super) fn read_key(path: &Path) -> Result<[u8; 32], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Some(key) = hex32(String::from_utf8_lossy(&bytes).trim()) {
        return Ok(key);
    }
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| "the key file must hold 64 hex characters or exactly 32 bytes".into())
}

/// 32 bytes from exactly 64 hex digits.
pub(super) fn hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

fn upstreams(
    raw: &[RawUpstream],
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Vec<UpstreamConfig> {
    if raw.is_empty() {
        issues.push("upstreams", "at least one upstream is required");
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, up) in raw.iter().enumerate() {
        let at = format!("upstreams[{i}]");
        let id = issues.check(&format!("{at}.id"), UpstreamId::parse(&up.id));
        if let Some(id) = &id
            && !seen.insert(id.clone())
        {
            issues.push(
                format!("{at}.id"),
                format!("duplicate upstream id {:?}", id.as_str()),
            );
        }
        let transport = transport(up, &at, base, env, issues);
        let timeout = issues.check(
            &format!("{at}.timeout"),
            duration(up.timeout.as_deref(), Duration::from_secs(30)).and_then(positive),
        );
        let era = issues.check(
            &format!("{at}.era"),
            match up.era.as_deref() {
                None | Some("auto") => Ok(EraPreference::Auto),
                Some("modern") => Ok(EraPreference::Modern),
                Some("legacy") => Ok(EraPreference::Legacy),
                Some(other) => Err(format!("{other:?} is not one of auto, modern, legacy")),
            },
        );
        let traffic = super::traffic::upstream(up, &at, timeout.unwrap_or_default(), issues);
        if let (Some(id), Some(transport), Some(timeout), Some(era)) = (id, transport, timeout, era)
        {
            out.push(UpstreamConfig {
                id,
                transport,
                timeout,
                era,
                traffic,
            });
        }
    }
    out
}

fn transport(
    up: &RawUpstream,
    at: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<UpstreamTransport> {
    let kinds = [up.http.is_some(), up.stdio.is_some(), up.sse.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        issues.push(at, "set exactly one of `http`, `stdio` or `sse`");
        return None;
    }
    if let Some(http) = up.http.as_ref().or(up.sse.as_ref()) {
        let key = if up.http.is_some() { "http" } else { "sse" };
        let url = issues
            .check(&format!("{at}.{key}.url"), expand_env(&http.url, env))
            .and_then(|u| issues.check(&format!("{at}.{key}.url"), http_url(&u)));
        let mut headers = Vec::new();
        for (name, value) in &http.headers {
            let path = format!("{at}.{key}.headers.{name}");
            let value = issues.check(&path, expand_env(value, env));
            if let Some(h) = header(name, value, &path, issues) {
                headers.push(h);
            }
        }
        for (name, file) in &http.header_files {
            let path = format!("{at}.{key}.header_files.{name}");
            let file = base.join(file);
            let value = issues.check(
                &path,
                std::fs::read_to_string(&file)
                    .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read {}: {e}", file.display())),
            );
            if let Some(h) = header(name, value, &path, issues) {
                headers.push(h);
            }
        }
        let oauth = match &http.oauth {
            None => Some(None),
            Some(_) if up.sse.is_some() => {
                issues.push(
                    format!("{at}.sse.oauth"),
                    "OAuth is supported for Streamable HTTP upstreams (`http`), not the HTTP+SSE transport",
                );
                None
            }
            Some(o) => super::auth::upstream_oauth(
                o,
                url.as_ref(),
                &format!("{at}.http.oauth"),
                base,
                env,
                issues,
            )
            .map(|o| Some(Box::new(o))),
        };
        if oauth.as_ref().is_some_and(Option::is_some)
            && headers
                .iter()
                .any(|(n, _)| n == http::header::AUTHORIZATION)
        {
            issues.push(
                format!("{at}.http"),
                "`headers.Authorization` and `oauth` both set the Authorization header; keep one",
            );
        }
        let url = url?;
        return Some(if up.http.is_some() {
            UpstreamTransport::Http {
                url,
                headers,
                oauth: oauth?,
            }
        } else {
            UpstreamTransport::Sse { url, headers }
        });
    }
    let stdio = up.stdio.as_ref()?;
    if stdio.command.trim().is_empty() {
        issues.push(format!("{at}.stdio.command"), "must not be empty");
    }
    let args = stdio
        .args
        .iter()
        .enumerate()
        .filter_map(|(j, a)| issues.check(&format!("{at}.stdio.args[{j}]"), expand_env(a, env)))
        .collect();
    let env_vars = stdio
        .env
        .iter()
        .filter_map(|(k, v)| {
            issues
                .check(&format!("{at}.stdio.env.{k}"), expand_env(v, env))
                .map(|v| (k.clone(), Secret::new(v)))
        })
        .collect();
    Some(UpstreamTransport::Stdio {
        command: stdio.command.clone(),
        args,
        env: env_vars,
        cwd: stdio.cwd.as_ref().map(|c| base.join(c)),
    })
}

fn header(
    name: &str,
    value: Option<String>,
    path: &str,
    issues: &mut Issues,
) -> Option<(http::HeaderName, Secret)> {
    let name = issues.check(
        path,
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid HTTP header name")),
    )?;
    let value = value?;
    if http::HeaderValue::from_str(&value).is_err() {
        issues.push(
            path,
            "the value contains characters not allowed in an HTTP header",
        );
        return None;
    }
    let reserved = [
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "content-type",
        "content-length",
        "host",
    ];
    if reserved.contains(&name.as_str()) {
        issues.push(
            path,
            format!("{name} is set by the gateway and cannot be configured"),
        );
        return None;
    }
    Some((name, Secret::new(value)))
}

fn namespacing(raw: &super::raw::RawNamespacing, issues: &mut Issues) -> Option<NamespacingConfig> {
    let separator = raw.separator.clone().unwrap_or_else(|| "__".into());
    let sep_ok = !separator.is_empty()
        && separator.len() <= 8
        && separator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !sep_ok {
        issues.push(
            "namespacing.separator",
            format!("{separator:?} must be 1-8 characters from [A-Za-z0-9_-]"),
        );
    }
    let prefix = issues.check(
        "namespacing.prefix",
        match raw.prefix.as_deref() {
            None | Some("conditional") => Ok(PrefixMode::Conditional),
            Some("always") => Ok(PrefixMode::Always),
            Some("never") => Ok(PrefixMode::Never),
            Some(other) => Err(format!(
                "{other:?} is not one of conditional, always, never"
            )),
        },
    )?;
    sep_ok.then_some(NamespacingConfig { separator, prefix })
}

fn shutdown(raw: &RawShutdown, issues: &mut Issues) -> Option<ShutdownConfig> {
    let drain_delay = issues.check(
        "shutdown.drain_delay",
        duration(raw.drain_delay.as_deref(), Duration::from_secs(5)),
    );
    let grace = issues.check(
        "shutdown.grace",
        duration(raw.grace.as_deref(), Duration::from_secs(30)).and_then(positive),
    );
    Some(ShutdownConfig {
        drain_delay: drain_delay?,
        grace: grace?,
    })
}

fn catalogue(raw: &RawCatalogue, issues: &mut Issues) -> Option<CatalogueConfig> {
    let refresh_interval = issues.check(
        "catalogue.refresh_interval",
        duration(raw.refresh_interval.as_deref(), Duration::from_secs(300)),
    );
    let retry_interval = issues.check(
        "catalogue.retry_interval",
        duration(raw.retry_interval.as_deref(), Duration::from_secs(5)),
    );
    let client_ttl = issues.check(
        "catalogue.client_ttl",
        duration(raw.client_ttl.as_deref(), Duration::from_secs(60)),
    );
    let page_size = match raw.page_size {
        None => Some(100),
        Some(0) => {
            issues.push("catalogue.page_size", "must be at least 1");
            None
        }
        Some(n) => Some(n as usize),
    };
    Some(CatalogueConfig {
        refresh_interval: refresh_interval?,
        retry_interval: retry_interval?,
        page_size: page_size?,
        client_ttl: client_ttl?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, Path::new("test.yaml"), Path::new("."), &|n| {
            (n == "TOKEN").then(|| "abc".to_string())
        })
    }

    #[test]
    fn shutdown_defaults_values_and_bad_values() {
        let base = "listen: { addr: 127.0.0.1:0 }\nupstreams: [{ id: a, stdio: { command: x } }]\n";
        let cfg = load(base).unwrap();
        assert_eq!(cfg.shutdown.drain_delay, std::time::Duration::from_secs(5));
        assert_eq!(cfg.shutdown.grace, std::time::Duration::from_secs(30));
        let cfg = load(&format!(
            "{base}shutdown: {{ drain_delay: 0s, grace: 90s }}\n"
        ))
        .unwrap();
        assert!(cfg.shutdown.drain_delay.is_zero(), "no drain is allowed");
        assert_eq!(cfg.shutdown.grace, std::time::Duration::from_secs(90));
        let Err(ConfigError::Invalid { issues }) = load(&format!(
            "{base}shutdown: {{ drain_delay: soon, grace: 0s }}\n"
        )) else {
            panic!("invalid shutdown settings must be refused");
        };
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        let text = text.join("\n");
        assert!(text.contains("shutdown.drain_delay"), "{text}");
        assert!(
            text.contains("shutdown.grace: must be longer than zero"),
            "{text}"
        );
    }

    #[test]
    fn accepts_a_full_config() {
        let cfg = load(
            r#"
listen: { addr: "127.0.0.1:0", max_body_bytes: 1MiB, allowed_origins: ["https://app.example.com/"] }
upstreams:
  - id: time
    stdio: { command: mcp-server-time, args: ["--local-timezone", "UTC"] }
  - id: everything
    http: { url: "http://127.0.0.1:3001/mcp", headers: { Authorization: "Bearer ${TOKEN}" } }
    timeout: 5s
    era: legacy
namespacing: { separator: "__", prefix: always }
"#,
        )
        .unwrap();
        assert_eq!(cfg.listen.max_body_bytes, 1024 * 1024);
        assert_eq!(cfg.listen.allowed_origins, ["https://app.example.com"]);
        assert_eq!(cfg.upstreams.len(), 2);
        let super::super::UpstreamTransport::Http { headers, .. } = &cfg.upstreams[1].transport
        else {
            panic!("expected http")
        };
        assert_eq!(headers[0].1.expose(), "Bearer abc");
        assert!(
            !format!("{cfg:?}").contains("abc"),
            "secrets must not print"
        );
    }

    #[test]
    fn reports_every_issue_with_its_path() {
        let err = load(
            r#"
listen: { addr: "nowhere" }
upstreams:
  - id: Bad_Id
    stdio: { command: x }
  - id: ok
    http: { url: "ftp://x", headers: { X: "${MISSING}" } }
  - id: ok
  - id: both
    http: { url: "http://x" }
    stdio: { command: y }
    timeout: soon
namespacing: { separator: "+" }
"#,
        )
        .unwrap_err();
        let ConfigError::Invalid { issues } = err else {
            panic!("expected Invalid, got {err:?}")
        };
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        for expected in [
            "listen.addr",
            "upstreams[0].id",
            "upstreams[1].http.url",
            "upstreams[1].http.headers.X",
            "upstreams[2].id",
            "upstreams[2]",
            "upstreams[3]",
            "upstreams[3].timeout",
            "namespacing.separator",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = load("listen: { addr: '127.0.0.1:0', bogus: 1 }\nupstreams: []\n").unwrap_err();
        let ConfigError::Syntax { message, .. } = err else {
            panic!("expected Syntax")
        };
        assert!(
            message.contains("listen") && message.contains("bogus"),
            "{message}"
        );
    }
}
