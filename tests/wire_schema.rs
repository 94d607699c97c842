//! What the gateway emits validates against the official MCP JSON schema of the era it speaks:
//! the schemas the official conformance suite (npm `@modelcontextprotocol/conformance`) bundles,
//! extracted by `scripts/setup-e2e.sh` to `.e2e/mcp-schema/<version>/schema.json` (or
//! `MCP_SCHEMA_DIR`).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, gateway, stdio_mock};

fn schema_dir() -> PathBuf {
    std::env::var_os("MCP_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".e2e/mcp-schema"))
}

/// Validates `instance` against `$defs/<definition>` of the schema of `version`.
fn check(version: &str, definition: &str, instance: &Value) {
    let path = schema_dir().join(version).join("schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/setup-e2e.sh extracts the schemas)",
            path.display()
        )
    });
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    schema["$ref"] = json!(format!("#/$defs/{definition}"));
    let validator = jsonschema::validator_for(&schema).expect("the official schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{definition} ({version}) rejects {instance}:\n{}",
        errors.join("\n")
    );
}

/// Requests both eras answer, with the result definition each answer must match.
fn common_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("tools/list", json!({}), "ListToolsResult"),
        ("prompts/list", json!({}), "ListPromptsResult"),
        ("resources/list", json!({}), "ListResourcesResult"),
        (
            "resources/templates/list",
            json!({}),
            "ListResourceTemplatesResult",
        ),
        (
            "tools/call",
            json!({"name": "old__link", "arguments": {}}),
            "CallToolResult",
        ),
        (
            "tools/call",
            json!({"name": "pipe__echo", "arguments": {"message": "m"}}),
            "CallToolResult",
        ),
        (
            "resources/read",
            json!({"uri": "old+mock://doc/1"}),
            "ReadResourceResult",
        ),
        (
            "prompts/get",
            json!({"name": "old__greet", "arguments": {"who": "x"}}),
            "GetPromptResult",
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "old__greet"}, "argument": {"name": "who", "value": "a"}}),
            "CompleteResult",
        ),
    ]
}

#[tokio::test]
async fn emitted_messages_match_the_official_schemas() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: old, http: {{ url: 'http://{addr}/mcp' }} }}\n  - {{ id: pipe, stdio: {} }}\n",
        stdio_mock("modern")
    ))
    .await;
    let client = Client::new(&gw);

    // Legacy era, 2025-11-25.
    let legacy = "2025-11-25";
    let init = client
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": legacy, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}), &[])
        .await;
    check(legacy, "JSONRPCResultResponse", &init.body);
    check(legacy, "InitializeResult", init.result());
    let sid = init.headers["mcp-session-id"].to_str().unwrap().to_string();
    for (method, params, def) in common_cases() {
        let r = client.legacy(&sid, method, params).await;
        check(legacy, "JSONRPCResultResponse", &r.body);
        check(legacy, def, r.result());
    }
    for bad in [
        client
            .legacy(&sid, "tools/call", json!({"name": "nope", "arguments": {}}))
            .await,
        client.legacy(&sid, "no/such/method", json!({})).await,
        client.post(&json!({"hello": 1}), &[]).await,
    ] {
        check(legacy, "JSONRPCErrorResponse", &bad.body);
    }

    // Modern era, 2026-07-28.
    let modern = "2026-07-28";
    let discover = std::iter::once(("server/discover", json!({}), "DiscoverResult"));
    for (method, params, def) in discover.chain(common_cases()) {
        let r = client.modern(method, params).await;
        check(modern, "JSONRPCResultResponse", &r.body);
        check(modern, def, r.result());
    }
    let unsupported = client
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}}),
            &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")])
        .await;
    check(modern, "UnsupportedProtocolVersionError", &unsupported.body);
    let mismatch = client
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}),
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "prompts/list")])
        .await;
    check(modern, "HeaderMismatchError", &mismatch.body);
    let unknown = client
        .modern("tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    check(modern, "JSONRPCErrorResponse", &unknown.body);
    gw.shutdown().await;
}
