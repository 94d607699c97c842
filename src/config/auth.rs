//! The front door's settings: TLS (`listen.tls`) and authentication (`auth`), validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::Secret;
use super::raw_auth::{RawApiKey, RawAuth, RawJwt, RawTls, RawUpstreamOAuth};
use super::validate::{Issues, duration, hex32, http_url};

/// `listen.tls:` after validation.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// CA bundle for client certificates; `None`: no client certificates are asked for.
    pub client_ca_file: Option<PathBuf>,
    /// Whether a client certificate is required when `client_ca_file` is set.
    pub client_auth: ClientAuth,
    /// How often the certificate files are checked for changes (default 30 s).
    pub reload_interval: Duration,
}

/// Whether a listener with a client CA requires client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A handshake without a valid client certificate fails.
    Required,
    /// A client may present no certificate; one it presents must be valid.
    Optional,
}

/// `auth:` after validation: an OAuth 2.1 resource server (MCP `basic/authorization`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The canonical resource identifier (RFC 8707 §2, RFC 9728 `resource`): `listen.public_url`.
    pub resource: Url,
    /// Bearer JWT validation, if configured.
    pub jwt: Option<JwtConfig>,
    /// Static API keys.
    pub api_keys: Vec<ApiKeyConfig>,
    /// `authorization_servers` of the protected resource metadata.
    pub authorization_servers: Vec<Url>,
    /// `scopes_supported` of the protected resource metadata.
    pub scopes_supported: Vec<String>,
    /// Scopes every request needs.
    pub required_scopes: Vec<String>,
    /// Extra scopes per JSON-RPC method.
    pub method_scopes: BTreeMap<String, Vec<String>>,
}

/// `auth.jwt:` after validation.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// The issuer's JWKS, if configured.
    pub jwks: Option<JwksConfig>,
    /// Static key files (each checked to hold at least one usable key).
    pub key_files: Vec<PathBuf>,
    /// Accepted algorithms: asymmetric only.
    pub algorithms: Vec<Algorithm>,
    /// Tolerated clock skew on `exp` and `nbf` (default 60 s).
    pub leeway: Duration,
    /// Claims required besides `iss`, `aud`, `exp` (default `[sub]`: the subject is the
    /// caller's identity, which sessions, task ids and policies bind to).
    pub required_claims: Vec<String>,
    /// Claim names for groups, roles, scopes and client id.
    pub claims: ClaimNames,
}

/// Where the issuer's keys are fetched and how often.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// The JWKS URL.
    pub url: Url,
    /// Period of the scheduled refetch (default 10 min).
    pub refresh_interval: Duration,
    /// Least time between two refetches caused by an unknown `kid` (default 30 s).
    pub min_refetch_interval: Duration,
}

/// Names of the claims a [`crate::auth::Principal`] is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// Groups claim (default `groups`).
    pub groups: String,
    /// Roles claim (default `roles`).
    pub roles: String,
    /// Scope claim (default `scope`).
    pub scope: String,
    /// Client id claim (default `client_id`, falling back to `azp`).
    pub client_id: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            groups: "groups".into(),
            roles: "roles".into(),
            scope: "scope".into(),
            client_id: "client_id".into(),
        }
    }
}

/// One static API key.
#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    /// Its name.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Scopes it grants.
    pub scopes: Vec<String>,
    /// Groups of its principal.
    pub groups: Vec<String>,
}

/// `upstreams[].http.oauth:` after validation: how the gateway authenticates to an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamOAuthConfig {
    /// Token endpoint.
    pub token_url: Url,
    /// Client id.
    pub client_id: String,
    /// Client secret (sent with HTTP Basic, RFC 6749 §2.3.1).
    pub client_secret: Secret,
    /// Scopes to request.
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator.
    pub resource: String,
    /// `audience` parameter, if any.
    pub audience: Option<String>,
    /// Exchange callers' tokens (RFC 8693).
    pub token_exchange: bool,
}

/// Algorithms mcpgate accepts: asymmetric signatures only, so a public key can never be used
/// as an HMAC secret (the RS/HS confusion attack) and `none` is never valid.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

pub(super) fn tls(raw: &RawTls, base: &Path, issues: &mut Issues) -> Option<TlsConfig> {
    let file = |key: &str, value: &str, issues: &mut Issues| {
        let path = base.join(value);
        issues.check(
            &format!("listen.tls.{key}"),
            std::fs::metadata(&path)
                .map(|_| path.clone())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        )
    };
    let cert_file = file("cert_file", &raw.cert_file, issues);
    let key_file = file("key_file", &raw.key_file, issues);
    let client_ca_file = match &raw.client_ca_file {
        None => Some(None),
        Some(f) => file("client_ca_file", f, issues).map(Some),
    };
    let client_auth = issues.check(
        "listen.tls.client_auth",
        match (raw.client_auth.as_deref(), &raw.client_ca_file) {
            (Some(_), None) => Err("needs listen.tls.client_ca_file".into()),
            (None | Some("required"), _) => Ok(ClientAuth::Required),
            (Some("optional"), _) => Ok(ClientAuth::Optional),
            (Some(other), _) => Err(format!("{other:?} is not one of required, optional")),
        },
    );
    let reload_interval = issues.check(
        "listen.tls.reload_interval",
        duration(raw.reload_interval.as_deref(), Duration::from_secs(30)),
    );
    Some(TlsConfig {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file: client_ca_file?,
        client_auth: client_auth?,
        reload_interval: reload_interval?,
    })
}

pub(super) fn auth(
    raw: &RawAuth,
    public_url: Option<&Url>,
    base: &Path,
    issues: &mut Issues,
) -> Option<AuthConfig> {
    let Some(resource) = public_url else {
        issues.push(
            "listen.public_url",
            "required with `auth`: it is the resource identifier tokens are issued for (RFC 8707)",
        );
        return None;
    };
    if raw.jwt.is_none() && raw.api_keys.is_empty() {
        issues.push("auth", "configure `jwt`, `api_keys` or both");
    }
    let jwt = match &raw.jwt {
        None => Some(None),
        Some(j) => jwt(j, resource, base, issues).map(Some),
    };
    let mut names = std::collections::HashSet::new();
    let api_keys = raw
        .api_keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            if !names.insert(k.name.as_str()) {
                issues.push(
                    format!("auth.api_keys[{i}].name"),
                    format!("duplicate API key name {:?}", k.name),
                );
            }
            api_key(k, &format!("auth.api_keys[{i}]"), issues)
        })
        .collect();
    let authorization_servers = raw
        .authorization_servers
        .iter()
        .enumerate()
        .filter_map(|(i, u)| issues.check(&format!("auth.authorization_servers[{i}]"), http_url(u)))
        .collect();
    for (method, scopes) in &raw.method_scopes {
        if scopes.is_empty() {
            issues.push(
                format!("auth.method_scopes.{method}"),
                "list at least one scope",
            );
        }
    }
    Some(AuthConfig {
        resource: resource.clone(),
        jwt: jwt?,
        api_keys,
        authorization_servers,
        scopes_supported: raw.scopes_supported.clone(),
        required_scopes: raw.required_scopes.clone(),
        method_scopes: raw.method_scopes.clone(),
    })
}

fn jwt(raw: &RawJwt, resource: &Url, base: &Path, issues: &mut Issues) -> Option<JwtConfig> {
    if raw.issuer.trim().is_empty() {
        issues.push("auth.jwt.issuer", "must not be empty");
    }
    if raw.jwks_url.is_none() && raw.key_files.is_empty() {
        issues.push("auth.jwt", "set `jwks_url`, `key_files` or both");
    }
    if raw.algorithms.is_empty() {
        issues.push(
            "auth.jwt.algorithms",
            "list at least one algorithm, e.g. [RS256]",
        );
    }
    let algorithms: Vec<Algorithm> = raw
        .algorithms
        .iter()
        .enumerate()
        .filter_map(|(i, a)| issues.check(&format!("auth.jwt.algorithms[{i}]"), algorithm(a)))
        .collect();
    let jwks = match &raw.jwks_url {
        None => Some(None),
        Some(u) => {
            let url = issues.check("auth.jwt.jwks_url", http_url(u));
            let refresh = issues.check(
                "auth.jwt.jwks_refresh_interval",
                duration(
                    raw.jwks_refresh_interval.as_deref(),
                    Duration::from_secs(600),
                ),
            );
            let refetch = issues.check(
                "auth.jwt.jwks_min_refetch_interval",
                duration(
                    raw.jwks_min_refetch_interval.as_deref(),
                    Duration::from_secs(30),
                ),
            );
            match (url, refresh, refetch) {
                (Some(url), Some(refresh_interval), Some(min_refetch_interval)) => {
                    Some(Some(JwksConfig {
                        url,
                        refresh_interval,
                        min_refetch_interval,
                    }))
                }
                _ => None,
            }
        }
    };
    let key_files = raw
        .key_files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let path = base.join(f);
            issues
                .check(
                    &format!("auth.jwt.key_files[{i}]"),
                    crate::auth::keys::load_file(&path),
                )
                .map(|_| path)
        })
        .collect();
    let leeway = issues.check(
        "auth.jwt.leeway",
        duration(raw.leeway.as_deref(), Duration::from_secs(60)),
    );
    let audiences = if raw.audiences.is_empty() {
        vec![resource.to_string()]
    } else {
        raw.audiences.clone()
    };
    let defaults = ClaimNames::default();
    let claims = ClaimNames {
        groups: raw.claims.groups.clone().unwrap_or(defaults.groups),
        roles: raw.claims.roles.clone().unwrap_or(defaults.roles),
        scope: raw.claims.scope.clone().unwrap_or(defaults.scope),
        client_id: raw.claims.client_id.clone().unwrap_or(defaults.client_id),
    };
    Some(JwtConfig {
        issuer: raw.issuer.clone(),
        audiences,
        jwks: jwks?,
        key_files,
        algorithms,
        leeway: leeway?,
        required_claims: raw
            .required_claims
            .clone()
            .unwrap_or_else(|| vec!["sub".into()]),
        claims,
    })
}

pub(super) fn upstream_oauth(
    raw: &RawUpstreamOAuth,
    upstream_url: Option<&Url>,
    at: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<UpstreamOAuthConfig> {
    let token_url = issues.check(&format!("{at}.token_url"), http_url(&raw.token_url));
    if raw.client_id.trim().is_empty() {
        issues.push(format!("{at}.client_id"), "must not be empty");
    }
    let secret = match (&raw.client_secret, &raw.client_secret_file) {
        (Some(s), None) => issues.check(&format!("{at}.client_secret"), super::expand_env(s, env)),
        (None, Some(f)) => {
            let path = base.join(f);
            issues.check(
                &format!("{at}.client_secret_file"),
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read {}: {e}", path.display())),
            )
        }
        _ => {
            issues.push(
                at,
                "set exactly one of `client_secret` or `client_secret_file`",
            );
            None
        }
    };
    let resource = raw
        .resource
        .clone()
        .or_else(|| upstream_url.map(Url::to_string));
    Some(UpstreamOAuthConfig {
        token_url: token_url?,
        client_id: raw.client_id.clone(),
        client_secret: Secret::new(secret?),
        scopes: raw.scopes.clone(),
        resource: resource?,
        audience: raw.audience.clone(),
        token_exchange: raw.token_exchange,
    })
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = Algorithm::from_str(name).map_err(|_| {
        format!("{name:?} is not a JWS algorithm; use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")
    })?;
    if ASYMMETRIC.contains(&alg) {
        Ok(alg)
    } else {
        Err(format!(
            "{name} is a symmetric (HMAC) algorithm: a resource server must verify with the issuer's public keys, never a shared secret"
        ))
    }
}

fn api_key(raw: &RawApiKey, at: &str, issues: &mut Issues) -> Option<ApiKeyConfig> {
    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        issues.push(
            format!("{at}.name"),
            "use letters, digits, '-', '_' and '.' only",
        );
    }
    let sha256 = issues.check(
        &format!("{at}.sha256"),
        hex32(raw.sha256.trim()).ok_or_else(|| {
            "must be 64 hex characters: the SHA-256 of the key, never the key itself".to_string()
        }),
    )?;
    Some(ApiKeyConfig {
        name: raw.name.clone(),
        sha256,
        scopes: raw.scopes.clone(),
        groups: raw.groups.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn issues(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml, Path::new("t.yaml"), Path::new("."), &|_| None) {
            Err(ConfigError::Invalid { issues }) => issues.iter().map(|i| i.to_string()).collect(),
            other => panic!("expected issues, got {other:?}"),
        }
    }

    const UPSTREAM: &str = "upstreams: [{ id: a, stdio: { command: x } }]\n";

    #[test]
    fn symmetric_algorithms_and_missing_pieces_are_refused() {
        let found = issues(&format!(
            "listen: {{ addr: 127.0.0.1:0, public_url: https://mcp.example.com/mcp }}\n{UPSTREAM}\
             auth:\n  jwt: {{ issuer: https://idp/, algorithms: [RS256, HS256, none] }}\n  \
             api_keys: [{{ name: ci, sha256: abc }}]\n"
        ));
        let text = found.join("\n");
        assert!(
            text.contains("auth.jwt.algorithms[1]: HS256 is a symmetric"),
            "{text}"
        );
        assert!(text.contains("auth.jwt.algorithms[2]"), "{text}");
        assert!(
            text.contains("auth.jwt: set `jwks_url`, `key_files` or both"),
            "{text}"
        );
        assert!(
            text.contains("auth.api_keys[0].sha256: must be 64 hex"),
            "{text}"
        );
    }

    #[test]
    fn auth_needs_the_public_url_and_exposure_needs_tls() {
        let text = issues(&format!(
            "listen: {{ addr: 0.0.0.0:8080 }}\n{UPSTREAM}auth: {{ api_keys: [] }}\n"
        ))
        .join("\n");
        assert!(
            text.contains("listen.public_url: required with `auth`"),
            "{text}"
        );
        assert!(
            text.contains("0.0.0.0:8080 is not a loopback address"),
            "{text}"
        );
        let text = issues(&format!(
            "listen: {{ addr: 0.0.0.0:8080, plain_http: true, tls: {{ cert_file: a, key_file: b }} }}\n{UPSTREAM}"
        ))
        .join("\n");
        assert!(
            text.contains("listen.plain_http: contradicts listen.tls"),
            "{text}"
        );
        assert!(text.contains("listen.tls.cert_file: cannot read"), "{text}");
    }
}
