//! RBAC policies end to end with signed tokens: two principals see different catalogues from
//! one gateway and get "unknown tool" for each other's tools; a policy edit while clients are
//! connected changes what they see and sends list_changed; an invalid edit changes nothing;
//! audit mode decides and allows.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::idp::{ISSUER, Jwks, RESOURCE, TestKey, claims};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, eventually, gateway};

const POLICY: &str = r#"
roles:
  - name: sre
    subjects:
      - claim: groups
        any_of: [sre]
    allow:
      tools: ["m/*"]
      prompts: ["m/*"]
      resources: ["m/*"]
    deny:
      tools: ["m/garbage", "m/http500"]
  - name: analysts
    subjects:
      - claim: groups
        equals: analysts
    allow:
      tools: ["m/echo"]
"#;

struct Setup {
    gw: mcpgate::app::Running,
    sre: Client,
    analyst: Client,
    dir: tempfile::TempDir,
    _jwks: Jwks,
    _upstream: tokio::task::JoinHandle<()>,
}

async fn setup(mode: &str) -> Setup {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let (addr, _mock, task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.yaml"), POLICY).unwrap();
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
namespacing: {{ prefix: always }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{}', algorithms: [RS256] }}
policies: {{ dir: '{}', mode: {mode} }}
",
        jwks.url(),
        dir.path().display()
    ))
    .await;
    let client = Client::new(&gw);
    let token = |sub: &str, group: &str| {
        let mut c = claims(sub);
        c["groups"] = json!([group]);
        key.sign(&c)
    };
    Setup {
        sre: client.bearer(&token("alice", "sre")),
        analyst: client.bearer(&token("bob", "analysts")),
        gw,
        dir,
        _jwks: jwks,
        _upstream: task,
    }
}

async fn tools(client: &Client) -> Vec<String> {
    let (tools, _) = client.list_all("tools/list", "tools").await;
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn call(client: &Client, tool: &str) -> support::Reply {
    client
        .modern(
            "tools/call",
            json!({"name": tool, "arguments": {"message": "hi"}}),
        )
        .await
}

#[tokio::test]
async fn two_principals_see_different_catalogues() {
    let s = setup("enforce").await;
    let sre = tools(&s.sre).await;
    assert_eq!(sre, ["m__ask", "m__echo", "m__fail", "m__link", "m__slow"]);
    assert_eq!(tools(&s.analyst).await, ["m__echo"]);
    assert_eq!(
        call(&s.analyst, "m__echo").await.result()["content"][0]["text"],
        "hi"
    );

    for (who, tool) in [(&s.analyst, "m__fail"), (&s.sre, "m__garbage")] {
        let reply = call(who, tool).await;
        assert_eq!(reply.error_code(), -32602, "{tool}");
        assert_eq!(
            reply.body["error"]["message"],
            format!("Unknown tool: {tool}"),
            "a denied tool answers exactly like one that does not exist"
        );
    }
    let (prompts, _) = s.analyst.list_all("prompts/list", "prompts").await;
    assert!(prompts.is_empty(), "no allow means deny");
    let read = s
        .analyst
        .modern("resources/read", json!({"uri": "m+mock://doc/1"}))
        .await;
    assert_eq!(read.error_code(), -32602);
    let read = s
        .sre
        .modern("resources/read", json!({"uri": "m+mock://doc/1"}))
        .await;
    assert_eq!(read.status, 200);

    let metrics = support::metrics(&s.gw).await;
    assert!(
        metrics.contains("mcpgate_policy_decisions_total{effect=\"deny\"} 3"),
        "{metrics}"
    );
    s.gw.shutdown().await;
}

fn edit(dir: &Path, text: &str) {
    let tmp = dir.join(".org.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("org.yaml")).unwrap();
}

#[tokio::test]
async fn a_policy_edit_applies_live_and_announces_the_change() {
    let s = setup("enforce").await;
    let sid = s.analyst.initialize().await;
    let mut stream = s.analyst.open_get_stream(&sid).await;
    assert_eq!(tools(&s.analyst).await, ["m__echo"]);

    // An invalid edit changes nothing and is counted.
    edit(
        s.dir.path(),
        &POLICY.replace("any_of: [sre]", "any_of: [sre]\n        glob: x"),
    );
    eventually(10, "the invalid edit is rejected", || async {
        support::metrics(&s.gw)
            .await
            .contains("mcpgate_policy_reloads_total{outcome=\"rejected\"}")
    })
    .await;
    assert_eq!(tools(&s.analyst).await, ["m__echo"]);

    // A valid edit gives analysts m/link too; the open stream hears of it.
    edit(
        s.dir.path(),
        &POLICY.replace("tools: [\"m/echo\"]", "tools: [\"m/echo\", \"m/link\"]"),
    );
    let notice = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("list_changed within 10 s")
        .unwrap();
    assert_eq!(notice["method"], "notifications/tools/list_changed");
    assert_eq!(tools(&s.analyst).await, ["m__echo", "m__link"]);
    assert_eq!(call(&s.analyst, "m__link").await.status, 200);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn audit_mode_decides_and_allows() {
    let s = setup("audit").await;
    assert_eq!(
        tools(&s.analyst).await.len(),
        7,
        "audit: everything is listed"
    );
    let reply = call(&s.analyst, "m__fail").await;
    assert_eq!(
        reply.result()["isError"],
        Value::Bool(true),
        "the call went ahead"
    );
    let metrics = support::metrics(&s.gw).await;
    assert!(
        metrics.contains("mcpgate_policy_decisions_total{effect=\"deny\"} 1"),
        "the deny was decided and counted: {metrics}"
    );
    s.gw.shutdown().await;
}
