//! Several in-process replicas of one gateway (one session key, optionally one Redis), and the
//! MRTR helpers that park a call on one replica and retry it on another: used by
//! tests/scale_out.rs and benches/mrtr_handoff.rs.

use serde_json::json;

use super::redis::Redis;
use super::{Client, gateway, stdio_mock};

/// Replicas of one gateway configuration.
pub struct Cluster {
    pub replicas: Vec<mcpgate::app::Running>,
    /// Their configuration (start another replica with it).
    pub yaml: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Shuts every replica down.
    pub async fn shutdown(self) {
        for r in self.replicas {
            r.shutdown().await;
        }
    }
}

/// The upstream entry of the HTTP mock at `addr`.
pub fn http(addr: std::net::SocketAddr) -> String {
    format!("{{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}")
}

/// The upstream entry of a legacy stdio mock (one process per replica).
pub fn stdio_legacy() -> String {
    format!("{{ id: pipe, stdio: {} }}", stdio_mock("legacy"))
}

/// `n` replicas in front of the `upstream` entry, sharing one session key, and Redis when
/// `redis` is given.
pub async fn cluster(n: usize, upstream: &str, redis: Option<&Redis>) -> Cluster {
    cluster_with(n, upstream, redis, "").await
}

/// [`cluster`] with `extra` YAML sections.
pub async fn cluster_with(n: usize, upstream: &str, redis: Option<&Redis>, extra: &str) -> Cluster {
    cluster_with_session(n, upstream, redis, "", extra).await
}

/// [`cluster_with`] with more `session:` fields (`, idle_timeout: 2s`).
pub async fn cluster_with_session(
    n: usize,
    upstream: &str,
    redis: Option<&Redis>,
    session: &str,
    extra: &str,
) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("session.key");
    std::fs::write(&key, "7".repeat(64)).unwrap();
    let limits = match redis {
        Some(r) => format!(
            "limits: {{ store: redis, redis: {{ url: '{}' }} }}\n",
            r.url()
        ),
        None => String::new(),
    };
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: 'https://mcp.example.com/mcp' }}
session: {{ key_file: '{}'{session} }}
upstreams:
  - {upstream}
{limits}{extra}",
        key.display()
    );
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(gateway(&yaml).await);
    }
    Cluster {
        replicas,
        yaml,
        _dir: dir,
    }
}

pub const ELICIT: &str = r#"{"elicitation": {}}"#;

pub fn ask(then_ms: u64, state: Option<&str>) -> serde_json::Value {
    let mut params = json!({"name": "ask", "arguments": {"then_ms": then_ms}});
    if let Some(state) = state {
        params["requestState"] = json!(state);
        params["inputResponses"] =
            json!({"upstream_request": {"action": "accept", "content": {"name": "Grace"}}});
    }
    params
}

/// Parks an `ask` call on `client`'s replica; returns its `requestState`.
pub async fn park(client: &Client, then_ms: u64) -> String {
    let first = client
        .modern_caps(
            "tools/call",
            ask(then_ms, None),
            serde_json::from_str(ELICIT).unwrap(),
        )
        .await;
    assert_eq!(first.result()["resultType"], "input_required");
    first.result()["requestState"].as_str().unwrap().to_string()
}

/// Retries a parked `ask` call with `state` and an accepted elicitation on `client`'s replica.
pub async fn retry(client: &Client, state: &str) -> super::Reply {
    client
        .modern_caps(
            "tools/call",
            ask(0, Some(state)),
            serde_json::from_str(ELICIT).unwrap(),
        )
        .await
}
