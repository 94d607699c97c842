//! Shared helpers for the in-process integration tests: start mcpgate and mock upstreams on
//! 127.0.0.1:0, and speak to the gateway in either era with plain HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod idp;
pub mod mock_http;
pub mod pki;
pub mod process;
pub mod redis;
pub mod token_endpoint;

use std::path::Path;

use mcpgate::app::Running;
use mcpgate::config::Config;
use serde_json::{Value, json};

/// Serves `app` on 127.0.0.1:0 until the returned task is aborted or the runtime ends.
pub async fn serve(app: axum::Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

/// The Prometheus text of the gateway's operations endpoint.
pub async fn metrics(running: &Running) -> String {
    let addr = running.admin_addr.expect("an admin listener");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("admin reachable")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one sample (`name{labels}`, labels in Prometheus's sorted order) in
/// Prometheus text, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Hex SHA-256 of `text` (how API keys are configured).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a gateway from YAML (paths relative to the crate root). Unless the YAML sets
/// `shutdown:`, its shutdown skips the drain delay (no load balancer watches a test's
/// gateway; tests/e2e/test_shutdown.py drives the drain through the binary).
pub async fn gateway(yaml: &str) -> Running {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::from_yaml(yaml, Path::new("test.yaml"), root, &|_| None)
        .expect("valid test config");
    if !yaml.contains("shutdown:") {
        config.shutdown.drain_delay = std::time::Duration::ZERO;
    }
    mcpgate::app::start(config).await.expect("gateway starts")
}

/// A gateway in front of one stdio mock, upstream id `pipe`, in `era`; `prefixed` forces prefix
/// mode `always` (else `conditional`: no prefix for a single upstream).
pub async fn stdio_gateway(era: &str, prefixed: bool) -> Running {
    let prefix = if prefixed { "always" } else { "conditional" };
    gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}\nupstreams:\n  - {{ id: pipe, stdio: {} }}\nnamespacing: {{ prefix: {prefix} }}\n",
        stdio_mock(era)
    ))
    .await
}

/// The command line of the stdio mock in `era`.
pub fn stdio_mock(era: &str) -> String {
    stdio_mock_with(era, &[])
}

/// The command line of the stdio mock in `era` with `options` (e.g. `tasks`).
pub fn stdio_mock_with(era: &str, options: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mock_stdio.py");
    let extra: String = options.iter().map(|o| format!(", \"{o}\"")).collect();
    format!(
        "{{ command: python3, args: [\"{}\", \"{era}\"{extra}] }}",
        script.display()
    )
}

/// A reply: HTTP status, headers, JSON body (if any).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The JSON body, or for an SSE answer the final JSON-RPC response on the stream.
    pub body: Value,
    /// For an SSE answer, every message on the stream in order (the final one included).
    pub stream: Vec<Value>,
}

impl Reply {
    pub fn result(&self) -> &Value {
        assert!(
            self.body.get("result").is_some(),
            "expected a result, got {} {}",
            self.status,
            self.body
        );
        &self.body["result"]
    }

    pub fn error_code(&self) -> i64 {
        self.body["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected an error, got {}", self.body))
    }
}

/// A client of one gateway.
pub struct Client {
    pub url: String,
    http: reqwest::Client,
    /// Headers sent with every request (credentials).
    extra: Vec<(String, String)>,
}

impl Client {
    pub fn new(running: &Running) -> Self {
        Self {
            url: format!("http://{}/mcp", running.mcp_addr),
            http: reqwest::Client::new(),
            extra: Vec::new(),
        }
    }

    /// A client of the endpoint `url` over `http` (e.g. HTTPS with a test CA).
    pub fn over(url: String, http: reqwest::Client) -> Self {
        Self {
            url,
            http,
            extra: Vec::new(),
        }
    }

    /// A request to the endpoint carrying this client's own headers (credentials).
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.extra
            .iter()
            .fold(self.http.request(method, &self.url), |req, (k, v)| {
                req.header(k, v)
            })
    }

    /// The same client sending `Authorization: Bearer {token}` with every request.
    pub fn bearer(&self, token: &str) -> Self {
        self.with_header("authorization", &format!("Bearer {token}"))
    }

    /// The same client sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut extra = self.extra.clone();
        extra.push((name.to_string(), value.to_string()));
        Self {
            url: self.url.clone(),
            http: self.http.clone(),
            extra,
        }
    }

    pub async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.raw(
            reqwest::Method::POST,
            Some(body.to_string().into_bytes()),
            headers,
        )
        .await
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .request(method)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.expect("gateway reachable");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let is_sse = headers.get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .starts_with("text/event-stream")
        });
        let bytes = resp.bytes().await.expect("body");
        if is_sse {
            let stream = parse_sse(std::str::from_utf8(&bytes).expect("UTF-8 stream"));
            let body = stream
                .iter()
                .rev()
                .find(|m| m.get("result").is_some() || m.get("error").is_some())
                .cloned()
                .unwrap_or(Value::Null);
            return Reply {
                status,
                headers,
                body,
                stream,
            };
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Reply {
            status,
            headers,
            body,
            stream: Vec::new(),
        }
    }

    /// A modern request with correct `_meta` and headers, declaring `capabilities`.
    pub async fn modern_caps(&self, method: &str, params: Value, capabilities: Value) -> Reply {
        let name = mcpgate::protocol::name_field(method)
            .and_then(|field| params.get(field))
            .and_then(Value::as_str)
            .map(mcpgate::protocol::encode_header_value);
        let body = Self::modern_body(method, params, capabilities, None);
        self.post(&body, &Self::modern_headers(method, name.as_deref()))
            .await
    }

    /// A modern request with correct `_meta` and headers.
    pub async fn modern(&self, method: &str, params: Value) -> Reply {
        self.modern_caps(method, params, json!({})).await
    }

    /// Opens a legacy session; returns its id.
    pub async fn initialize(&self) -> String {
        let r = self
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let sid = r.headers["mcp-session-id"].to_str().unwrap().to_string();
        let note = self
            .post(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &[("mcp-session-id", &sid)],
            )
            .await;
        assert_eq!(note.status, 202);
        sid
    }

    /// A request inside a legacy session.
    /// Calls the mock's `mktask` tool in session `sid`; the client-facing id of the task it
    /// creates.
    pub async fn make_task(&self, sid: &str) -> String {
        let created = self
            .legacy(
                sid,
                "tools/call",
                json!({"name": "mktask", "arguments": {}}),
            )
            .await;
        created.result()["task"]["taskId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn legacy(&self, sid: &str, method: &str, params: Value) -> Reply {
        self.post(
            &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
            &[
                ("mcp-session-id", sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await
    }

    /// Every entry of a merged list, following cursors (modern era).
    pub async fn list_all(&self, method: &str, member: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let r = self.modern(method, params).await;
            let result = r.result().clone();
            items.extend(result[member].as_array().cloned().unwrap_or_default());
            pages += 1;
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => return (items, pages),
            }
        }
    }
}

/// The JSON messages of an SSE body, in order.
pub fn parse_sse(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).expect("JSON event"))
        })
        .collect()
}

/// Waits until `check` passes, polling every 50 ms, at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An SSE answer read message by message while it is still open.
pub struct Stream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The `id:` of the last event read, if it had one.
    pub last_event_id: Option<String>,
}

impl Stream {
    /// The SSE body of `resp`, read as it comes.
    pub fn raw(resp: reqwest::Response) -> Self {
        Stream {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
            last_event_id: None,
        }
    }

    /// The `data` of the next event with data, whatever it holds; `None` when the stream ends.
    pub async fn next_event_data(&mut self) -> Option<String> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    return Some(data.join("\n"));
                }
                continue;
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next JSON-RPC message on the stream, `None` when it ends.
    pub async fn next(&mut self) -> Option<Value> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id:")) {
                    self.last_event_id = Some(id.trim().to_string());
                }
                if let Some(message) = parse_sse(&event).pop() {
                    return Some(message);
                }
                continue;
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

impl Client {
    /// POSTs and returns the answer as a stream (panics if it is not SSE).
    pub async fn open_stream(&self, body: &Value, headers: &[(&str, &str)]) -> Stream {
        let mut req = self
            .request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("gateway reachable");
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream",
            "expected a stream"
        );
        Stream {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
            last_event_id: None,
        }
    }

    /// Opens a legacy session declaring `capabilities`.
    pub async fn initialize_with(&self, capabilities: Value) -> String {
        let r = self
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}}),
                &[],
            )
            .await;
        r.headers["mcp-session-id"].to_str().unwrap().to_string()
    }

    /// A modern request body with `_meta` carrying `capabilities` (and optional log level).
    pub fn modern_body(
        method: &str,
        mut params: Value,
        capabilities: Value,
        log_level: Option<&str>,
    ) -> Value {
        // The request's own `_meta` entries stay; the protocol's are set.
        let mut meta = match params.get("_meta") {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        meta.insert(
            "io.modelcontextprotocol/protocolVersion".into(),
            json!("2026-07-28"),
        );
        meta.insert(
            "io.modelcontextprotocol/clientCapabilities".into(),
            capabilities,
        );
        params["_meta"] = Value::Object(meta);
        if let Some(level) = log_level {
            params["_meta"]["io.modelcontextprotocol/logLevel"] = json!(level);
        }
        json!({"jsonrpc": "2.0", "id": 11, "method": method, "params": params})
    }

    /// The headers a modern request with `name` needs.
    pub fn modern_headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if let Some(n) = name {
            h.push(("mcp-name", n));
        }
        h
    }
}

impl Client {
    /// Opens the legacy standalone event stream (`GET /mcp`) of a session.
    pub async fn open_get_stream(&self, sid: &str) -> Stream {
        let resp = self
            .request(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .send()
            .await
            .expect("gateway reachable");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Stream {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
            last_event_id: None,
        }
    }
}

impl Client {
    /// Reconnects to a legacy response stream after `last_event_id`.
    pub async fn resume_stream(&self, sid: &str, last_event_id: &str) -> Stream {
        let resp = self
            .request(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .header("last-event-id", last_event_id)
            .send()
            .await
            .expect("gateway reachable");
        assert_eq!(resp.status(), 200);
        Stream {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
            last_event_id: None,
        }
    }
}
