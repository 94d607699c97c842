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
    mock: std::sync::Arc<mock_http::Mock>,
}

async fn setup(mode: &str) -> Setup {
    setup_with(POLICY, mode, MockSpec::new(MockEra::Modern), "").await
}

/// A gateway with policy `policy` in front of upstream `m` (a mock serving `spec`), plus the
/// upstreams in `more` (YAML list items).
async fn setup_with(policy: &str, mode: &str, spec: MockSpec, more: &str) -> Setup {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let (addr, mock, task) = mock_http::start(spec).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.yaml"), policy).unwrap();
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
{more}
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
        mock,
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

/// What the kubelet does to a mounted ConfigMap (its atomic writer): the files live in a
/// timestamped directory, `..data` links to it and each key is a link through `..data`; an
/// update writes a new directory, points `..data_tmp` at it, renames that over `..data` (one
/// atomic step) and removes the old directory. The keys' own links never change.
fn kubelet_write(dir: &std::path::Path, generation: u32, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let stamped = format!("..2026_12_03_01_00_{generation:02}.{}", 100 + generation);
    std::fs::create_dir(dir.join(&stamped)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(&stamped).join(name), text).unwrap();
    }
    symlink(&stamped, dir.join("..data_tmp")).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        // A key's link is made once (atomically replacing a plain file of that name).
        let link = dir.join(name);
        if !std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            let tmp = dir.join(format!(".{name}.link"));
            symlink(format!("..data/{name}"), &tmp).unwrap();
            std::fs::rename(tmp, link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_update_by_the_kubelets_atomic_swap_applies_live() {
    let s = setup("enforce").await;
    // The directory becomes a ConfigMap mount: the same policy, now behind ..data.
    kubelet_write(s.dir.path(), 1, &[("org.yaml", POLICY)]);
    eventually(10, "the mounted set is in force", || async {
        tools(&s.analyst).await == ["m__echo"]
    })
    .await;
    // Two updates in a row, each one atomic swap of ..data.
    let more = POLICY.replace("tools: [\"m/echo\"]", "tools: [\"m/echo\", \"m/link\"]");
    kubelet_write(s.dir.path(), 2, &[("org.yaml", &more)]);
    eventually(10, "the first update applies", || async {
        tools(&s.analyst).await == ["m__echo", "m__link"]
    })
    .await;
    kubelet_write(s.dir.path(), 3, &[("org.yaml", POLICY)]);
    eventually(10, "the second update applies", || async {
        tools(&s.analyst).await == ["m__echo"]
    })
    .await;
    let metrics = support::metrics(&s.gw).await;
    assert!(
        metrics.contains("mcpgate_policy_reloads_total{outcome=\"rejected\"} 0"),
        "no swap was seen half-done: {metrics}"
    );
    assert!(
        !metrics.contains("mcpgate_policy_reloads_total{outcome=\"applied\"} 0"),
        "{metrics}"
    );
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

/// Resource and completion rules: what the security team wrote is what is enforced, whatever
/// the client puts next to what is routed and however it spells a URI.
const EDGES: &str = r#"
roles:
  - name: readers
    subjects:
      - claim: groups
        equals: analysts
    allow:
      prompts: ["m/greet"]
      completion: ["m/*"]
      resources: ["m/mock://doc/public/*"]
      resource_templates: ["m/*"]
    deny:
      completion: ["m/mock://doc/{id}"]
      resources: ["m/mock://doc/secret*"]
      resource_templates: ["m/mock://doc/{id}"]
"#;

/// The `uri` the mock last received in a `resources/read`.
fn last_read(mock: &mock_http::Mock) -> Value {
    mock.requests_for("resources/read").last().unwrap().1["params"]["uri"].clone()
}

#[tokio::test]
async fn completion_is_authorized_on_what_is_routed() {
    let s = setup_with(EDGES, "enforce", MockSpec::new(MockEra::Modern), "").await;
    let complete = |reference: Value| {
        let c = &s.analyst;
        async move {
            c.modern(
                "completion/complete",
                json!({"ref": reference, "argument": {"name": "id", "value": "x"}}),
            )
            .await
        }
    };
    let prompt = complete(json!({"type": "ref/prompt", "name": "m__greet"})).await;
    assert_eq!(prompt.result()["completion"]["values"][0], "x-done");
    // An allowed prompt's name next to a denied template: the template is what is routed.
    let smuggled =
        complete(json!({"type": "ref/resource", "uri": "m+mock://doc/{id}", "name": "m__greet"}))
            .await;
    assert_eq!(smuggled.error_code(), -32602, "{}", smuggled.body);
    assert!(
        smuggled.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Resource not found"),
        "{}",
        smuggled.body
    );
    // The other way round, the upstream gets only the member `type` selects.
    let prompt_with_uri =
        complete(json!({"type": "ref/prompt", "name": "m__greet", "uri": "m+mock://doc/{id}"}))
            .await;
    assert_eq!(
        prompt_with_uri.result()["x-ref"],
        json!({"type": "ref/prompt", "name": "greet"})
    );
    // Braces are literal: the denied template is hidden from the list too.
    let (templates, _) = s
        .analyst
        .list_all("resources/templates/list", "resourceTemplates")
        .await;
    assert!(templates.is_empty(), "{templates:?}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn resource_uris_are_normalized_before_matching_and_forwarded_as_authorized() {
    let s = setup_with(EDGES, "enforce", MockSpec::new(MockEra::Modern), "").await;
    let read = |uri: &str| {
        let c = &s.analyst;
        let uri = uri.to_string();
        async move { c.modern("resources/read", json!({ "uri": uri })).await }
    };
    for escape in [
        "m+mock://doc/public/../secret.md",
        "m+mock://doc/public/./../secret.md",
        "m+mock://doc/public/%2E%2E/secret.md",
        "m+mock://doc/public/../%73ecret.md",
        "m+MOCK://DOC/public/../secret.md",
    ] {
        let reply = read(escape).await;
        assert_eq!(reply.error_code(), -32602, "{escape}: {}", reply.body);
    }
    let ambiguous = read("m+mock://doc/public/..%2Fsecret.md").await;
    assert_eq!(ambiguous.error_code(), -32602);
    assert!(
        ambiguous.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ambiguous"),
        "{}",
        ambiguous.body
    );
    assert!(
        s.mock.requests_for("resources/read").is_empty(),
        "nothing refused reached the upstream"
    );
    let ok = read("m+mock://doc/public/./a/../b.md").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        last_read(&s.mock),
        "mock://doc/public/b.md",
        "the upstream gets the URI that was authorized"
    );
    s.gw.shutdown().await;
}

/// A modern mock whose `regional` tool mirrors its `region` argument into `Mcp-Param-Region`.
fn regional_spec() -> MockSpec {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tools.push(
        json!({"name": "regional", "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"}}}}),
    );
    spec
}

#[tokio::test]
async fn denied_looks_absent_to_header_checks_and_instructions() {
    let more = format!(
        "  - {{ id: pipe, stdio: {} }}",
        support::stdio_mock("modern")
    );
    let policy = POLICY.replace("tools: [\"m/*\"]", "tools: [\"m/*\", \"pipe/*\"]");
    let s = setup_with(&policy, "enforce", regional_spec(), &more).await;
    // Without the Mcp-Param-Region header: the allowed caller is told of the mismatch, the
    // denied one hears of an unknown tool, as for a tool that does not exist.
    let args = json!({"name": "m__regional", "arguments": {"region": "eu"}});
    let sre = s.sre.modern("tools/call", args.clone()).await;
    assert_eq!(
        (sre.status, sre.error_code()),
        (400, -32020),
        "{}",
        sre.body
    );
    let analyst = s.analyst.modern("tools/call", args).await;
    assert_eq!(
        (analyst.status, analyst.error_code()),
        (200, -32602),
        "{}",
        analyst.body
    );
    assert_eq!(
        analyst.body["error"]["message"],
        "Unknown tool: m__regional"
    );
    // Instructions of an upstream the caller can see nothing of are not given to it, in
    // either era.
    for (who, sees_pipe) in [(&s.sre, true), (&s.analyst, false)] {
        let discover = who.modern("server/discover", json!({})).await;
        let init = who
            .post(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}}),
                &[],
            )
            .await;
        for result in [discover.result(), init.result()] {
            let text = result["instructions"].as_str().unwrap_or_default();
            assert_eq!(text.contains("Modern stdio mock."), sees_pipe, "{result}");
        }
    }
    s.gw.shutdown().await;
}
