//! Traffic control end to end (DESIGN.md §5.10), with mock upstreams that hang, answer 500,
//! answer garbage, stream progress, and a stdio upstream that exits: rate limits answer 429 with
//! `Retry-After` naming the limit, the breaker opens and recovers through half-open while other
//! upstreams keep serving, timeouts cancel the upstream call, the bulkhead refuses at once, and
//! the gateway's live tasks return to their baseline afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use mcpgate::app::Running;

use serde_json::{Value, json};
use support::idp::RESOURCE;
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, eventually, gateway, metrics, sample, sha256_hex, stdio_mock};

async fn call(client: &Client, name: &str, args: Value) -> support::Reply {
    client
        .modern("tools/call", json!({"name": name, "arguments": args}))
        .await
}

/// A gateway (with an admin listener) in front of upstream `m`, a modern mock also serving
/// `tools`; `m_extra` are YAML lines of `m`'s entry, `rest` follows it (more upstreams, then
/// other sections).
async fn with_mock(
    tools: &[&str],
    m_extra: &str,
    rest: &str,
) -> (Running, Arc<mock_http::Mock>, tokio::task::JoinHandle<()>) {
    with_spec(mock_with(tools), m_extra, rest).await
}

/// [`with_mock`] with the mock serving `spec`.
async fn with_spec(
    spec: MockSpec,
    m_extra: &str,
    rest: &str,
) -> (Running, Arc<mock_http::Mock>, tokio::task::JoinHandle<()>) {
    let (addr, mock, task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: m
    http: {{ url: 'http://{addr}/mcp' }}
{m_extra}
{rest}"
    ))
    .await;
    (gw, mock, task)
}

/// `auth:` with API keys `alice-key` (principal alice) and `bob-key` (bob).
fn two_api_keys() -> String {
    format!(
        "auth:\n  api_keys:\n    - {{ name: alice, sha256: '{}' }}\n    - {{ name: bob, sha256: '{}' }}\n",
        sha256_hex("alice-key"),
        sha256_hex("bob-key")
    )
}

fn mock_with(tools: &[&str]) -> MockSpec {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tools.extend(
        tools
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {"type": "object"}})),
    );
    spec
}

#[tokio::test]
async fn rate_limits_refuse_with_429_and_retry_after_naming_the_limit() {
    let (gw, mock, _task) = with_mock(
        &[],
        "    tools:\n      \"ech?\": { rate_limit: { rate: 600/m, burst: 5 } }",
        &format!("limits: {{ per_principal: 2/m }}\n{}", two_api_keys()),
    )
    .await;
    let client = Client::new(&gw);
    let (alice, bob) = (client.bearer("alice-key"), client.bearer("bob-key"));
    // Unknown targets are refused before the limits: they spend no quota.
    for _ in 0..3 {
        assert_eq!(call(&alice, "nope", json!({})).await.error_code(), -32602);
    }
    for _ in 0..2 {
        call(&alice, "echo", json!({"message": "hi"}))
            .await
            .result();
    }
    let calls_before = mock.requests_for("tools/call").len();
    let refused = call(&alice, "echo", json!({"message": "hi"})).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.headers["retry-after"], "30");
    assert_eq!(refused.error_code(), -32000);
    let data = &refused.body["error"]["data"];
    assert_eq!(data["reason"], "rate_limited");
    assert_eq!(data["limit"], "per_principal");
    let wait = data["retry_after_ms"].as_u64().unwrap();
    assert!((29_000..=30_000).contains(&wait), "{wait}");
    assert_eq!(
        mock.requests_for("tools/call").len(),
        calls_before,
        "a refused call never reaches the upstream"
    );
    // A legacy session of the same principal is refused the same way.
    let sid = alice.initialize().await;
    let legacy = alice
        .legacy(&sid, "tools/call", json!({"name": "echo", "arguments": {}}))
        .await;
    assert_eq!(legacy.status, 429);
    assert_eq!(legacy.body["error"]["data"]["limit"], "per_principal");
    // Another principal is untouched.
    call(&bob, "echo", json!({"message": "hi"})).await.result();
    let text = metrics(&gw).await;
    assert_eq!(
        sample(&text, "mcpgate_rate_limited_total{limit=\"per_principal\"}"),
        2.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_tool_limit_holds_for_all_callers_together() {
    let (gw, _mock, _task) = with_mock(
        &[],
        "    tools:\n      \"ec*\": { rate_limit: 1/h }",
        &two_api_keys(),
    )
    .await;
    let client = Client::new(&gw);
    call(&client.bearer("alice-key"), "echo", json!({}))
        .await
        .result();
    let refused = call(&client.bearer("bob-key"), "echo", json!({})).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["data"]["limit"], "per_tool");
    // Other tools of the upstream are not limited.
    call(&client.bearer("bob-key"), "link", json!({}))
        .await
        .result();
    gw.shutdown().await;
}

#[tokio::test]
async fn the_breaker_opens_on_failures_fails_fast_and_recovers_through_half_open() {
    let (gw, mock, _task) = with_mock(
        &[],
        "    circuit_breaker: { consecutive_failures: 3, open_for: 400ms }",
        &format!(
            "  - {{ id: pipe, stdio: {} }}\nnamespacing: {{ prefix: always }}",
            stdio_mock("modern")
        ),
    )
    .await;
    let client = Client::new(&gw);
    // A tool's own error is an answer, not a failure of the upstream.
    for _ in 0..4 {
        let failed = call(&client, "m__fail", json!({})).await;
        assert_eq!(failed.result()["isError"], true);
    }
    // HTTP 500, garbage, 500: three failures in a row.
    for tool in ["m__http500", "m__garbage", "m__http500"] {
        let reply = call(&client, tool, json!({})).await;
        assert_ne!(reply.body["error"]["data"]["reason"], "circuit_open");
    }
    let seen = mock.requests_for("tools/call").len();
    let refused = call(&client, "m__echo", json!({"message": "hi"})).await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.error_code(), -32603);
    let data = &refused.body["error"]["data"];
    assert_eq!(data["reason"], "circuit_open");
    assert_eq!(data["upstream"], "m");
    assert!(data["retry_after_ms"].as_u64().unwrap() <= 400);
    assert_eq!(mock.requests_for("tools/call").len(), seen, "failed fast");
    // The other upstream keeps serving, and the open upstream's entries stay listed.
    let fine = call(&client, "pipe__echo", json!({"message": "still here"})).await;
    assert_eq!(fine.result()["content"][0]["text"], "still here");
    let (tools, _) = client.list_all("tools/list", "tools").await;
    assert!(tools.iter().any(|t| t["name"] == "m__echo"));
    let text = metrics(&gw).await;
    assert_eq!(sample(&text, "mcpgate_circuit_state{upstream=\"m\"}"), 2.0);

    // After open_for one probe goes through; it fails, and the circuit opens again.
    eventually(5, "the circuit half-opens", || async {
        let reply = call(&client, "m__http500", json!({})).await;
        reply.body["error"]["data"]["reason"] == "http_status"
    })
    .await;
    let refused = call(&client, "m__echo", json!({})).await;
    assert_eq!(refused.body["error"]["data"]["reason"], "circuit_open");
    // The next probe succeeds and closes it.
    eventually(5, "a probe closes the circuit", || async {
        call(&client, "m__echo", json!({"message": "back"}))
            .await
            .body
            .get("result")
            .is_some()
    })
    .await;
    call(&client, "m__echo", json!({"message": "closed"}))
        .await
        .result();
    let text = metrics(&gw).await;
    assert_eq!(sample(&text, "mcpgate_circuit_state{upstream=\"m\"}"), 0.0);
    let transitions = |to: &str| {
        sample(
            &text,
            &format!("mcpgate_circuit_transitions_total{{to=\"{to}\",upstream=\"m\"}}"),
        )
    };
    assert_eq!(
        (
            transitions("open"),
            transitions("half_open"),
            transitions("closed")
        ),
        (2.0, 2.0, 1.0)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn timeouts_cancel_the_upstream_call_in_both_eras() {
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: pipe
    stdio: {}
    timeout: 10s
    tools:
      slow: {{ timeout: 300ms }}
",
        stdio_mock("legacy")
    ))
    .await;
    let client = Client::new(&gw);
    let modern = call(&client, "slow", json!({})).await;
    assert_eq!(modern.error_code(), -32603);
    assert_eq!(
        modern.body["error"]["data"],
        json!({"upstream": "pipe", "reason": "timeout", "gateway": "mcpgate"})
    );
    let sid = client.initialize().await;
    let legacy = client
        .legacy(&sid, "tools/call", json!({"name": "slow", "arguments": {}}))
        .await;
    assert_eq!(legacy.body["error"]["data"]["reason"], "timeout");
    // Streamed: a legacy call with a progress token answered on an SSE stream.
    let streamed = client
        .legacy(
            &sid,
            "tools/call",
            json!({"name": "slow", "arguments": {}, "_meta": {"progressToken": "p1"}}),
        )
        .await;
    assert_eq!(streamed.body["error"]["data"]["reason"], "timeout");
    // The upstream was told each time.
    eventually(5, "the upstream sees three cancellations", || async {
        let seen = call(&client, "cancellations", json!({})).await;
        let text = seen.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_str::<Vec<Value>>(&text).unwrap().len() == 3
    })
    .await;
    // Other tools keep the upstream's timeout.
    call(&client, "echo", json!({"message": "hi"}))
        .await
        .result();
    let text = metrics(&gw).await;
    assert_eq!(
        sample(&text, "mcpgate_timeouts_total{upstream=\"pipe\"}"),
        3.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn progress_extends_a_timeout_up_to_max_timeout() {
    let (gw, _mock, _task) = with_mock(
        &["ticking"],
        "    timeout: 400ms\n    max_timeout: 1500ms",
        "",
    )
    .await;
    let client = Client::new(&gw);
    // Eight progress ticks 150 ms apart: 1.35 s in all, never 400 ms without news.
    let ticked = call(&client, "ticking", json!({"ticks": 8, "every_ms": 150})).await;
    assert_eq!(ticked.result()["content"][0]["text"], "ticked");
    // Sixteen ticks would take 2.5 s: max_timeout ends it.
    let capped = call(&client, "ticking", json!({"ticks": 16, "every_ms": 150})).await;
    assert_eq!(capped.body["error"]["data"]["reason"], "timeout");
    // Without progress the plain timeout holds.
    let silent = call(&client, "slow", json!({"ms": 1000})).await;
    assert_eq!(silent.body["error"]["data"]["reason"], "timeout");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_bulkhead_refuses_at_once_when_full() {
    let (gw, _mock, _task) = with_mock(&[], "    max_concurrency: 2", "").await;
    let client = std::sync::Arc::new(Client::new(&gw));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move { call(&client, "slow", json!({"ms": 1500})).await })
        })
        .collect();
    eventually(5, "two calls in flight", || async {
        sample(
            &metrics(&gw).await,
            "mcpgate_upstream_inflight{upstream=\"m\"}",
        ) == 2.0
    })
    .await;
    let started = tokio::time::Instant::now();
    let refused = call(&client, "echo", json!({"message": "hi"})).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "not queued"
    );
    assert_eq!(refused.error_code(), -32603);
    assert_eq!(
        refused.body["error"]["data"],
        json!({"upstream": "m", "reason": "overloaded", "gateway": "mcpgate"})
    );
    for task in slow {
        task.await.unwrap().result();
    }
    call(&client, "echo", json!({"message": "hi"}))
        .await
        .result();
    let text = metrics(&gw).await;
    assert_eq!(
        sample(&text, "mcpgate_bulkhead_rejected_total{upstream=\"m\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "mcpgate_upstream_inflight{upstream=\"m\"}"),
        0.0
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_no_tasks_behind_and_an_exiting_child_opens_the_breaker() {
    let (gw, _mock, _task) = with_mock(
        &["endless_event", "cut"],
        "    timeout: 500ms",
        &format!(
            "  - id: pipe
    stdio: {}
    circuit_breaker: {{ consecutive_failures: 2, open_for: 1h }}
  - id: ok
    stdio: {}
namespacing: {{ prefix: always }}
",
            stdio_mock("modern"),
            stdio_mock("legacy")
        ),
    )
    .await;
    let client = Client::new(&gw);
    call(&client, "ok__echo", json!({"message": "warm"}))
        .await
        .result();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = tasks();
    // Hangs, garbage, 500s, an event that never ends and a stream closed before the answer,
    // many times over.
    for _ in 0..5 {
        for (tool, args) in [
            ("m__slow", json!({"ms": 5000})),
            ("m__garbage", json!({})),
            ("m__http500", json!({})),
            ("m__endless_event", json!({})),
            ("m__cut", json!({})),
        ] {
            let reply = call(&client, tool, args).await;
            assert_eq!(reply.error_code(), -32603, "{tool}: {}", reply.body);
        }
        let cut = call(&client, "m__cut", json!({})).await;
        assert_eq!(cut.body["error"]["data"]["reason"], "disconnected");
    }
    // The child exits mid-call, twice: the breaker opens.
    for _ in 0..2 {
        let crashed = call(&client, "pipe__crash", json!({})).await;
        assert_eq!(crashed.error_code(), -32603);
        assert_ne!(crashed.body["error"]["data"]["reason"], "circuit_open");
    }
    let refused = call(&client, "pipe__echo", json!({})).await;
    assert_eq!(refused.body["error"]["data"]["reason"], "circuit_open");
    call(&client, "ok__echo", json!({"message": "fine"}))
        .await
        .result();
    eventually(10, "live tasks return to their baseline", || async {
        tasks() <= baseline
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn readyz_reports_each_upstreams_health_without_failing_for_one() {
    let (sick, _sick_mock, _sick_task) = mock_http::start({
        let mut spec = MockSpec::new(MockEra::Legacy);
        spec.ping_error = true;
        spec
    })
    .await;
    // A port nothing listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (gw, mock, _task) = with_mock(
        &[],
        "    health_check: { interval: 200ms }\n    circuit_breaker: {}",
        &format!(
            "  - {{ id: sick, http: {{ url: 'http://{sick}/mcp' }}, health_check: {{ interval: 200ms }} }}
  - {{ id: dead, http: {{ url: 'http://{dead}/mcp' }}, timeout: 1s }}
  - {{ id: pipe, stdio: {}, health_check: {{ interval: 200ms }} }}
namespacing: {{ prefix: always }}
",
            stdio_mock("legacy")
        ),
    )
    .await;
    let admin = gw.admin_addr.unwrap();
    let readyz = || async {
        let resp = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap(),
        )
    };
    eventually(10, "every upstream has been checked", || async {
        let (_, body) = readyz().await;
        ["m", "sick", "dead", "pipe"]
            .iter()
            .all(|u| !body["upstreams"][u]["health"]["healthy"].is_null())
    })
    .await;
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let up = &body["upstreams"];
    assert_eq!(up["m"]["health"]["healthy"], true);
    assert_eq!(up["m"]["circuit"], "closed");
    assert_eq!(up["m"]["catalogue"], "fresh");
    assert_eq!(up["pipe"]["health"]["healthy"], true);
    // A JSON-RPC error in an HTTP 200 is unhealthy.
    assert_eq!(up["sick"]["health"]["healthy"], false);
    assert_eq!(up["sick"]["health"]["reason"], "jsonrpc_error");
    assert_eq!(up["dead"]["health"]["healthy"], false);
    assert_eq!(up["dead"]["health"]["reason"], "unavailable");
    assert_eq!(up["dead"]["catalogue"], "stale");
    assert!(up["dead"].get("circuit").is_none());
    // A modern upstream is checked with server/discover, again and again.
    let discovers = mock
        .seen
        .discovers
        .load(std::sync::atomic::Ordering::SeqCst);
    eventually(5, "more checks of m", || async {
        mock.seen
            .discovers
            .load(std::sync::atomic::Ordering::SeqCst)
            > discovers + 1
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn reads_are_retried_after_a_transient_failure_and_tool_calls_never() {
    let mut spec = mock_with(&[]);
    spec.unavailable_reads = 2;
    let (gw, mock, _task) = with_spec(spec, "", "").await;
    let client = Client::new(&gw);
    let read = client
        .modern("resources/read", json!({"uri": "mock://doc/1"}))
        .await;
    assert_eq!(
        read.result()["contents"][0]["text"],
        "content of mock://doc/1"
    );
    assert_eq!(mock.requests_for("resources/read").len(), 3);
    let failed = call(&client, "http500", json!({})).await;
    assert_eq!(failed.body["error"]["data"]["reason"], "http_status");
    assert_eq!(mock.requests_for("tools/call").len(), 1, "never retried");
    let text = metrics(&gw).await;
    assert_eq!(
        sample(
            &text,
            "mcpgate_retries_total{method=\"resources/read\",upstream=\"m\"}"
        ),
        2.0
    );
    gw.shutdown().await;
}
