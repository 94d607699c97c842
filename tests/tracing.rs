//! Tracing end to end: the client's W3C `traceparent` (header or `_meta`) reaches HTTP upstreams
//! as a header and in `_meta`, and stdio upstreams in `_meta`, under the gateway's own span; the
//! `mcpgate` binary with `telemetry.otlp` exports its spans in the client's trace to an OTLP/HTTP
//! receiver, logs JSON when the configuration says so, and no credential or redacted argument
//! appears in any of its outputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::idp::{ISSUER, Jwks, RESOURCE, TestKey, claims};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, gateway, sha256_hex, stdio_mock};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Trace id and parent id of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    (fields[1].to_string(), fields[2].to_string())
}

#[tokio::test]
async fn the_clients_trace_reaches_http_and_stdio_upstreams_under_the_gateways_span() {
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
  - {{ id: pipe, stdio: {} }}
namespacing: {{ prefix: always }}
",
        stdio_mock("modern")
    ))
    .await;
    let client = Client::new(&gw).with_header("traceparent", TRACEPARENT);
    let echo = |name: &str| json!({"name": name, "arguments": {"message": "hi"}});
    client.modern("tools/call", echo("m__echo")).await.result();
    let (headers, body) = mock
        .seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, b)| b["method"] == "tools/call")
        .cloned()
        .unwrap();
    let header = headers["traceparent"].to_str().unwrap().to_string();
    let (trace, parent) = parts(&header);
    assert_eq!(trace, TRACE, "the client's trace");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "under the gateway's span, not the client's"
    );
    assert_eq!(body["params"]["_meta"]["traceparent"], header.as_str());
    // stdio: in `_meta`.
    let r = client.modern("tools/call", echo("pipe__echo")).await;
    let meta = &r.result()["structuredContent"]["meta"];
    assert_eq!(parts(meta["traceparent"].as_str().unwrap()).0, TRACE);
    // `_meta.traceparent` names the request more precisely than a header a proxy may set.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut params = echo("pipe__echo");
    params["_meta"] = json!({"traceparent": other});
    let r = Client::new(&gw)
        .with_header("traceparent", TRACEPARENT)
        .modern("tools/call", params)
        .await;
    let meta = &r.result()["structuredContent"]["meta"];
    assert_eq!(
        parts(meta["traceparent"].as_str().unwrap()).0,
        "0af7651916cd43dd8448eb211c80319c"
    );
    // An invalid value is not a trace: nothing is passed on.
    let r = Client::new(&gw)
        .with_header("traceparent", "00-zz-yy-01")
        .modern("tools/call", echo("pipe__echo"))
        .await;
    assert!(
        r.result()["structuredContent"]["meta"]
            .get("traceparent")
            .is_none()
    );
    // Legacy sessions too.
    let sid = client.initialize().await;
    let r = client.legacy(&sid, "tools/call", echo("pipe__echo")).await;
    let meta = &r.result()["structuredContent"]["meta"];
    assert_eq!(parts(meta["traceparent"].as_str().unwrap()).0, TRACE);
    gw.shutdown().await;
}

/// Spans an OTLP/HTTP receiver got: (trace id hex, span name, attributes as text).
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// An OTLP/HTTP traces receiver (protobuf, `POST /v1/traces`).
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use prost::Message as _;
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for span in request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    let trace: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    let attributes = format!("{:?}", span.attributes);
                    sink.lock()
                        .unwrap()
                        .push((trace, span.name.clone(), attributes));
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let (addr, _task) = support::serve(app).await;
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_spans_in_the_clients_trace_logs_json_and_leaks_no_secret() {
    const UPSTREAM_SECRET: &str = "upstream-header-s3cret";
    const API_KEY: &str = "mk-live-fedcba9876543210";
    const PASSWORD: &str = "correct-horse-battery";
    let (receiver, spans) = otlp_receiver().await;
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: m
    http: {{ url: 'http://{addr}/mcp', headers: {{ Authorization: 'Bearer {UPSTREAM_SECRET}' }} }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{}', algorithms: [RS256] }}
  api_keys: [{{ name: robot, sha256: '{}' }}]
audit:
  path: '{}/audit.jsonl'
  arguments: {{ tools: ['m/*'] }}
telemetry:
  log_format: json
  otlp: {{ endpoint: 'http://{receiver}' }}
",
            jwks.url(),
            sha256_hex(API_KEY),
            dir.path().display()
        ),
    )
    .unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("mcpgate starts");
    let (url, admin) = loop {
        let text = std::fs::read_to_string(&stdout).unwrap();
        let find = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_string)
        };
        if let (Some(u), Some(a)) = (
            find("mcpgate listening on "),
            find("mcpgate operations on "),
        ) {
            break (u, a);
        }
        assert!(child.try_wait().unwrap().is_none(), "mcpgate exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    let mut c = claims("alice");
    c["groups"] = json!(["sre"]);
    let token = key.sign(&c);
    let alice = Client::over(url.clone(), http.clone())
        .bearer(&token)
        .with_header("traceparent", TRACEPARENT);
    let args = json!({"message": "hi", "password": PASSWORD});
    alice
        .modern("tools/call", json!({"name": "echo", "arguments": args}))
        .await
        .result();
    let robot = Client::over(url.clone(), http.clone()).bearer(API_KEY);
    robot
        .modern(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "beep"}}),
        )
        .await
        .result();
    let forged = Client::over(url, http.clone()).bearer(&format!("{token}x"));
    assert_eq!(forged.modern("tools/list", json!({})).await.status, 401);
    let metrics = http.get(&admin).send().await.unwrap().text().await.unwrap();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success(), "exit 0 on SIGTERM");

    // Spans of the request and of the upstream call, in the client's trace.
    let spans = spans.lock().unwrap().clone();
    let names: Vec<&str> = spans
        .iter()
        .filter(|(t, _, _)| t == TRACE)
        .map(|(_, n, _)| n.as_str())
        .collect();
    assert!(names.contains(&"mcp.request"), "{spans:?}");
    assert!(names.contains(&"mcp.upstream"), "{spans:?}");
    // The trace id is in the audit record of the call; the API key's call got a trace of its
    // own, started by the gateway and exported too.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let calls: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "call")
        .collect();
    assert_eq!(calls[0]["trace_id"], TRACE);
    let started = calls[1]["trace_id"]
        .as_str()
        .expect("a trace the gateway started");
    assert_ne!(started, TRACE);
    assert!(
        spans
            .iter()
            .any(|(t, n, _)| t == started && n == "mcp.request")
    );
    // JSON logs, as configured.
    let logs = std::fs::read_to_string(&stderr).unwrap();
    assert!(logs.lines().count() > 5, "debug logs: {logs}");
    for line in logs.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    // No credential and no redacted argument in any output.
    let exported = format!("{spans:?}");
    let outputs = [
        ("stdout", std::fs::read_to_string(&stdout).unwrap()),
        ("stderr", logs),
        ("audit", audit),
        ("metrics", metrics),
        ("spans", exported),
    ];
    for secret in [token.as_str(), API_KEY, UPSTREAM_SECRET, PASSWORD] {
        for (name, text) in &outputs {
            assert!(!text.contains(secret), "{name} contains {secret}");
        }
    }
    drop(jwks);
}
