//! Method → handler, with names, URIs and ids rewritten both ways.
//!
//! Catalogue methods are answered from the current [`Snapshot`]; call methods are resolved to
//! their owning upstream, rewritten to the upstream's own names, forwarded, and their results'
//! URIs rewritten back to client-facing form. Everything the router does not route on passes
//! through untouched (DESIGN.md §5.3). Results are era-neutral here; the downstream transport
//! adds what its era requires.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalogue::{Catalogue, Entry, ListKind, Snapshot};
use crate::config::UpstreamId;
use crate::error::{GatewayError, TargetKind};
use crate::telemetry::Metrics;
use crate::upstream::{CallContext, Reply};

/// Routes decoded requests.
pub struct Router {
    catalogue: Arc<Catalogue>,
    metrics: Metrics,
}

impl Router {
    /// A router over `catalogue`.
    pub fn new(catalogue: Arc<Catalogue>, metrics: Metrics) -> Self {
        Self { catalogue, metrics }
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// Handles one request: `Ok(Ok(result))`, `Ok(Err(error object))` for an upstream's own
    /// JSON-RPC error (passed through unchanged), or a [`GatewayError`].
    ///
    /// # Errors
    /// [`GatewayError::MethodNotFound`], [`GatewayError::InvalidParams`],
    /// [`GatewayError::UnknownTarget`], [`GatewayError::InvalidCursor`],
    /// [`GatewayError::Upstream`].
    pub async fn handle(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, GatewayError> {
        if let Some(kind) = ListKind::from_method(method) {
            let cursor = match params.as_ref().and_then(|p| p.get("cursor")) {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.as_str()),
                Some(_) => return Err(invalid("`cursor` must be a string")),
            };
            let page =
                self.catalogue
                    .snapshot()
                    .page(kind, cursor, self.catalogue.config.page_size)?;
            return Ok(Ok(page));
        }
        let snapshot = self.catalogue.snapshot();
        let mut params = params.unwrap_or_else(|| json!({}));
        let mut param_headers = Vec::new();
        let (upstream, rewrite) = match method {
            "tools/call" => {
                let tool = resolve_named(&snapshot, &mut params, TargetKind::Tool)?;
                let arguments = params.get("arguments").unwrap_or(&Value::Null);
                param_headers = crate::param_headers::header_values(&tool.param_headers, arguments);
                (tool.upstream.clone(), Rewrite::ToolResult)
            }
            "prompts/get" => (
                resolve_named(&snapshot, &mut params, TargetKind::Prompt)?
                    .upstream
                    .clone(),
                Rewrite::PromptResult,
            ),
            "resources/read" => (
                resolve_uri_param(&snapshot, &mut params)?,
                Rewrite::ReadResult,
            ),
            "completion/complete" => (resolve_completion(&snapshot, &mut params)?, Rewrite::None),
            "ping" => return Ok(Ok(json!({}))),
            _ => {
                return Err(GatewayError::MethodNotFound {
                    method: method.to_string(),
                });
            }
        };
        let call = Forward {
            upstream: &upstream,
            method,
            params,
            param_headers: &param_headers,
            rewrite,
        };
        self.forward(ctx, &snapshot, call).await
    }

    async fn forward(
        &self,
        ctx: &CallContext,
        snapshot: &Snapshot,
        call: Forward<'_>,
    ) -> Result<Reply, GatewayError> {
        let Forward {
            upstream: upstream_id,
            method,
            params,
            param_headers,
            rewrite,
        } = call;
        let Some(upstream) = self.catalogue.upstreams().get(upstream_id.as_str()) else {
            return Err(GatewayError::Upstream {
                upstream: upstream_id.to_string(),
                source: crate::upstream::UpstreamError::Unavailable {
                    detail: "not configured".into(),
                },
            });
        };
        let timer = self
            .metrics
            .request_duration
            .with_label_values(&[method, upstream_id.as_str()])
            .start_timer();
        let outcome = upstream
            .request_with_headers(ctx, method, Some(params), param_headers)
            .await;
        timer.observe_duration();
        let label = match &outcome {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "upstream_error",
        };
        self.metrics
            .requests
            .with_label_values(&[method, upstream_id.as_str(), label])
            .inc();
        match outcome {
            Ok(Ok(mut result)) => {
                rewrite.apply(&mut result, &|uri| snapshot.wire_uri(upstream_id, uri));
                Ok(Ok(result))
            }
            Ok(Err(error)) => Ok(Err(error)),
            Err(source) => {
                tracing::warn!(upstream = %upstream_id, method, error = %source, "upstream call failed");
                Err(GatewayError::Upstream {
                    upstream: upstream_id.to_string(),
                    source,
                })
            }
        }
    }
}

/// One resolved call on its way to its owner.
struct Forward<'a> {
    upstream: &'a UpstreamId,
    method: &'a str,
    /// Params in the upstream's own names.
    params: Value,
    /// `Mcp-Param-*` headers for a modern HTTP upstream.
    param_headers: &'a [(String, String)],
    rewrite: Rewrite,
}

fn invalid(message: &str) -> GatewayError {
    GatewayError::InvalidParams {
        message: message.to_string(),
        transport: false,
    }
}

/// `params.name` → catalogue entry; rewrites the name to the upstream's own.
fn resolve_named(
    snapshot: &Snapshot,
    params: &mut Value,
    kind: TargetKind,
) -> Result<Arc<Entry>, GatewayError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`name` must be a string"))?;
    let entry = match kind {
        TargetKind::Tool => snapshot.tool(name),
        _ => snapshot.prompt(name),
    }
    .ok_or_else(|| GatewayError::UnknownTarget {
        kind,
        name: name.to_string(),
    })?;
    params["name"] = Value::from(entry.original.clone());
    Ok(Arc::clone(entry))
}

/// `params.uri` → owner; rewrites it to the upstream's own URI.
fn resolve_uri_param(snapshot: &Snapshot, params: &mut Value) -> Result<UpstreamId, GatewayError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`uri` must be a string"))?;
    let (upstream, original) =
        snapshot
            .resolve_uri(uri)
            .ok_or_else(|| GatewayError::UnknownTarget {
                kind: TargetKind::Resource,
                name: uri.to_string(),
            })?;
    params["uri"] = Value::from(original);
    Ok(upstream)
}

/// `params.ref` of `completion/complete` → owner; rewrites the prompt name or template URI.
fn resolve_completion(snapshot: &Snapshot, params: &mut Value) -> Result<UpstreamId, GatewayError> {
    let reference = params
        .get_mut("ref")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("`ref` must be an object"))?;
    match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            resolve_named(snapshot, reference, TargetKind::Prompt).map(|e| e.upstream.clone())
        }
        Some("ref/resource") => resolve_uri_param(snapshot, reference),
        _ => Err(invalid("`ref.type` must be ref/prompt or ref/resource")),
    }
}

/// Which URIs of a result point into an upstream's namespace.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    None,
    /// `content[]` blocks of a `CallToolResult`.
    ToolResult,
    /// `messages[].content` of a `GetPromptResult`.
    PromptResult,
    /// `contents[].uri` of a `ReadResourceResult`.
    ReadResult,
}

impl Rewrite {
    fn apply(self, result: &mut Value, wire: &dyn Fn(&str) -> String) {
        match self {
            Self::None => {}
            Self::ToolResult => {
                for block in array_mut(result, "content") {
                    rewrite_block(block, wire);
                }
            }
            Self::PromptResult => {
                for message in array_mut(result, "messages") {
                    match message.get_mut("content") {
                        Some(Value::Array(blocks)) => {
                            blocks.iter_mut().for_each(|b| rewrite_block(b, wire));
                        }
                        Some(block) => rewrite_block(block, wire),
                        None => {}
                    }
                }
            }
            Self::ReadResult => {
                for contents in array_mut(result, "contents") {
                    rewrite_uri(contents, wire);
                }
            }
        }
    }
}

fn array_mut<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Rewrites a `resource_link` block's `uri` or an embedded `resource` block's `resource.uri`.
fn rewrite_block(block: &mut Value, wire: &dyn Fn(&str) -> String) {
    match block.get("type").and_then(Value::as_str) {
        Some("resource_link") => rewrite_uri(block, wire),
        Some("resource") => {
            if let Some(resource) = block.get_mut("resource") {
                rewrite_uri(resource, wire);
            }
        }
        _ => {}
    }
}

fn rewrite_uri(obj: &mut Value, wire: &dyn Fn(&str) -> String) {
    if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
        let rewritten = wire(uri);
        obj["uri"] = Value::from(rewritten);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_uris_in_results() {
        let wire = |u: &str| format!("up+{u}");
        let mut tool = json!({"content": [
            {"type": "text", "text": "file:///not-a-link"},
            {"type": "resource_link", "uri": "file:///a", "name": "a"},
            {"type": "resource", "resource": {"uri": "file:///b", "text": "x"}}
        ], "structuredContent": {"uri": "file:///untouched"}});
        Rewrite::ToolResult.apply(&mut tool, &wire);
        assert_eq!(tool["content"][0]["text"], "file:///not-a-link");
        assert_eq!(tool["content"][1]["uri"], "up+file:///a");
        assert_eq!(tool["content"][2]["resource"]["uri"], "up+file:///b");
        assert_eq!(tool["structuredContent"]["uri"], "file:///untouched");
        let mut read = json!({"contents": [{"uri": "file:///c", "text": "t"}]});
        Rewrite::ReadResult.apply(&mut read, &wire);
        assert_eq!(read["contents"][0]["uri"], "up+file:///c");
        let mut prompt = json!({"messages": [{"role": "user", "content": {"type": "resource", "resource": {"uri": "x:y"}}}]});
        Rewrite::PromptResult.apply(&mut prompt, &wire);
        assert_eq!(
            prompt["messages"][0]["content"]["resource"]["uri"],
            "up+x:y"
        );
    }
}
