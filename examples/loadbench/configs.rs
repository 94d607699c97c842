//! The gateway configurations measured — minimal (one upstream, nothing else) and full
//! (everything on: JWT with the verified-token cache, RBAC policies of realistic size, every
//! rate limit, the breaker, the bulkhead, audit to a file with an HMAC key, metrics, JSON logs
//! without trace export) — and the issuer key that signs the benchmark's token.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The resource the full configuration's tokens are issued for.
pub const RESOURCE: &str = "https://mcp.bench.example/mcp";
/// Its issuer.
pub const ISSUER: &str = "https://idp.bench.example/";
/// Roles in the generated policy set.
const ROLES: usize = 30;

/// Which configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Minimal,
    Full,
}

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Full => "full",
        }
    }

    /// The client-facing name of the upstream's `echo` tool.
    pub fn echo(self, upstream: &str) -> String {
        match self {
            Self::Minimal => "echo".into(),
            Self::Full => format!("{upstream}__echo"),
        }
    }
}

/// The issuer's signing key and its JWKS document.
pub struct Issuer {
    encoding: EncodingKey,
    pub jwks: String,
}

impl Issuer {
    pub fn new() -> Self {
        use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = p256::SecretKey::random(&mut rand::thread_rng());
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8");
        let mut jwk: Value = serde_json::from_str(&key.public_key().to_jwk_string()).expect("JWK");
        jwk["kid"] = json!("bench-1");
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        Self {
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC PEM"),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    }

    /// A token for the benchmark's caller: three of the policy set's teams, an hour long.
    pub fn token(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let claims = json!({"iss": ISSUER, "aud": RESOURCE, "sub": "bench-user@example.com",
            "exp": now + 3600, "iat": now, "scope": "mcp", "client_id": "loadbench",
            "groups": ["team-3", "team-7", "team-12", "sre"]});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("bench-1".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

/// The YAML of `setup` in front of `upstreams` (ids, all at `upstream_addr`), speaking `era`
/// to them; files it needs (policies, keys) are written into `dir`.
pub fn gateway_yaml(
    setup: Setup,
    dir: &Path,
    upstream_addr: &str,
    era: &str,
    ids: &[String],
    page_size: usize,
) -> String {
    let upstreams: String = ids
        .iter()
        .map(|id| {
            let controls = match setup {
                Setup::Minimal => String::new(),
                Setup::Full => "    rate_limit: 1000000/s
    max_concurrency: 1024
    circuit_breaker: {}
    tools:
      echo: { rate_limit: 1000000/s, timeout: 10s }
      \"tool_*\": { rate_limit: 100000/s }
"
                .into(),
            };
            format!(
                "  - id: {id}\n    http: {{ url: 'http://{upstream_addr}/mcp' }}\n    era: {era}\n{controls}"
            )
        })
        .collect();
    let common = format!(
        "admin: {{ addr: 127.0.0.1:0 }}
catalogue: {{ page_size: {page_size} }}
upstreams:
{upstreams}"
    );
    match setup {
        Setup::Minimal => format!("listen: {{ addr: 127.0.0.1:0 }}\n{common}"),
        Setup::Full => {
            write_policies(dir, ids);
            std::fs::write(dir.join("session.key"), "5e".repeat(32)).expect("session key");
            std::fs::write(dir.join("audit.key"), "a7".repeat(32)).expect("audit key");
            format!(
                "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
{common}session: {{ key_file: session.key }}
namespacing: {{ prefix: always }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: 'http://{upstream_addr}/jwks', algorithms: [ES256] }}
  required_scopes: [mcp]
limits: {{ global: 1000000/s, per_principal: {{ rate: 1000000/s, burst: 100000 }} }}
policies: {{ dir: policies }}
audit: {{ path: audit/audit.jsonl, key_file: audit.key, when_full: block }}
telemetry: {{ log_format: json }}
"
            )
        }
    }
}

/// A policy set of realistic size: three files, `ROLES` roles matched on the `groups` claim,
/// each allowing and denying a handful of patterns over every upstream, some with rate limits.
fn write_policies(dir: &Path, ids: &[String]) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    for (file, roles) in ["platform", "product", "security"]
        .iter()
        .zip((0..ROLES).collect::<Vec<_>>().chunks(ROLES / 3))
    {
        let mut text = String::from("roles:\n");
        for &r in roles {
            let quoted = |patterns: Vec<String>| {
                patterns
                    .iter()
                    .map(|p| format!("\"{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let allow: Vec<String> = ids
                .iter()
                .flat_map(|id| {
                    [
                        format!("{id}/echo"),
                        format!("{id}/tool_{r}*"),
                        format!("{id}/tool_?{}", r % 10),
                    ]
                })
                .collect();
            let deny: Vec<String> = ids
                .iter()
                .map(|id| format!("{id}/tool_9{}", r % 10))
                .collect();
            let limit = if r % 4 == 0 {
                "    rate_limit: { rate: 1000000/s, burst: 100000 }\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "  - name: team-{r}\n    subjects:\n      - claim: groups\n        any_of: [team-{r}]\n{limit}    allow:\n      tools: [{}]\n      prompts: [\"{}/*\"]\n    deny:\n      tools: [{}]\n",
                quoted(allow),
                ids[0],
                quoted(deny)
            ));
        }
        std::fs::write(policies.join(format!("{file}.yaml")), text).expect("policy file");
    }
    std::fs::write(
        policies.join("sre.yaml"),
        format!(
            "roles:\n  - name: sre\n    subjects:\n      - claim: groups\n        any_of: [sre]\n    allow:\n      tools: [{}]\n",
            ids.iter().map(|id| format!("\"{id}/*\"")).collect::<Vec<_>>().join(", ")
        ),
    )
    .expect("policy file");
}
