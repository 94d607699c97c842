//! Requests and load: the `tools/call` and `tools/list` requests of each era, legacy sessions,
//! a correctness probe, and `oha` (a maintained HTTP load generator) driving the load.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// One HTTP request, repeated by the load generator.
#[derive(Clone, Debug)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// `method` with `params` (a JSON object's members, without braces) for a client of `era`,
/// in `session` (legacy), with `token`.
pub fn request(
    era: &str,
    url: &str,
    method: &str,
    params: &str,
    name: Option<&str>,
    session: Option<&str>,
    token: Option<&str>,
) -> Request {
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "accept".to_string(),
            "application/json, text/event-stream".to_string(),
        ),
    ];
    let body = if era == "modern" {
        headers.push(("mcp-protocol-version".into(), "2026-07-28".into()));
        headers.push(("mcp-method".into(), method.into()));
        if let Some(name) = name {
            headers.push(("mcp-name".into(), name.into()));
        }
        let sep = if params.is_empty() { "" } else { "," };
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params}{sep}{MODERN_META}}}}}"#
        )
    } else {
        headers.push(("mcp-protocol-version".into(), "2025-11-25".into()));
        if let Some(session) = session {
            headers.push(("mcp-session-id".into(), session.into()));
        }
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params}}}}}"#)
    };
    if let Some(token) = token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    Request {
        url: url.into(),
        headers,
        body,
    }
}

/// A `tools/call` of `name`.
pub fn call(
    era: &str,
    url: &str,
    name: &str,
    session: Option<&str>,
    token: Option<&str>,
) -> Request {
    let params = format!(r#""name":"{name}","arguments":{{"x":"benchmark"}}"#);
    request(era, url, "tools/call", &params, Some(name), session, token)
}

/// Sends `request` once; the JSON-RPC response (an SSE answer's last message).
pub async fn send(
    http: &reqwest::Client,
    request: &Request,
) -> Result<(Value, Option<String>), String> {
    let mut builder = http.post(&request.url).body(request.body.clone());
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    let response = builder.send().await.map_err(|e| e.to_string())?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .next_back()
        .unwrap_or(&text)
        .trim()
        .to_string();
    let value: Value = serde_json::from_str(&json).map_err(|e| format!("{status}: {e}: {text}"))?;
    Ok((value, session))
}

/// Opens a legacy session at `url` (`initialize`, then `notifications/initialized`).
pub async fn open_session(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<String, String> {
    let params = r#""protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadbench","version":"1"}"#;
    let init = request("legacy", url, "initialize", params, None, None, token);
    let (answer, session) = send(http, &init).await?;
    if answer.get("result").is_none() {
        return Err(format!("initialize: {answer}"));
    }
    let session = session.ok_or("initialize answered without Mcp-Session-Id")?;
    let mut note = request(
        "legacy",
        url,
        "notifications/initialized",
        "",
        None,
        Some(&session),
        token,
    );
    note.body = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into();
    let mut builder = http.post(url).body(note.body);
    for (k, v) in &note.headers {
        builder = builder.header(k, v);
    }
    builder.send().await.map_err(|e| e.to_string())?;
    Ok(session)
}

/// Checks that `request` (a `tools/call` of `echo`) is answered `ok`.
pub async fn probe(http: &reqwest::Client, request: &Request) -> Result<(), String> {
    let (answer, _) = send(http, request).await?;
    let text = &answer["result"]["content"][0]["text"];
    if text == "ok" {
        Ok(())
    } else {
        Err(format!("{} answered {answer}", request.url))
    }
}

/// What `oha` measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measured {
    pub requests: u64,
    pub ok: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
}

/// How much load: a number of requests, or a duration.
pub enum Amount {
    Requests(u64),
    For(Duration),
}

/// Runs `oha` with `request` at `concurrency`.
pub fn oha(binary: &Path, request: &Request, concurrency: u32, amount: Amount) -> Measured {
    let mut command = Command::new(binary);
    command.args(["--no-tui", "--output-format", "json", "-m", "POST"]);
    command.args(["-c", &concurrency.to_string()]);
    match amount {
        Amount::Requests(n) => command.args(["-n", &n.to_string()]),
        // Calls in flight at the deadline finish (and count): none is cut off.
        Amount::For(d) => command.args(["-w", "-z", &format!("{}ms", d.as_millis())]),
    };
    for (k, v) in &request.headers {
        command.args(["-H", &format!("{k}: {v}")]);
    }
    command.args(["-d", &request.body, &request.url]);
    let out = command.output().unwrap_or_else(|e| {
        panic!(
            "{} does not run: {e} (scripts/setup-bench.sh installs it)",
            binary.display()
        )
    });
    assert!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oha printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let statuses = report["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let ok = statuses.get("200").map_or(0, count);
    let all: u64 = statuses.values().map(count).sum();
    let errors: u64 = report["errorDistribution"]
        .as_object()
        .map_or(0, |e| e.values().map(count).sum());
    let percentile = |p: &str| report["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1e6;
    Measured {
        requests: all + errors,
        ok,
        rps: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_us: percentile("p50"),
        p99_us: percentile("p99"),
        errors: errors + (all - ok),
    }
}

/// Opens `n` legacy sessions at `url`, each with one `tools/call` of `echo` (so the gateway
/// holds its state and an upstream session for it), `concurrency` at a time.
pub async fn sessions(url: &str, echo: &str, token: Option<&str>, n: usize) -> Result<(), String> {
    use futures::StreamExt as _;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|_| {
            let http = &http;
            async move {
                let session = open_session(http, url, token).await?;
                probe(http, &call("legacy", url, echo, Some(&session), token)).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The JSON-RPC `tools/list` request of `era` (legacy needs a session).
pub fn list(era: &str, url: &str, session: Option<&str>, token: Option<&str>) -> Request {
    request(era, url, "tools/list", "", None, session, token)
}

/// Number of tools in a `tools/list` answer.
pub async fn listed(http: &reqwest::Client, request: &Request) -> Result<usize, String> {
    let (answer, _) = send(http, request).await?;
    answer["result"]["tools"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("tools/list answered {answer}"))
}

/// The value of one Prometheus sample in `text` (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
