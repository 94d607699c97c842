//! Several replicas of one gateway (in process, one session key), with and without the shared
//! store (`limits.store: redis`, a real redis-server): a legacy session opened on one replica
//! is served by the others; a `DELETE` on one replica makes the session unknown on every
//! replica sharing the store — also on one started afterwards — and, without the store, on that
//! replica only.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::mock_http::{self, MockEra, MockSpec};
use support::redis::Redis;
use support::{Client, eventually, gateway};

struct Cluster {
    replicas: Vec<mcpgate::app::Running>,
    yaml: String,
    _dir: tempfile::TempDir,
}

/// `n` replicas in front of the mock at `upstream`, sharing one session key, and Redis when
/// `redis` is given.
async fn cluster(n: usize, upstream: std::net::SocketAddr, redis: Option<&Redis>) -> Cluster {
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
        "listen: {{ addr: 127.0.0.1:0 }}
session: {{ key_file: '{}' }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{upstream}/mcp' }} }}
{limits}",
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

async fn status(client: &Client, sid: &str) -> u16 {
    client.legacy(sid, "tools/list", json!({})).await.status
}

#[tokio::test]
async fn a_delete_on_one_replica_ends_the_session_on_every_replica_sharing_the_store() {
    let redis = Redis::start();
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(3, addr, Some(&redis)).await;
    let clients: Vec<Client> = c.replicas.iter().map(Client::new).collect();
    let sid = clients[0].initialize().await;
    for client in &clients {
        assert_eq!(
            status(client, &sid).await,
            200,
            "any replica serves the session"
        );
    }
    let end = clients[1]
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(end.status, 200);
    for (i, client) in clients.iter().enumerate() {
        eventually(
            5,
            &format!("replica {i} refuses the ended session"),
            || async { status(client, &sid).await == 404 },
        )
        .await;
    }
    // A replica started after the DELETE knows it from the store.
    let late = gateway(&c.yaml).await;
    let late_client = Client::new(&late);
    eventually(5, "a later replica refuses the ended session", || async {
        status(&late_client, &sid).await == 404
    })
    .await;
    // Other sessions are untouched.
    let other = clients[2].initialize().await;
    assert_eq!(status(&clients[0], &other).await, 200);
    late.shutdown().await;
    for r in c.replicas {
        r.shutdown().await;
    }
}

#[tokio::test]
async fn without_the_store_a_delete_ends_the_session_on_its_replica_only() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(2, addr, None).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let sid = a.initialize().await;
    let end = b
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(end.status, 200);
    assert_eq!(status(&b, &sid).await, 404);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        status(&a, &sid).await,
        200,
        "per replica: the other still serves it"
    );
    for r in c.replicas {
        r.shutdown().await;
    }
}
