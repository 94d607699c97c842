//! An in-process MCP server over Streamable HTTP, in either era, that records what it receives.
//! It behaves like the SDK servers in the wild: a legacy server answers `server/discover` without
//! a session with 400 and a non-modern error; a modern server validates the mirrored headers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which era the mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockEra {
    Legacy,
    Modern,
}

/// What the mock serves.
pub struct MockSpec {
    pub era: MockEra,
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    /// Entries per upstream page.
    pub page_size: usize,
    /// Answer `tools/call` as an SSE stream (progress notification, then the response).
    pub sse: bool,
    /// Modern: announce `tools.listChanged` (and answer `subscriptions/listen`).
    pub list_changed: bool,
    /// Modern: advertise the tasks extension (and an extension the gateway does not know);
    /// tool `job` creates task `t1`, which `tasks/get` shows completed.
    pub tasks: bool,
    /// `Authorization` values answered with 401 and a `WWW-Authenticate` challenge; `"*"`
    /// refuses everything.
    pub reject_authorization: Vec<String>,
    /// Legacy: serve `GET` (the standalone stream of a session) as an SSE stream that stays
    /// open; else `GET` is 405.
    pub get_stream: bool,
    /// Answer every `GET` with 401.
    pub reject_get: bool,
    /// Legacy: announce `tasks.list` and answer `tasks/list` with one task per page and a next
    /// cursor, forever.
    pub endless_tasks: bool,
    /// Legacy: announce `tasks.list`; the `mktask` tool (listed only when a test adds it)
    /// creates task `L<n>` (a 2025-11-25 `CreateTaskResult`), and `tasks/list` lists every
    /// task created, whoever created it (one server behind several gateway replicas).
    pub listed_tasks: bool,
    /// Tasks created with `mktask`.
    pub created_tasks: Vec<Value>,
    /// Answer `ping` with a JSON-RPC error (in an HTTP 200), as a sick server might.
    pub ping_error: bool,
    /// Answer this many `resources/read` with HTTP 503 before serving them.
    pub unavailable_reads: usize,
    /// Legacy: the status of a request with an unknown `Mcp-Session-Id`: 404 as the spec says,
    /// or 400 as the TypeScript SDK's example servers (server-everything) answer.
    pub unknown_session_status: StatusCode,
}

impl MockSpec {
    pub fn new(era: MockEra) -> Self {
        Self {
            era,
            tools: ["echo", "link", "slow", "garbage", "http500", "fail", "ask"]
                .iter()
                .map(|n| json!({"name": n, "description": format!("mock {n}"), "inputSchema": {"type": "object"}, "x-vendor": {"keep": true}}))
                .collect(),
            prompts: vec![json!({"name": "greet", "arguments": [{"name": "who"}]})],
            resources: vec![json!({"uri": "mock://doc/1", "name": "doc1", "mimeType": "text/plain"})],
            templates: vec![json!({"uriTemplate": "mock://doc/{id}", "name": "doc"})],
            page_size: 4,
            sse: false,
            list_changed: false,
            tasks: false,
            reject_authorization: Vec::new(),
            listed_tasks: false,
            created_tasks: Vec::new(),
            get_stream: false,
            reject_get: false,
            endless_tasks: false,
            ping_error: false,
            unavailable_reads: 0,
            unknown_session_status: StatusCode::NOT_FOUND,
        }
    }
}

/// What the mock saw.
#[derive(Default)]
pub struct Seen {
    pub initializes: AtomicUsize,
    pub discovers: AtomicUsize,
    pub deleted: Mutex<Vec<String>>,
    /// Every request body received, with its headers.
    pub requests: Mutex<Vec<(HeaderMap, Value)>>,
    /// The headers of every `GET` received.
    pub gets: Mutex<Vec<HeaderMap>>,
    /// `GET` streams open now.
    pub open_gets: Arc<AtomicUsize>,
}

pub struct Mock {
    pub spec: Mutex<MockSpec>,
    pub seen: Seen,
    sessions: Mutex<HashSet<String>>,
    next_session: AtomicUsize,
}

impl Mock {
    /// Forgets every session, as a restarted server would (the next request gets 404).
    pub fn expire_sessions(&self) {
        self.sessions.lock().unwrap().clear();
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// Requests received for `method`.
    pub fn requests_for(&self, method: &str) -> Vec<(HeaderMap, Value)> {
        self.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b["method"] == method)
            .cloned()
            .collect()
    }
}

/// Starts a mock on 127.0.0.1:0; it stops when the returned handle is aborted or dropped with
/// the runtime.
pub async fn start(spec: MockSpec) -> (SocketAddr, Arc<Mock>, tokio::task::JoinHandle<()>) {
    let mock = Arc::new(Mock {
        spec: Mutex::new(spec),
        seen: Seen::default(),
        sessions: Mutex::new(HashSet::new()),
        next_session: AtomicUsize::new(1),
    });
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(post).delete(delete).get(get))
        .with_state(Arc::clone(&mock));
    let (addr, task) = super::serve(app).await;
    (addr, mock, task)
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Decrements the open-stream count when a `GET` stream ends.
struct OpenGet(Arc<AtomicUsize>);

impl Drop for OpenGet {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn get(State(mock): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    mock.seen.gets.lock().unwrap().push(headers.clone());
    let (enabled, reject) = {
        let spec = mock.spec.lock().unwrap();
        (spec.get_stream, spec.reject_get)
    };
    if reject {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    }
    if !enabled {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let known = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| mock.sessions.lock().unwrap().contains(s));
    if !known {
        let status = mock.spec.lock().unwrap().unknown_session_status;
        return status.into_response();
    }
    mock.seen.open_gets.fetch_add(1, Ordering::SeqCst);
    let guard = OpenGet(Arc::clone(&mock.seen.open_gets));
    let ticks = futures::stream::unfold(guard, |guard| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b": keep-alive\n\n")),
            guard,
        ))
    });
    (
        StatusCode::OK,
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(ticks),
    )
        .into_response()
}

async fn delete(State(mock): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    mock.sessions.lock().unwrap().remove(&sid);
    mock.seen.deleted.lock().unwrap().push(sid);
    StatusCode::OK.into_response()
}

async fn post(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error(Value::Null, -32700, "parse error"),
        );
    };
    mock.seen
        .requests
        .lock()
        .unwrap()
        .push((headers.clone(), msg.clone()));
    let refused = {
        let spec = mock.spec.lock().unwrap();
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        spec.reject_authorization
            .iter()
            .any(|r| r == "*" || Some(r.as_str()) == auth)
    };
    if refused {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\", resource_metadata=\"http://upstream.test/.well-known/oauth-protected-resource\"")],
            "",
        )
            .into_response();
    }
    let id = msg.get("id").cloned();
    let method = msg["method"].as_str().unwrap_or_default().to_string();
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let era = mock.spec.lock().unwrap().era;
    let Some(id) = id else {
        return StatusCode::ACCEPTED.into_response();
    };
    match era {
        MockEra::Legacy => {
            if method == "initialize" {
                mock.seen.initializes.fetch_add(1, Ordering::SeqCst);
                let sid = format!(
                    "mock-session-{}",
                    mock.next_session.fetch_add(1, Ordering::SeqCst)
                );
                mock.sessions.lock().unwrap().insert(sid.clone());
                let version = params["protocolVersion"].as_str().unwrap_or("2025-11-25");
                let mut result = json!({"protocolVersion": version, "serverInfo": {"name": "mock-legacy", "version": "1"},
                    "capabilities": {"tools": {}, "prompts": {}, "resources": {}, "completions": {}},
                    "instructions": "Legacy mock instructions."});
                if mock.spec.lock().unwrap().endless_tasks || mock.spec.lock().unwrap().listed_tasks
                {
                    result["capabilities"]["tasks"] = json!({"list": {}});
                }
                let mut r = json_response(
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "id": id, "result": result}),
                );
                r.headers_mut()
                    .insert("mcp-session-id", HeaderValue::from_str(&sid).unwrap());
                return r;
            }
            let sid = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
            match sid {
                None => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        rpc_error(Value::Null, -32000, "Bad Request: Server not initialized"),
                    );
                }
                Some(s) if !mock.sessions.lock().unwrap().contains(s) => {
                    let status = mock.spec.lock().unwrap().unknown_session_status;
                    return json_response(
                        status,
                        rpc_error(Value::Null, -32001, "Session not found"),
                    );
                }
                Some(_) => {}
            }
        }
        MockEra::Modern => {
            let meta_version = params["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str();
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if meta_version.is_none() || header("mcp-protocol-version").as_deref() != meta_version {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    rpc_error(id, -32020, "protocol version header mismatch"),
                );
            }
            if header("mcp-method").as_deref() != Some(method.as_str()) {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    rpc_error(id, -32020, "Mcp-Method mismatch"),
                );
            }
            let name = mcpgate::protocol::name_field(&method)
                .map(|field| params.get(field).and_then(Value::as_str));
            if let Some(name) = name
                && header("mcp-name").as_deref() != name
            {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    rpc_error(id, -32020, "Mcp-Name mismatch"),
                );
            }
            if method == "server/discover" {
                mock.seen.discovers.fetch_add(1, Ordering::SeqCst);
                let (list_changed, tasks) = {
                    let spec = mock.spec.lock().unwrap();
                    (spec.list_changed, spec.tasks)
                };
                let mut result = json!({"resultType": "complete", "supportedVersions": ["2026-07-28"], "ttlMs": 0, "cacheScope": "public",
                    "capabilities": {"tools": {"listChanged": list_changed}, "prompts": {}, "resources": {}},
                    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mock-modern", "version": "1"}}});
                if tasks {
                    result["capabilities"]["extensions"] = json!({
                        "io.modelcontextprotocol/tasks": {}, "com.example/unrelayed": {}});
                }
                return json_response(
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "id": id, "result": result}),
                );
            }
            if method == "subscriptions/listen" {
                let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                    "params": {"notifications": {"toolsListChanged": true}, "_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
                let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                    "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
                let body =
                    format!("event: message\ndata: {ack}\n\nevent: message\ndata: {changed}\n\n");
                return (
                    StatusCode::OK,
                    [("content-type", "text/event-stream")],
                    body,
                )
                    .into_response();
            }
            if method == "initialize" {
                return json_response(
                    StatusCode::NOT_FOUND,
                    rpc_error(id, -32601, "Method not found"),
                );
            }
        }
    }
    answer(&mock, era, id, &method, &params).await
}

fn page(items: &[Value], cursor: Option<&str>, size: usize, member: &str) -> Value {
    let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = items.len().min(start + size);
    let mut result = json!({ member: items[start..end].to_vec() });
    if end < items.len() {
        result["nextCursor"] = json!(end.to_string());
    }
    result
}

async fn answer(mock: &Mock, era: MockEra, id: Value, method: &str, params: &Value) -> Response {
    if method == "resources/read" {
        let mut spec = mock.spec.lock().unwrap();
        if spec.unavailable_reads > 0 {
            spec.unavailable_reads -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    }
    if method == "tools/call" && params["name"] == "mktask" {
        let mut spec = mock.spec.lock().unwrap();
        let task = json!({"taskId": format!("L{}", spec.created_tasks.len() + 1), "status": "working", "ttl": 60000,
            "createdAt": "2026-11-22T00:00:00Z", "lastUpdatedAt": "2026-11-22T00:00:00Z"});
        spec.created_tasks.push(task.clone());
        return json_response(
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "result": {"task": task}}),
        );
    }
    if method == "ping" {
        let sick = mock.spec.lock().unwrap().ping_error;
        let body = if sick {
            rpc_error(id, -32603, "database is down")
        } else {
            json!({"jsonrpc": "2.0", "id": id, "result": {}})
        };
        return json_response(StatusCode::OK, body);
    }
    let tasks = mock.spec.lock().unwrap().tasks;
    let (result, sse) = {
        let spec = mock.spec.lock().unwrap();
        let cursor = params.get("cursor").and_then(Value::as_str);
        let result = match method {
            "tools/list" => page(&spec.tools, cursor, spec.page_size, "tools"),
            "prompts/list" => page(&spec.prompts, cursor, spec.page_size, "prompts"),
            "resources/list" => page(&spec.resources, cursor, spec.page_size, "resources"),
            "resources/templates/list" => {
                page(&spec.templates, cursor, spec.page_size, "resourceTemplates")
            }
            "resources/read" => {
                let uri = params["uri"].as_str().unwrap_or_default();
                if !uri.starts_with("mock://") {
                    return json_response(
                        StatusCode::OK,
                        rpc_error(id, -32002, "Resource not found"),
                    );
                }
                json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("content of {uri}")}]})
            }
            "prompts/get" => json!({"description": "greeting", "messages": [
                {"role": "user", "content": {"type": "text", "text": format!("Hello {}", params["arguments"]["who"].as_str().unwrap_or("?"))}},
                {"role": "user", "content": {"type": "resource", "resource": {"uri": "mock://doc/1", "text": "doc"}}}]}),
            "completion/complete" => {
                json!({"completion": {"values": [format!("{}-done", params["argument"]["value"].as_str().unwrap_or(""))], "hasMore": false},
                "x-ref": params["ref"].clone()})
            }
            "tools/call" => match params["name"].as_str().unwrap_or_default() {
                "echo" => {
                    json!({"content": [{"type": "text", "text": params["arguments"]["message"].clone()}],
                    "structuredContent": {"echo": params["arguments"].clone(), "meta": params.get("_meta").cloned()},
                    "x-extra": {"nested": [1, 2, 3]}, "_meta": {"vendor/trace": "abc"}})
                }
                "link" => {
                    json!({"content": [{"type": "resource_link", "uri": "mock://doc/2", "name": "doc2"},
                    {"type": "resource", "resource": {"uri": "mock://doc/3", "text": "three"}}]})
                }
                "fail" => {
                    json!({"isError": true, "content": [{"type": "text", "text": "tool failed on purpose"}]})
                }
                // Listed only when a test adds it (with `tasks`).
                "job" => json!({"resultType": "task", "taskId": "t1", "status": "working",
                    "createdAt": "2026-11-22T00:00:00Z", "lastUpdatedAt": "2026-11-22T00:00:00Z", "ttlMs": 60000}),
                // MRTR (modern): ask for a name, answer once it arrives with the state echoed.
                "ask" => match (params.get("inputResponses"), params.get("requestState")) {
                    (Some(responses), Some(state)) if state == "mock-state-1" => {
                        let name = responses["name"]["content"]["name"].as_str().unwrap_or("?");
                        json!({"content": [{"type": "text", "text": format!("hello {name}")}]})
                    }
                    _ => json!({"resultType": "input_required", "requestState": "mock-state-1",
                        "inputRequests": {"name": {"method": "elicitation/create", "params": {"mode": "form",
                            "message": "Your name?", "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}),
                },
                "slow" => {
                    let ms = params["arguments"]["ms"].as_u64().unwrap_or(1000);
                    drop(spec);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    return json_response(
                        StatusCode::OK,
                        json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}),
                    );
                }
                // Listed only when a test adds it: `ticks` progress notifications `every_ms`
                // apart (the first after `first_ms`, default `every_ms`) on an SSE stream, then
                // the result.
                "ticking" => {
                    let ticks = params["arguments"]["ticks"].as_u64().unwrap_or(3);
                    let every = Duration::from_millis(
                        params["arguments"]["every_ms"].as_u64().unwrap_or(100),
                    );
                    let first = params["arguments"]["first_ms"]
                        .as_u64()
                        .map_or(every, Duration::from_millis);
                    let token = params["_meta"]["progressToken"].clone();
                    let done = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "ticked"}]}});
                    let events = futures::stream::unfold(0, move |n| {
                        let (token, done) = (token.clone(), done.clone());
                        async move {
                            if n > ticks {
                                return None;
                            }
                            tokio::time::sleep(if n == 0 { first } else { every }).await;
                            let message = if n == ticks {
                                done
                            } else {
                                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                    "params": {"progressToken": token, "progress": n + 1, "total": ticks}})
                            };
                            let event = Bytes::from(format!("event: message\ndata: {message}\n\n"));
                            Some((Ok::<_, std::convert::Infallible>(event), n + 1))
                        }
                    });
                    return (
                        StatusCode::OK,
                        [("content-type", "text/event-stream")],
                        axum::body::Body::from_stream(events),
                    )
                        .into_response();
                }
                "garbage" => {
                    return (
                        StatusCode::OK,
                        [("content-type", "application/json")],
                        "<html>oops</html>",
                    )
                        .into_response();
                }
                // Listed only when a test adds it: an 8 MiB answer in one SSE event, sent in
                // 8 KiB chunks.
                "big_sse" => {
                    let text = "y".repeat(8 * 1024 * 1024);
                    let event = format!(
                        "event: message\ndata: {}\n\n",
                        json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
                    );
                    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = event
                        .into_bytes()
                        .chunks(8 * 1024)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect();
                    return (
                        StatusCode::OK,
                        [("content-type", "text/event-stream")],
                        axum::body::Body::from_stream(futures::stream::iter(chunks)),
                    )
                        .into_response();
                }
                // Listed only when a test adds it: an SSE stream that ends after a progress
                // notification, without the response.
                "cut" => {
                    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": params["_meta"]["progressToken"].clone(), "progress": 1}});
                    return (
                        StatusCode::OK,
                        [("content-type", "text/event-stream")],
                        format!("event: message\ndata: {progress}\n\n"),
                    )
                        .into_response();
                }
                // Listed only when a test adds it: an SSE event that never ends (no blank line).
                "endless_event" => {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    let head = futures::stream::once(async {
                        Ok::<_, std::convert::Infallible>(Bytes::from_static(
                            b"event: message\ndata: ",
                        ))
                    });
                    let body = futures::StreamExt::chain(
                        head,
                        futures::stream::repeat_with(move || Ok(chunk.clone())),
                    );
                    return (
                        StatusCode::OK,
                        [("content-type", "text/event-stream")],
                        axum::body::Body::from_stream(body),
                    )
                        .into_response();
                }
                // Listed only when a test adds them: `application/json` with a progress
                // notification on its own line before the response, or before garbage.
                name @ ("chatty" | "chatty_garbage") => {
                    let token = params["_meta"]["progressToken"].clone();
                    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": 1, "total": 2}});
                    let last = if name == "chatty" {
                        json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "chatted"}]}})
                            .to_string()
                    } else {
                        "<html>oops</html>".to_string()
                    };
                    return (
                        StatusCode::OK,
                        [("content-type", "application/json")],
                        format!("{progress}\n{last}\n"),
                    )
                        .into_response();
                }
                "http500" => {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded")
                        .into_response();
                }
                other => {
                    return json_response(
                        StatusCode::OK,
                        rpc_error(id, -32602, &format!("Unknown tool: {other}")),
                    );
                }
            },
            "tasks/list" if spec.listed_tasks => json!({"tasks": spec.created_tasks.clone()}),
            "tasks/list" if spec.endless_tasks => {
                let n: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
                json!({"tasks": [{"taskId": format!("t{n}"), "status": "working",
                    "createdAt": "2026-11-22T00:00:00Z", "lastUpdatedAt": "2026-11-22T00:00:00Z", "ttl": 60000}],
                    "nextCursor": (n + 1).to_string()})
            }
            "tasks/get" | "tasks/update" | "tasks/cancel" => {
                if !tasks {
                    return json_response(
                        StatusCode::NOT_FOUND,
                        rpc_error(id, -32601, "Method not found"),
                    );
                }
                if params["taskId"] != "t1" {
                    return json_response(StatusCode::OK, rpc_error(id, -32602, "Unknown task"));
                }
                if method == "tasks/get" {
                    json!({"taskId": "t1", "status": "completed", "createdAt": "2026-11-22T00:00:00Z",
                        "lastUpdatedAt": "2026-11-22T00:00:01Z", "ttlMs": 60000,
                        "result": {"content": [{"type": "resource_link", "uri": "mock://doc/4", "name": "doc4"}]}})
                } else {
                    json!({})
                }
            }
            _ => {
                let status = if era == MockEra::Modern {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                return json_response(status, rpc_error(id, -32601, "Method not found"));
            }
        };
        (result, spec.sse && method == "tools/call")
    };
    let mut result = result;
    if era == MockEra::Modern && result.get("resultType").is_none() {
        result["resultType"] = json!("complete");
    }
    let response = json!({"jsonrpc": "2.0", "id": id, "result": result});
    if sse {
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
        let body =
            format!("event: message\ndata: {progress}\n\nevent: message\ndata: {response}\n\n");
        return (
            StatusCode::OK,
            [("content-type", "text/event-stream")],
            body,
        )
            .into_response();
    }
    json_response(StatusCode::OK, response)
}
