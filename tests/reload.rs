//! Configuration reload in process: a reload that would leave the policy files naming a
//! removed upstream is refused and changes nothing; added, changed and removed upstreams apply
//! (an unchanged one is the same object, keeping its connections); the outcomes are counted.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use mcpgate::policy::reload::Outcome;
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, sample};

/// Writes the configuration file with upstreams `ids` (each a mock at `addr`; `m` with an
/// extra header when `header` is set).
fn write(path: &Path, addr: std::net::SocketAddr, policies: &Path, ids: &[&str], header: bool) {
    let mut upstreams = String::new();
    for id in ids {
        let headers = if header && *id == "m" {
            ", headers: { x-tenant: blue }"
        } else {
            ""
        };
        upstreams.push_str(&format!(
            "  - {{ id: {id}, http: {{ url: 'http://{addr}/mcp'{headers} }} }}\n"
        ));
    }
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
{upstreams}namespacing: {{ prefix: always }}
policies: {{ dir: '{}', mode: audit }}
shutdown: {{ drain_delay: 0s }}
",
        policies.display()
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

async fn tools(client: &Client) -> Vec<String> {
    let (tools, _) = client.list_all("tools/list", "tools").await;
    let mut names: Vec<String> = tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.retain(|n| n.ends_with("__echo"));
    names
}

#[tokio::test]
async fn reloads_apply_upstream_changes_and_refuse_what_the_policies_forbid() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("org.yaml"),
        "roles:\n  - name: all\n    subjects: [{ claim: sub, any_of: [x] }]\n    allow:\n      tools: [\"b/echo\", \"m/*\"]\n",
    )
    .unwrap();
    let path = dir.path().join("mcpgate.yaml");
    write(&path, addr, &policies, &["m", "b"], false);
    let gw = mcpgate::app::start(mcpgate::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let client = Client::new(&gw);
    assert_eq!(tools(&client).await, ["b__echo", "m__echo"]);
    let m_before = gw.catalogue.upstreams().get("m").unwrap();

    // The policies name b: removing it is refused whole (c is not added either).
    write(&path, addr, &policies, &["m", "c"], false);
    assert_eq!(gw.reload().await, Outcome::Rejected);
    assert_eq!(tools(&client).await, ["b__echo", "m__echo"]);

    // Nothing changed in the file since the last good load: unchanged.
    write(&path, addr, &policies, &["m", "b"], false);
    assert_eq!(gw.reload().await, Outcome::Unchanged);

    // c added: m and b are kept as they are.
    write(&path, addr, &policies, &["m", "b", "c"], false);
    assert_eq!(gw.reload().await, Outcome::Applied);
    assert_eq!(tools(&client).await, ["b__echo", "c__echo", "m__echo"]);
    let m_after = gw.catalogue.upstreams().get("m").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&m_before, &m_after),
        "unchanged upstream kept"
    );

    // m changed (a header): replaced, still listed; c removed.
    write(&path, addr, &policies, &["m", "b"], true);
    assert_eq!(gw.reload().await, Outcome::Applied);
    assert_eq!(tools(&client).await, ["b__echo", "m__echo"]);
    let m_changed = gw.catalogue.upstreams().get("m").unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&m_before, &m_changed),
        "changed upstream rebuilt"
    );
    assert_eq!(m_changed.config().transport, {
        let cfg = mcpgate::config::Config::load(&path).unwrap();
        cfg.upstreams[0].transport.clone()
    });
    let reply = client
        .modern(
            "tools/call",
            serde_json::json!({"name": "m__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(reply.result()["content"][0]["text"], "hi");

    let metrics = support::metrics(&gw).await;
    for (outcome, n) in [("applied", 2.0), ("rejected", 1.0), ("unchanged", 1.0)] {
        let series = format!("mcpgate_config_reloads_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&metrics, &series), n, "{outcome}");
    }
    // Once nothing holds the removed upstream, it is stopped and its series go.
    support::eventually(5, "the removed upstream's series are gone", || async {
        !support::metrics(&gw).await.contains("upstream=\"c\"")
    })
    .await;
    gw.shutdown().await;
}
