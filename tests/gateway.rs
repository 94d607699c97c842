//! mcpgate in-process against mock upstreams of both eras and both transports.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, eventually, gateway, stdio_gateway, stdio_mock};

fn names(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn merges_both_eras_and_routes_calls_to_their_owners() {
    let (legacy_addr, legacy, _l) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let (modern_addr, modern, _m) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: old, http: {{ url: 'http://{legacy_addr}/mcp' }} }}
  - {{ id: new, http: {{ url: 'http://{modern_addr}/mcp' }} }}
  - {{ id: pipe, stdio: {} }}
catalogue: {{ page_size: 5 }}
",
        stdio_mock("legacy")
    ))
    .await;
    let client = Client::new(&gw);

    let (tools, pages) = client.list_all("tools/list", "tools").await;
    let tool_names = names(&tools, "name");
    assert!(pages >= 3, "15 tools in pages of 5");
    let mut sorted = tool_names.clone();
    sorted.sort();
    assert_eq!(tool_names, sorted, "deterministic order");
    for expected in [
        "old__echo",
        "new__echo",
        "pipe__echo",
        "new__link",
        "pipe__grow",
    ] {
        assert!(
            tool_names.contains(&expected.to_string()),
            "{expected} in {tool_names:?}"
        );
    }
    let echo = tools.iter().find(|t| t["name"] == "new__echo").unwrap();
    assert_eq!(
        echo["x-vendor"],
        json!({"keep": true}),
        "unknown fields pass through"
    );

    let (resources, _) = client.list_all("resources/list", "resources").await;
    assert_eq!(
        names(&resources, "uri"),
        ["new+mock://doc/1", "old+mock://doc/1", "pipe+mock://r1"]
    );
    let (templates, _) = client
        .list_all("resources/templates/list", "resourceTemplates")
        .await;
    assert_eq!(
        names(&templates, "uriTemplate"),
        ["new+mock://doc/{id}", "old+mock://doc/{id}"]
    );

    // Calls reach the owner with the upstream's own name; results pass through untouched.
    let r = client
        .modern(
            "tools/call",
            json!({"name": "old__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    let result = r.result();
    assert_eq!(result["content"][0]["text"], "hi");
    assert_eq!(result["x-extra"], json!({"nested": [1, 2, 3]}));
    assert_eq!(result["_meta"]["vendor/trace"], "abc");
    assert_eq!(
        result["resultType"], "complete",
        "a legacy result gains resultType for a modern client"
    );
    let calls = legacy.requests_for("tools/call");
    assert_eq!(calls.last().unwrap().1["params"]["name"], "echo");
    assert!(
        calls.last().unwrap().1["params"].get("_meta").is_none(),
        "modern _meta keys are not sent to a legacy upstream"
    );

    let r = client
        .modern(
            "tools/call",
            json!({"name": "new__echo", "arguments": {"message": "yo"}}),
        )
        .await;
    assert_eq!(r.result()["content"][0]["text"], "yo");
    let (headers, body) = modern.requests_for("tools/call").pop().unwrap();
    assert_eq!(
        headers["mcp-name"], "echo",
        "Mcp-Name carries the upstream's name"
    );
    assert_eq!(
        body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    // One discover probes the era; the first health check sends the other.
    eventually(5, "the first health check", || async {
        modern.seen.discovers.load(Ordering::SeqCst) == 2
    })
    .await;
    for _ in 0..3 {
        client
            .modern("tools/call", json!({"name": "new__echo", "arguments": {}}))
            .await
            .result();
    }
    assert_eq!(
        modern.seen.discovers.load(Ordering::SeqCst),
        2,
        "the era is probed once and cached"
    );

    let r = client
        .modern(
            "tools/call",
            json!({"name": "pipe__echo", "arguments": {"message": "stdio"}}),
        )
        .await;
    assert_eq!(r.result()["content"][0]["text"], "stdio");

    // URIs are rewritten in both directions.
    let r = client
        .modern("tools/call", json!({"name": "new__link", "arguments": {}}))
        .await;
    assert_eq!(r.result()["content"][0]["uri"], "new+mock://doc/2");
    assert_eq!(
        r.result()["content"][1]["resource"]["uri"],
        "new+mock://doc/3"
    );
    let r = client
        .modern("resources/read", json!({"uri": "old+mock://doc/42"}))
        .await;
    assert_eq!(r.result()["contents"][0]["uri"], "old+mock://doc/42");
    assert_eq!(
        r.result()["contents"][0]["text"],
        "content of mock://doc/42"
    );
    let r = client
        .modern(
            "prompts/get",
            json!({"name": "new__greet", "arguments": {"who": "Ada"}}),
        )
        .await;
    assert_eq!(r.result()["messages"][0]["content"]["text"], "Hello Ada");
    assert_eq!(
        r.result()["messages"][1]["content"]["resource"]["uri"],
        "new+mock://doc/1"
    );
    let r = client
        .modern("completion/complete", json!({"ref": {"type": "ref/resource", "uri": "old+mock://doc/{id}"}, "argument": {"name": "id", "value": "4"}}))
        .await;
    assert_eq!(r.result()["completion"]["values"], json!(["4-done"]));
    assert_eq!(
        r.result()["x-ref"]["uri"],
        "mock://doc/{id}",
        "the upstream saw its own template URI"
    );

    // Tool errors pass through unchanged; upstream JSON-RPC errors too.
    let r = client
        .modern("tools/call", json!({"name": "old__fail", "arguments": {}}))
        .await;
    assert_eq!(r.result()["isError"], true);
    let r = client
        .modern("resources/read", json!({"uri": "old+file:///etc/passwd"}))
        .await;
    assert_eq!(r.error_code(), -32002);
    gw.shutdown().await;
}

/// Servers built on the TypeScript SDK's examples (server-everything among them) answer a
/// session they do not know with 400, not 404: after such a server restarts, every session the
/// gateway held with it would otherwise fail for good.
#[tokio::test]
async fn sessions_an_upstream_refuses_with_400_are_opened_again() {
    let mut spec = MockSpec::new(MockEra::Legacy);
    spec.unknown_session_status = axum::http::StatusCode::BAD_REQUEST;
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: old, http: {{ url: 'http://{addr}/mcp' }} }}\nnamespacing: {{ prefix: always }}\n"
    ))
    .await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    let echo = json!({"name": "old__echo", "arguments": {"message": "hi"}});
    client
        .legacy(&sid, "tools/call", echo.clone())
        .await
        .result();
    client.modern("tools/call", echo.clone()).await.result();
    let before = mock.seen.initializes.load(Ordering::SeqCst);
    let old_sessions = mock.session_count();
    // The upstream restarts: it knows none of the sessions and answers them with 400.
    mock.expire_sessions();
    let legacy = client.legacy(&sid, "tools/call", echo.clone()).await;
    assert_eq!(legacy.result()["content"][0]["text"], "hi");
    let modern = client.modern("tools/call", echo.clone()).await;
    assert_eq!(modern.result()["content"][0]["text"], "hi");
    assert_eq!(
        mock.seen.initializes.load(Ordering::SeqCst),
        before + 2,
        "one new session for the client's, one for the gateway's shared one"
    );
    assert_eq!(
        mock.requests_for("tools/call").len(),
        6,
        "each refused call sent once more"
    );
    // A 400 does not prove the session gone: the old ones are deleted.
    eventually(5, "the refused sessions are deleted", || async {
        mock.seen.deleted.lock().unwrap().len() >= old_sessions
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn legacy_upstream_sessions_follow_downstream_sessions() {
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: old, http: {{ url: 'http://{addr}/mcp' }} }}\nnamespacing: {{ prefix: always }}\n"
    ))
    .await;
    let client = Client::new(&gw);
    let shared = mock.seen.initializes.load(Ordering::SeqCst);
    assert_eq!(shared, 1, "the catalogue plane opened one shared session");

    let a = client.initialize().await;
    let b = client.initialize().await;
    assert_eq!(
        mock.seen.initializes.load(Ordering::SeqCst),
        1,
        "upstream sessions open lazily"
    );
    for sid in [&a, &b] {
        let r = client
            .legacy(
                sid,
                "tools/call",
                json!({"name": "old__echo", "arguments": {"message": "x"}}),
            )
            .await;
        assert_eq!(r.result()["content"][0]["text"], "x");
    }
    assert_eq!(
        mock.seen.initializes.load(Ordering::SeqCst),
        3,
        "one upstream session per downstream session"
    );
    let r = client
        .legacy(
            &a,
            "tools/call",
            json!({"name": "old__echo", "arguments": {"message": "again"}}),
        )
        .await;
    assert_eq!(r.result()["content"][0]["text"], "again");
    assert_eq!(
        mock.seen.initializes.load(Ordering::SeqCst),
        3,
        "sessions are reused"
    );

    // The upstream forgets its sessions (restart): the gateway re-initialises transparently.
    mock.expire_sessions();
    let r = client
        .legacy(
            &b,
            "tools/call",
            json!({"name": "old__echo", "arguments": {"message": "after 404"}}),
        )
        .await;
    assert_eq!(r.result()["content"][0]["text"], "after 404");
    assert_eq!(mock.seen.initializes.load(Ordering::SeqCst), 4);

    // Ending the downstream session ends its upstream session.
    let before = mock.session_count();
    let end = client
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &b)])
        .await;
    assert_eq!(end.status, 200);
    eventually(5, "the upstream session is deleted", || async {
        mock.session_count() < before
    })
    .await;
    assert_eq!(mock.seen.deleted.lock().unwrap().len(), 1);
    let gone = client.legacy(&b, "tools/list", json!({})).await;
    assert_eq!(gone.status, 404);
    gw.shutdown().await;
}

#[tokio::test]
async fn sse_answers_from_upstreams_are_read() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.sse = true;
    let (addr, _mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: s, http: {{ url: 'http://{addr}/mcp' }} }}\n")).await;
    let client = Client::new(&gw);
    let r = client
        .modern(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "streamed"}}),
        )
        .await;
    assert_eq!(
        r.result()["content"][0]["text"],
        "streamed",
        "single upstream: no prefix"
    );
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.headers["x-accel-buffering"], "no");
    assert_eq!(
        r.stream.len(),
        2,
        "progress, then the response: {:?}",
        r.stream
    );
    assert_eq!(r.stream[0]["method"], "notifications/progress");
    gw.shutdown().await;
}

#[tokio::test]
async fn failing_upstreams_get_clear_gateway_errors() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: old, http: {{ url: 'http://{addr}/mcp' }}, timeout: 1s }}\n  - {{ id: pipe, stdio: {} }}\n",
        stdio_mock("modern")
    ))
    .await;
    let client = Client::new(&gw);
    let call = |name: &'static str, args: Value| {
        let client = &client;
        async move {
            client
                .modern("tools/call", json!({"name": name, "arguments": args}))
                .await
        }
    };
    let garbage = call("old__garbage", json!({})).await;
    assert_eq!(garbage.error_code(), -32603);
    assert_eq!(
        garbage.body["error"]["data"],
        json!({"upstream": "old", "reason": "protocol_error", "gateway": "mcpgate"})
    );
    let status = call("old__http500", json!({})).await;
    assert_eq!(status.body["error"]["data"]["reason"], "http_status");
    assert!(
        status.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    let slow = call("old__slow", json!({"ms": 3000})).await;
    assert_eq!(slow.body["error"]["data"]["reason"], "timeout");
    let fine = call("pipe__echo", json!({"message": "still here"})).await;
    assert_eq!(fine.result()["content"][0]["text"], "still here");
    assert!(
        !slow.body.to_string().contains(&addr.to_string()),
        "internal addresses never reach the client"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_crashed_stdio_upstream_is_restarted() {
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: pipe, stdio: {} }}\n  - {{ id: other, stdio: {} }}\n",
        stdio_mock("legacy"), stdio_mock("modern"))).await;
    let client = Client::new(&gw);
    let first = client
        .modern(
            "tools/call",
            json!({"name": "pipe__echo", "arguments": {"message": "1"}}),
        )
        .await;
    let pid = first.result()["structuredContent"]["pid"].clone();
    let crash = client
        .modern(
            "tools/call",
            json!({"name": "pipe__crash", "arguments": {}}),
        )
        .await;
    assert_eq!(crash.body["error"]["data"]["reason"], "disconnected");
    let other = client
        .modern(
            "tools/call",
            json!({"name": "other__echo", "arguments": {"message": "ok"}}),
        )
        .await;
    assert_eq!(
        other.result()["content"][0]["text"],
        "ok",
        "the other upstream is unaffected"
    );
    eventually(10, "the child is restarted", || async {
        let r = client
            .modern(
                "tools/call",
                json!({"name": "pipe__echo", "arguments": {"message": "2"}}),
            )
            .await;
        r.body
            .get("result")
            .is_some_and(|res| res["structuredContent"]["pid"] != pid)
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unreadable_stdio_output_restarts_the_child_and_stderr_never_blocks_it() {
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: pipe, stdio: {}, timeout: 10s }}\n",
        stdio_mock("legacy")
    ))
    .await;
    let client = Client::new(&gw);
    let call = |tool: &'static str| {
        let client = &client;
        async move {
            client
                .modern(
                    "tools/call",
                    json!({"name": tool, "arguments": {"message": "m"}}),
                )
                .await
        }
    };
    // Lines of stderr longer than any line limit and not UTF-8, more than a pipe holds: the
    // child is drained and answers, every time.
    for _ in 0..3 {
        let spewed = call("spew").await;
        assert_eq!(
            spewed.result()["content"][0]["text"],
            "spewed",
            "{}",
            spewed.body
        );
    }
    let pid = call("echo").await.result()["structuredContent"]["pid"].clone();
    // A stdout line over the message limit: the call fails at once with a gateway error, the
    // child is killed and a new one serves.
    let started = tokio::time::Instant::now();
    let flooded = call("flood").await;
    assert_eq!(flooded.error_code(), -32603, "{}", flooded.body);
    assert_eq!(flooded.body["error"]["data"]["reason"], "disconnected");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "failed when the output became unreadable, not at the timeout"
    );
    eventually(10, "a new child serves", || async {
        let r = call("echo").await;
        r.body
            .get("result")
            .is_some_and(|res| res["structuredContent"]["pid"] != pid)
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn list_changed_refreshes_the_catalogue() {
    let gw = stdio_gateway("modern", true).await;
    let client = Client::new(&gw);
    let (before, _) = client.list_all("tools/list", "tools").await;
    assert!(!names(&before, "name").contains(&"pipe__grown".to_string()));
    client
        .modern("tools/call", json!({"name": "pipe__grow", "arguments": {}}))
        .await
        .result();
    eventually(10, "the new tool is listed", || async {
        let (after, _) = client.list_all("tools/list", "tools").await;
        names(&after, "name").contains(&"pipe__grown".to_string())
    })
    .await;
    let r = client
        .modern(
            "tools/call",
            json!({"name": "pipe__grown", "arguments": {}}),
        )
        .await;
    assert_eq!(
        r.error_code(),
        -32602,
        "the mock knows no such tool to call; the gateway routed it"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn long_names_get_stable_callable_aliases() {
    let mut spec = MockSpec::new(MockEra::Modern);
    let long = format!("echo_{}", "x".repeat(70));
    spec.tools = vec![json!({"name": long, "inputSchema": {"type": "object"}})];
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: longnames, http: {{ url: 'http://{addr}/mcp' }} }}\nnamespacing: {{ prefix: always }}\n")).await;
    let client = Client::new(&gw);
    let (tools, _) = client.list_all("tools/list", "tools").await;
    let alias = tools[0]["name"].as_str().unwrap().to_string();
    assert_eq!(alias.chars().count(), 64);
    assert!(alias.starts_with("longnames__echo_x"));
    let r = client
        .modern("tools/call", json!({"name": alias, "arguments": {}}))
        .await;
    assert_eq!(
        r.error_code(),
        -32602,
        "the mock rejects the unknown tool name it received"
    );
    let (_, body) = mock.requests_for("tools/call").pop().unwrap();
    assert_eq!(
        body["params"]["name"], long,
        "the upstream received its own full name"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn key_set_cursors_survive_catalogue_changes() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tools = (0..10)
        .map(|i| json!({"name": format!("t{i}"), "inputSchema": {"type": "object"}}))
        .collect();
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: a, http: {{ url: 'http://{addr}/mcp' }} }}\ncatalogue: {{ page_size: 4 }}\n")).await;
    let client = Client::new(&gw);
    let first = client.modern("tools/list", json!({})).await;
    assert_eq!(
        names(first.result()["tools"].as_array().unwrap(), "name"),
        ["t0", "t1", "t2", "t3"]
    );
    let cursor = first.result()["nextCursor"].as_str().unwrap().to_string();
    // An entry sorting before the cursor appears; the next page neither repeats nor skips.
    mock.spec
        .lock()
        .unwrap()
        .tools
        .insert(0, json!({"name": "t00", "inputSchema": {"type": "object"}}));
    let upstream = gw.catalogue.upstreams().get("a").unwrap().clone();
    assert!(gw.catalogue.refresh_upstream(&upstream).await);
    let second = client.modern("tools/list", json!({"cursor": cursor})).await;
    assert_eq!(
        names(second.result()["tools"].as_array().unwrap(), "name"),
        ["t4", "t5", "t6", "t7"]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn mcp_param_headers_are_checked_downstream_and_sent_upstream() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tools = vec![
        json!({"name": "echo", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}, "message": {"type": "string"}}}}),
        json!({"name": "broken", "inputSchema": {"type": "object", "properties": {
            "n": {"type": "number", "x-mcp-header": "N"}}}}),
    ];
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}\n")).await;
    let client = Client::new(&gw);
    let (tools, _) = client.list_all("tools/list", "tools").await;
    assert_eq!(
        names(&tools, "name"),
        ["echo"],
        "a tool with an invalid x-mcp-header is left out"
    );

    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"region": "eu-west", "message": "m"}, "_meta": meta}});
    let base = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let missing = client.post(&body, &base).await;
    assert_eq!((missing.status, missing.error_code()), (400, -32020));
    let wrong = client
        .post(
            &body,
            &[base[0], base[1], base[2], ("mcp-param-region", "us-east")],
        )
        .await;
    assert_eq!((wrong.status, wrong.error_code()), (400, -32020));
    let right = client
        .post(
            &body,
            &[base[0], base[1], base[2], ("mcp-param-region", "eu-west")],
        )
        .await;
    assert_eq!(right.result()["content"][0]["text"], "m");
    let (headers, _) = mock.requests_for("tools/call").pop().unwrap();
    assert_eq!(
        headers["mcp-param-region"], "eu-west",
        "the gateway mirrors the header upstream"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_modern_upstreams_list_changes_arrive_over_subscriptions_listen() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.list_changed = true;
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}\ncatalogue: {{ refresh_interval: 1h }}\n")).await;
    let listed_at_start = mock.requests_for("tools/list").len();
    eventually(
        10,
        "the gateway listens and re-lists on the announced change",
        || async {
            !mock.requests_for("subscriptions/listen").is_empty()
                && mock.requests_for("tools/list").len() > listed_at_start
        },
    )
    .await;
    let (_, listen) = mock.requests_for("subscriptions/listen").pop().unwrap();
    assert_eq!(listen["params"]["notifications"]["toolsListChanged"], true);
    gw.shutdown().await;
}

#[tokio::test]
async fn task_ids_must_name_an_upstream() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    for bad in ["no-separator", "ghost+123"] {
        let r = client
            .legacy(&sid, "tasks/get", json!({"taskId": bad}))
            .await;
        assert_eq!(r.error_code(), -32602, "{bad}");
    }
    let r = client.legacy(&sid, "tasks/list", json!({})).await;
    assert_eq!(
        r.result(),
        &json!({"tasks": []}),
        "no upstream supports tasks"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_merged_tasks_list_reads_a_bounded_number_of_pages() {
    let mut spec = MockSpec::new(MockEra::Legacy);
    spec.endless_tasks = true;
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: jobs, http: {{ url: 'http://{addr}/mcp' }} }}\n"
    ))
    .await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    let listed = client.legacy(&sid, "tasks/list", json!({})).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.result()["tasks"].is_array());
    let pages = mock.requests_for("tasks/list").len();
    assert_eq!(
        pages,
        mcpgate::router::tasks::MAX_PAGES,
        "an upstream that never stops paging is cut off"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn several_json_messages_in_one_answer_are_relayed_in_order() {
    let mut spec = MockSpec::new(MockEra::Modern);
    for name in ["chatty", "chatty_garbage"] {
        spec.tools
            .push(json!({"name": name, "inputSchema": {"type": "object"}}));
    }
    let (addr, _mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}\n"
    ))
    .await;
    let client = Client::new(&gw);
    let call = |name: &'static str| {
        let client = &client;
        async move {
            client
                .modern("tools/call", json!({"name": name, "arguments": {}}))
                .await
        }
    };
    // A progress notification, then the response, one per line of an application/json body:
    // the client gets both, in order, as a client talking to the server directly would.
    let chatty = call("chatty").await;
    assert_eq!(chatty.stream.len(), 2, "{:?}", chatty.stream);
    assert_eq!(chatty.stream[0]["method"], "notifications/progress");
    assert_eq!(chatty.stream[0]["params"]["total"], 2);
    assert_eq!(chatty.result()["content"][0]["text"], "chatted");
    // What cannot be parsed is still refused.
    let garbage = call("chatty_garbage").await;
    assert_eq!(garbage.error_code(), -32603, "{}", garbage.body);
    assert_eq!(garbage.body["error"]["data"]["reason"], "protocol_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upstream_event_that_never_ends_is_cut_off() {
    let mut spec = MockSpec::new(MockEra::Modern);
    for name in ["endless_event", "big_sse"] {
        spec.tools
            .push(json!({"name": name, "inputSchema": {"type": "object"}}));
    }
    let (addr, _mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }}, timeout: 60s }}\n"
    ))
    .await;
    let client = Client::new(&gw);
    let reply = client
        .modern(
            "tools/call",
            json!({"name": "endless_event", "arguments": {}}),
        )
        .await;
    // Past the 32 MiB a message may have, not at the timeout, and without holding more.
    assert_eq!(reply.error_code(), -32603, "{}", reply.body);
    assert_eq!(reply.body["error"]["data"]["reason"], "disconnected");
    let echo = client
        .modern(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "ok"}}),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "ok");
    // A large answer in one event, in many chunks, is read (in time linear in its size).
    let big = client
        .modern("tools/call", json!({"name": "big_sse", "arguments": {}}))
        .await;
    assert_eq!(
        big.result()["content"][0]["text"].as_str().map(str::len),
        Some(8 * 1024 * 1024)
    );
    gw.shutdown().await;
}
