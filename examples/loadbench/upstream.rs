//! The benchmark's upstream: an MCP server that does as little as an MCP server can, so that
//! what is measured is the hop in front of it. HTTP/1.1 keep-alive (hyper), one era per run:
//! legacy (`initialize`, `Mcp-Session-Id`) or modern (`server/discover`, per-request `_meta`).
//! `tools/list` lists `tools` tools (`tool_0` …, and `echo`); `tools/call` answers `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

/// The era the upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Legacy,
    Modern,
}

impl Era {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "legacy" => Some(Self::Legacy),
            "modern" => Some(Self::Modern),
            _ => None,
        }
    }
}

struct Server {
    era: Era,
    /// The `tools/list` result, encoded once.
    tools: Bytes,
    /// An optional JWKS document served at `/jwks` (the full configuration's issuer keys).
    jwks: Option<Bytes>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    method: &'a str,
}

/// Serves until the process ends; returns the bound address.
pub async fn serve(era: Era, tools: usize, jwks: Option<String>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut listed: Vec<Value> = (0..tools)
        .map(|i| {
            json!({"name": format!("tool_{i}"), "description": format!("benchmark tool {i}"),
                   "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}})
        })
        .collect();
    listed.push(
        json!({"name": "echo", "description": "answers ok", "inputSchema": {"type": "object"}}),
    );
    let mut result = json!({"tools": listed});
    if era == Era::Modern {
        result["resultType"] = json!("complete");
    }
    let server = Arc::new(Server {
        era,
        tools: Bytes::from(serde_json::to_vec(&result)?),
        jwks: jwks.map(Bytes::from),
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, Infallible>(server.answer(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

impl Server {
    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == "/jwks" {
            return match &self.jwks {
                Some(doc) => reply(StatusCode::OK, doc.clone(), None),
                None => empty(StatusCode::NOT_FOUND),
            };
        }
        match *request.method() {
            hyper::Method::POST => {}
            hyper::Method::DELETE => return empty(StatusCode::OK),
            _ => return empty(StatusCode::METHOD_NOT_ALLOWED),
        }
        let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
            return empty(StatusCode::BAD_REQUEST);
        };
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&body) else {
            return empty(StatusCode::BAD_REQUEST);
        };
        let Some(id) = envelope.id else {
            return empty(StatusCode::ACCEPTED); // a notification
        };
        let modern = self.era == Era::Modern;
        let (result, session): (Bytes, Option<&str>) = match (envelope.method, modern) {
            ("tools/call", false) => (Bytes::from_static(br#"{"content":[{"type":"text","text":"ok"}]}"#), None),
            ("tools/call", true) => (
                Bytes::from_static(br#"{"resultType":"complete","content":[{"type":"text","text":"ok"}]}"#),
                None,
            ),
            ("tools/list", _) => (self.tools.clone(), None),
            ("ping", _) => (Bytes::from_static(b"{}"), None),
            ("initialize", false) => (
                Bytes::from_static(br#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"loadbench","version":"1"}}"#),
                Some("loadbench-session"),
            ),
            ("server/discover", true) => (
                Bytes::from_static(br#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"loadbench","version":"1"}}}"#),
                None,
            ),
            _ => {
                let error = format!(
                    r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"Method not found"}}}}"#,
                    id.get()
                );
                let status = if modern { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
                return reply(status, Bytes::from(error), None);
            }
        };
        let mut message = Vec::with_capacity(result.len() + id.get().len() + 40);
        message.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        message.extend_from_slice(id.get().as_bytes());
        message.extend_from_slice(br#","result":"#);
        message.extend_from_slice(&result);
        message.push(b'}');
        reply(StatusCode::OK, Bytes::from(message), session)
    }
}

fn reply(status: StatusCode, body: Bytes, session: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(id) = session {
        builder = builder.header("mcp-session-id", id);
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
