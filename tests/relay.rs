//! The full relay: streaming, log levels, server→client requests, MRTR in both directions,
//! and cancellation, against mock upstreams of both eras and both transports.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, eventually, gateway, stdio_gateway};

const ELICIT: &str = r#"{"elicitation": {}}"#;

fn caps(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn progress_and_log_messages_stream_in_order() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "progress", "arguments": {}, "_meta": {"progressToken": "client-token"}}});
    let r = client.post(&call, &[("mcp-session-id", &sid)]).await;
    let methods: Vec<&str> = r
        .stream
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("response"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/message",
            "notifications/progress",
            "notifications/message",
            "notifications/progress",
            "notifications/message",
            "response"
        ]
    );
    assert_eq!(
        r.stream[0]["params"]["progressToken"], "client-token",
        "the client's own token comes back"
    );
    assert_eq!(r.stream[4]["params"]["progress"], 3);
    assert_eq!(r.body["id"], 5);

    // A modern client gets log messages only at or above the level it asked for.
    let headers = Client::modern_headers("tools/call", Some("progress"));
    let quiet = Client::modern_body(
        "tools/call",
        json!({"name": "progress", "arguments": {}, "_meta": {}}),
        json!({}),
        None,
    );
    let mut quiet = quiet;
    quiet["params"]["_meta"]["progressToken"] = json!(7);
    let r = client.post(&quiet, &headers).await;
    let logs = r
        .stream
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    let progress = r
        .stream
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!((progress, logs), (3, 0));
    let mut loud = Client::modern_body(
        "tools/call",
        json!({"name": "progress", "arguments": {}}),
        json!({}),
        Some("error"),
    );
    loud["params"]["_meta"]["progressToken"] = json!(8);
    let r = client.post(&loud, &headers).await;
    let logs: Vec<&Value> = r
        .stream
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["params"]["level"], "error");
    assert_eq!(r.result()["resultType"], "complete");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_legacy_client_answers_its_upstreams_elicitation() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let sid = client.initialize_with(caps(ELICIT)).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ask", "arguments": {}}});
    let mut stream = client.open_stream(&call, &[("mcp-session-id", &sid)]).await;
    let request = stream.next().await.unwrap();
    assert_eq!(request["method"], "elicitation/create");
    let gateway_id = request["id"].clone();
    assert!(
        gateway_id.as_str().unwrap().starts_with("mcpgate-"),
        "ids are the gateway's own"
    );
    let answer = json!({"jsonrpc": "2.0", "id": gateway_id, "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(
        client
            .post(&answer, &[("mcp-session-id", &sid)])
            .await
            .status,
        202
    );
    let result = stream.next().await.unwrap();
    assert_eq!(result["id"], 1);
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Ada")
    );

    // A client that did not declare elicitation is never asked; the upstream gets an error.
    let bare = client.initialize().await;
    let r = client.post(&call, &[("mcp-session-id", &bare)]).await;
    let text = r.result()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("did not declare the elicitation capability"),
        "{text}"
    );
    assert!(r.stream.iter().all(|m| m["method"] != "elicitation/create"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_modern_client_gets_input_required_for_a_legacy_upstreams_request() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let first = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask", "arguments": {}}),
            caps(ELICIT),
        )
        .await;
    let result = first.result();
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(
        result["inputRequests"]["upstream_request"]["method"],
        "elicitation/create"
    );
    let state = result["requestState"].as_str().unwrap().to_string();
    assert!(state.starts_with("mcpgate1."));

    // Tampered and misdirected state is refused.
    let mut tampered = state.clone();
    tampered.push('A');
    let bad = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask", "arguments": {}, "requestState": tampered,
            "inputResponses": {}}),
            caps(ELICIT),
        )
        .await;
    assert_eq!(bad.error_code(), -32602);
    let other = client
        .modern_caps(
            "tools/call",
            json!({"name": "echo", "arguments": {}, "requestState": state,
            "inputResponses": {}}),
            caps(ELICIT),
        )
        .await;
    assert_eq!(other.error_code(), -32602);

    let retry = client.modern_caps("tools/call", json!({"name": "ask", "arguments": {}, "requestState": state,
            "inputResponses": {"upstream_request": {"action": "accept", "content": {"name": "Grace"}}}}), caps(ELICIT)).await;
    assert!(
        retry.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Grace")
    );
    assert_eq!(retry.result()["resultType"], "complete");

    // Without the elicitation capability the upstream's request is refused, not forwarded.
    let refused = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask", "arguments": {}}),
            json!({}),
        )
        .await;
    assert!(
        refused.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("did not declare")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_legacy_upstreams_concurrent_requests_are_asked_in_one_round() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let both = json!({"elicitation": {}, "roots": {}});
    let first = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask_two", "arguments": {}}),
            both.clone(),
        )
        .await;
    let result = first.result();
    assert_eq!(result["resultType"], "input_required");
    let asked = result["inputRequests"].as_object().unwrap();
    let methods: Vec<&str> = asked
        .values()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["elicitation/create", "roots/list"], "{result}");
    let state = result["requestState"].clone();
    let retry = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask_two", "arguments": {}, "requestState": state, "inputResponses": {
                "upstream_request": {"action": "accept", "content": {"name": "Ada"}},
                "upstream_request_2": {"roots": [{"uri": "file:///work", "name": "work"}]}}}),
            both,
        )
        .await;
    let texts: Vec<&str> = retry.result()["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{}", retry.body);
    assert!(
        texts[0].contains("Ada") && texts[1].contains("file:///work"),
        "{texts:?}"
    );
    assert_eq!(retry.result()["resultType"], "complete");
    gw.shutdown().await;
}

#[tokio::test]
async fn mrtr_with_a_modern_upstream_in_both_eras() {
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}\n")).await;
    let client = Client::new(&gw);

    // Modern client: the upstream's InputRequiredResult and requestState pass through untouched.
    let first = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask", "arguments": {}}),
            caps(ELICIT),
        )
        .await;
    assert_eq!(first.result()["requestState"], "mock-state-1");
    assert_eq!(
        first.result()["inputRequests"]["name"]["method"],
        "elicitation/create"
    );
    let retry = client
        .modern_caps(
            "tools/call",
            json!({"name": "ask", "arguments": {}, "requestState": "mock-state-1",
            "inputResponses": {"name": {"action": "accept", "content": {"name": "Linus"}}}}),
            caps(ELICIT),
        )
        .await;
    assert_eq!(retry.result()["content"][0]["text"], "hello Linus");
    let (_, sent) = mock.requests_for("tools/call").pop().unwrap();
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        caps(ELICIT),
        "the client's capabilities reach a modern upstream"
    );

    // Legacy client: the gateway asks it for real and retries the upstream with the answers.
    let sid = client.initialize_with(caps(ELICIT)).await;
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "ask", "arguments": {}}});
    let mut stream = client.open_stream(&call, &[("mcp-session-id", &sid)]).await;
    let request = stream.next().await.unwrap();
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Your name?");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept", "content": {"name": "Barbara"}}});
    client.post(&answer, &[("mcp-session-id", &sid)]).await;
    let result = stream.next().await.unwrap();
    assert_eq!(result["result"]["content"][0]["text"], "hello Barbara");
    let (_, retried) = mock.requests_for("tools/call").pop().unwrap();
    assert_eq!(retried["params"]["requestState"], "mock-state-1");
    gw.shutdown().await;
}

async fn cancellations(client: &Client) -> Vec<Value> {
    let r = client
        .modern(
            "tools/call",
            json!({"name": "cancellations", "arguments": {}}),
        )
        .await;
    serde_json::from_str(r.result()["content"][0]["text"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn cancellation_reaches_the_upstream_in_both_eras() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    assert!(cancellations(&client).await.is_empty());

    // Legacy: notifications/cancelled for an in-flight request.
    let sid = client.initialize().await;
    let slow = json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "slow", "arguments": {}}});
    let pending = {
        let client = Client::new(&gw);
        let sid = sid.clone();
        tokio::spawn(async move { client.post(&slow, &[("mcp-session-id", &sid)]).await })
    };
    eventually(5, "the slow call is in flight", || async {
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}});
        client.post(&cancel, &[("mcp-session-id", &sid)]).await;
        pending.is_finished()
    })
    .await;
    eventually(5, "the upstream saw the cancellation", || async {
        cancellations(&client).await.len() == 1
    })
    .await;

    // Modern: the client goes away mid-call.
    let abandoned = {
        let client = Client::new(&gw);
        tokio::spawn(async move {
            client
                .modern("tools/call", json!({"name": "slow", "arguments": {}}))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    abandoned.abort();
    eventually(5, "the upstream saw the second cancellation", || async {
        cancellations(&client).await.len() == 2
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_standalone_stream_carries_list_changes_and_subscribed_updates() {
    let gw = stdio_gateway("legacy", true).await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    let init = client
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}), &[])
        .await;
    assert_eq!(init.result()["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(
        init.result()["capabilities"]["resources"]["subscribe"],
        true
    );
    let subscribed = client
        .legacy(
            &sid,
            "resources/subscribe",
            json!({"uri": "pipe+mock://r1"}),
        )
        .await;
    assert_eq!(subscribed.result(), &json!({}));
    let mut events = client.open_get_stream(&sid).await;

    client
        .legacy(
            &sid,
            "tools/call",
            json!({"name": "pipe__touch", "arguments": {}}),
        )
        .await
        .result();
    let updated = events.next().await.unwrap();
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(
        updated["params"]["uri"], "pipe+mock://r1",
        "the URI is client-facing"
    );

    // After unsubscribing, updates stop: the next event is the list change that follows.
    client
        .legacy(
            &sid,
            "resources/unsubscribe",
            json!({"uri": "pipe+mock://r1"}),
        )
        .await
        .result();
    client
        .legacy(
            &sid,
            "tools/call",
            json!({"name": "pipe__touch", "arguments": {}}),
        )
        .await
        .result();
    client
        .legacy(
            &sid,
            "tools/call",
            json!({"name": "pipe__grow", "arguments": {}}),
        )
        .await
        .result();
    let changed = events.next().await.unwrap();
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    client
        .legacy(&sid, "logging/setLevel", json!({"level": "error"}))
        .await
        .result();
    let bad_level = client
        .legacy(&sid, "logging/setLevel", json!({"level": "loud"}))
        .await;
    assert_eq!(bad_level.error_code(), -32602);
    gw.shutdown().await;
}

#[tokio::test]
async fn subscriptions_listen_acknowledges_filters_and_tags() {
    let gw = stdio_gateway("legacy", true).await;
    let client = Client::new(&gw);
    let listen = Client::modern_body(
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true,
            "resourceSubscriptions": ["pipe+mock://r1"]}}),
        json!({}),
        None,
    );
    let mut stream = client
        .open_stream(
            &listen,
            &Client::modern_headers("subscriptions/listen", None),
        )
        .await;
    let ack = stream.next().await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        11
    );
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    assert!(
        ack["params"]["notifications"]
            .get("promptsListChanged")
            .is_none(),
        "no upstream has prompts"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["pipe+mock://r1"])
    );

    client
        .modern(
            "tools/call",
            json!({"name": "pipe__touch", "arguments": {}}),
        )
        .await
        .result();
    let updated = stream.next().await.unwrap();
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "pipe+mock://r1");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        11
    );
    client
        .modern("tools/call", json!({"name": "pipe__grow", "arguments": {}}))
        .await
        .result();
    let changed = stream.next().await.unwrap();
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        11
    );

    // Shutdown ends the subscription with its result.
    let ending = tokio::spawn(async move {
        let last = stream.next().await;
        (last, stream.next().await)
    });
    gw.shutdown().await;
    let (last, after) = ending.await.unwrap();
    let last = last.unwrap();
    assert_eq!(last["id"], 11);
    assert_eq!(
        last["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        11
    );
    assert!(after.is_none(), "the stream ends");
}

/// The upstream URIs the stdio mock is subscribed to now.
async fn upstream_subscriptions(client: &Client) -> Vec<String> {
    let r = client
        .modern(
            "tools/call",
            json!({"name": "pipe__subscribed", "arguments": {}}),
        )
        .await;
    serde_json::from_str(r.result()["content"][0]["text"].as_str().unwrap()).unwrap()
}

/// Opens a `subscriptions/listen` stream with `filter`; returns it and its acknowledgement.
async fn listen_to(client: &Client, filter: Value) -> (support::Stream, Value) {
    let listen = Client::modern_body(
        "subscriptions/listen",
        json!({ "notifications": filter }),
        json!({}),
        None,
    );
    let mut stream = client
        .open_stream(
            &listen,
            &Client::modern_headers("subscriptions/listen", None),
        )
        .await;
    let ack = stream.next().await.unwrap();
    (stream, ack)
}

#[tokio::test]
async fn listen_subscriptions_are_bounded_and_released_with_their_stream() {
    let gw = stdio_gateway("legacy", true).await;
    let client = Client::new(&gw);
    let many: Vec<String> = (0..500).map(|i| format!("pipe+mock://r{i}")).collect();
    let started = tokio::time::Instant::now();
    let (first, ack) = listen_to(&client, json!({"resourceSubscriptions": many})).await;
    let honoured = ack["params"]["notifications"]["resourceSubscriptions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        honoured,
        mcpgate::downstream::listen_subscriptions::MAX_RESOURCES
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(upstream_subscriptions(&client).await.len(), honoured);
    // A second stream on one of the same resources shares the upstream subscription.
    let (second, ack) = listen_to(&client, json!({"resourceSubscriptions": &many[..1]})).await;
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["pipe+mock://r0"])
    );
    // When a stream ends its subscriptions end upstream, except those another stream holds.
    drop(first);
    eventually(
        10,
        "the first stream's subscriptions are released",
        || async { upstream_subscriptions(&client).await == ["mock://r0"] },
    )
    .await;
    drop(second);
    eventually(10, "every subscription is released", || async {
        upstream_subscriptions(&client).await.is_empty()
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_legacy_session_records_only_subscriptions_that_went_through() {
    let gw = stdio_gateway("legacy", true).await;
    let client = Client::new(&gw);
    let sid = client.initialize().await;
    // A URI of no upstream is refused and not recorded.
    let unknown = client
        .legacy(&sid, "resources/subscribe", json!({"uri": "nowhere+x://y"}))
        .await;
    assert_eq!(unknown.error_code(), -32602);
    let max = mcpgate::downstream::session_state::MAX_SUBSCRIPTIONS;
    for i in 0..max {
        let r = client
            .legacy(
                &sid,
                "resources/subscribe",
                json!({"uri": format!("pipe+mock://r{i}")}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("result").is_some(), "{}", r.body);
    }
    let over = client
        .legacy(
            &sid,
            "resources/subscribe",
            json!({"uri": "pipe+mock://one-more"}),
        )
        .await;
    assert_eq!(over.error_code(), -32602, "{}", over.body);
    let again = client
        .legacy(
            &sid,
            "resources/subscribe",
            json!({"uri": "pipe+mock://r0"}),
        )
        .await;
    assert!(
        again.body.get("result").is_some(),
        "re-subscribing is not a new one"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upstreams_list_change_reaches_listeners_at_once() {
    for era in ["modern", "legacy"] {
        let gw = stdio_gateway(era, true).await;
        let client = Client::new(&gw);
        let (mut stream, ack) = listen_to(&client, json!({"toolsListChanged": true})).await;
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        // The upstream announces the change, then stays busy two more seconds (it handles one
        // request at a time, so the gateway cannot re-list it meanwhile): a client talking to
        // it directly hears of the change at once, so must a client of the gateway.
        let started = tokio::time::Instant::now();
        let call = {
            let client = Client::new(&gw);
            tokio::spawn(async move {
                client
                    .modern(
                        "tools/call",
                        json!({"name": "pipe__grow_slowly", "arguments": {}}),
                    )
                    .await
            })
        };
        let changed = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("a list change")
            .unwrap();
        assert_eq!(
            changed["method"], "notifications/tools/list_changed",
            "{era}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{era}: it took {:?}",
            started.elapsed()
        );
        assert_eq!(
            call.await.unwrap().result()["content"][0]["text"],
            "grown slowly"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_legacy_client_resumes_a_lost_response_stream() {
    let gw = stdio_gateway("legacy", false).await;
    let client = Client::new(&gw);
    let sid = client.initialize_with(caps(ELICIT)).await;
    let call = json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "ask", "arguments": {}}});
    let mut stream = client.open_stream(&call, &[("mcp-session-id", &sid)]).await;
    let request = stream.next().await.unwrap();
    let event_id = stream
        .last_event_id
        .clone()
        .expect("legacy events carry ids");
    drop(stream); // the connection is lost: not a cancellation

    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept", "content": {"name": "Resumed"}}});
    client.post(&answer, &[("mcp-session-id", &sid)]).await;
    let mut resumed = client.resume_stream(&sid, &event_id).await;
    let result = resumed.next().await.unwrap();
    assert_eq!(result["id"], 41);
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Resumed")
    );
    gw.shutdown().await;
}

/// The 2026-07-28 tasks extension (SEP-2663): advertised when an upstream offers it (and only
/// extensions the gateway relays), gated on the client declaring it, task ids namespaced and
/// routed with `Mcp-Name`, the inlined result's URIs rewritten, the removed v1 methods gone.
#[tokio::test]
async fn the_tasks_extension_is_relayed_to_modern_clients() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tasks = true;
    spec.tools
        .push(json!({"name": "job", "inputSchema": {"type": "object"},
        "execution": {"taskSupport": "optional"}}));
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!("listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}\nnamespacing: {{ prefix: always }}\n")).await;
    let client = Client::new(&gw);
    let tasks = caps(r#"{"extensions": {"io.modelcontextprotocol/tasks": {}}}"#);

    let discover = client.modern("server/discover", json!({})).await;
    let capabilities = &discover.result()["capabilities"];
    assert_eq!(
        capabilities["extensions"],
        json!({"io.modelcontextprotocol/tasks": {}}),
        "only extensions the gateway relays are advertised"
    );
    assert!(capabilities.get("tasks").is_none(), "no v1 tasks slot");

    let created = client
        .modern_caps(
            "tools/call",
            json!({"name": "m__job", "arguments": {}}),
            tasks.clone(),
        )
        .await;
    assert_eq!(created.result()["resultType"], "task");
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    assert!(id.starts_with("m+") && id.ends_with(".t1"), "{id}");

    let got = client
        .modern_caps("tasks/get", json!({"taskId": id}), tasks.clone())
        .await;
    assert_eq!(got.result()["taskId"], id);
    assert_eq!(got.result()["resultType"], "complete");
    assert_eq!(
        got.result()["result"]["content"][0]["uri"],
        "m+mock://doc/4"
    );
    let (headers, sent) = mock.requests_for("tasks/get").pop().unwrap();
    assert_eq!(
        sent["params"]["taskId"], "t1",
        "the upstream sees its own id"
    );
    assert_eq!(
        headers["mcp-name"], "t1",
        "Mcp-Name mirrors the upstream's id"
    );

    for method in ["tasks/update", "tasks/cancel"] {
        let ack = client
            .modern_caps(
                method,
                json!({"taskId": id, "inputResponses": {}}),
                tasks.clone(),
            )
            .await;
        assert_eq!(ack.result(), &json!({"resultType": "complete"}), "{method}");
        assert_eq!(
            mock.requests_for(method).len(),
            1,
            "{method} reached the owner"
        );
    }

    let unknown = client
        .modern_caps("tasks/get", json!({"taskId": "nobody+t1"}), tasks.clone())
        .await;
    assert_eq!(unknown.error_code(), -32602);

    let undeclared = client.modern("tasks/get", json!({"taskId": id})).await;
    assert_eq!(undeclared.status, 400);
    assert_eq!(undeclared.error_code(), -32021);
    assert_eq!(
        undeclared.body["error"]["data"]["requiredCapabilities"],
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
    );

    let body = Client::modern_body("tasks/get", json!({"taskId": id}), tasks.clone(), None);
    let mismatched = client
        .post(&body, &Client::modern_headers("tasks/get", Some("m+t2")))
        .await;
    assert_eq!((mismatched.status, mismatched.error_code()), (400, -32020));
    let missing = client
        .post(&body, &Client::modern_headers("tasks/get", None))
        .await;
    assert_eq!((missing.status, missing.error_code()), (400, -32020));

    for removed in ["tasks/result", "tasks/list"] {
        let r = client
            .modern_caps(removed, json!({"taskId": id}), tasks.clone())
            .await;
        assert_eq!((r.status, r.error_code()), (404, -32601), "{removed}");
    }
    assert_eq!(
        mock.requests_for("tasks/get").len(),
        1,
        "rejected requests never left"
    );
    gw.shutdown().await;
}

/// Opens an HTTP+SSE (2024-11-05) connection; returns its event stream (read as it goes) and
/// its message endpoint URL.
async fn sse_connection(gw: &mcpgate::app::Running) -> (support::Stream, String) {
    let base = format!("http://{}", gw.mcp_addr);
    let resp = reqwest::Client::new()
        .get(format!("{base}/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut body = support::Stream::raw(resp);
    let endpoint = body.next_event_data().await.unwrap();
    (body, format!("{base}{endpoint}"))
}

#[tokio::test]
async fn a_busy_http_sse_connection_still_takes_the_clients_notifications_and_answers() {
    let gw = stdio_gateway("legacy", false).await;
    let (_events, endpoint) = sse_connection(&gw).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let (http, endpoint) = (http.clone(), endpoint.clone());
        async move {
            http.post(endpoint)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    assert_eq!(post(init).await, 202);
    let slow = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "slow", "arguments": {}}})
    };
    let limit = mcpgate::downstream::legacy_sse::MAX_IN_FLIGHT as u64;
    for id in 1..=limit {
        assert_eq!(post(slow(id)).await, 202);
    }
    assert_eq!(post(slow(limit + 1)).await, 429, "too many in flight");
    // A notification (here: cancelling one of them) is never refused for that.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "reason": "enough"}});
    assert_eq!(post(cancel).await, 202);
    eventually(5, "the cancelled call frees its place", || async {
        post(slow(100)).await == 202
    })
    .await;
    gw.shutdown().await;
}
