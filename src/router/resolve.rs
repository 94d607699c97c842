//! The first two stages of a call: resolve what it names to the upstream that owns it
//! (rewriting names and URIs to the upstream's own) and decide it by policy. A denied call
//! fails exactly as an unknown one would.

use serde_json::{Value, json};

use super::guard::Guard;
use super::rewrite::Rewrite;
use super::{Router, resolve_completion, resolve_named, resolve_uri_param, tasks};
use crate::catalogue::{ListKind, Snapshot};
use crate::config::UpstreamId;
use crate::error::{GatewayError, TargetKind};
use crate::policy::Kind;
use crate::upstream::{CallContext, Reply};

/// What resolving a request came to.
#[expect(
    clippy::large_enum_variant,
    reason = "one per call, moved once on the stack; boxing would allocate on every call"
)]
pub(super) enum Resolution {
    /// Answered without an upstream call (`ping`, `tasks/list`, `resources/unsubscribe`).
    Reply(Reply),
    /// A call for the next stages.
    Target(Target),
}

/// A resolved, allowed call.
pub(super) struct Target {
    /// Its owner.
    pub upstream: UpstreamId,
    /// Params in the upstream's own names.
    pub params: Value,
    /// `Mcp-Param-*` headers for a modern HTTP upstream.
    pub param_headers: Vec<(String, String)>,
    /// How the result is rewritten back.
    pub rewrite: Rewrite,
    /// The policy decision that let it through, if policies are configured.
    pub decision: Option<super::Decision>,
    /// The canonical target (`upstream/name`), for the audit record.
    pub canonical: Option<String>,
    /// For `tools/call`: the upstream's own tool name (per-tool limits and timeout).
    pub tool: Option<String>,
}

impl Router {
    /// Resolves a call method's request and decides it (lists are paged before this).
    ///
    /// # Errors
    /// [`GatewayError::MethodNotFound`], [`GatewayError::InvalidParams`],
    /// [`GatewayError::UnknownTarget`] (also for a denied target).
    pub(super) async fn resolve(
        &self,
        ctx: &CallContext,
        snapshot: &Snapshot,
        guard: &Guard<'_>,
        owner: &str,
        method: &str,
        params: Option<Value>,
    ) -> Result<Resolution, GatewayError> {
        let mut params = params.unwrap_or_else(|| json!({}));
        // The client-facing name, for the "unknown" answer to a denied call.
        let named = params.get("ref").unwrap_or(&params);
        let wire_name = ["name", "uri", "taskId"]
            .iter()
            .find_map(|k| named.get(*k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let unknown = |kind| {
            let name = wire_name.clone();
            move || GatewayError::UnknownTarget { kind, name }
        };
        let mut param_headers = Vec::new();
        let mut tool_name = None;
        let decision;
        let canonical;
        let (upstream, rewrite) = match method {
            "tools/call" => {
                let tool = resolve_named(snapshot, &mut params, TargetKind::Tool)?;
                decision = guard.check(
                    Kind::Tool,
                    tool.target.as_deref(),
                    Some(&tool.value),
                    unknown(TargetKind::Tool),
                )?;
                let arguments = params.get("arguments").unwrap_or(&Value::Null);
                param_headers = crate::param_headers::header_values(&tool.param_headers, arguments);
                tool_name = Some(tool.original.clone());
                canonical = tool.target.clone();
                (tool.upstream.clone(), Rewrite::ToolResult)
            }
            "tasks/get" | "tasks/update" | "tasks/result" | "tasks/cancel" => {
                let rewrite = if method == "tasks/result" {
                    Rewrite::TaskPayload
                } else {
                    Rewrite::Task
                };
                let upstream = tasks::resolve(snapshot, &mut params, &self.task_ids, owner)?;
                let task_id = params["taskId"].as_str().unwrap_or_default();
                let target = format!("{upstream}/{task_id}");
                decision =
                    guard.check(Kind::Task, Some(&target), None, unknown(TargetKind::Task))?;
                canonical = Some(target);
                (upstream, rewrite)
            }
            "tasks/list" => {
                let merged = tasks::list(
                    snapshot,
                    self.catalogue.upstreams(),
                    ctx,
                    &self.task_ids,
                    owner,
                    &|up, id| guard.sees_task(up, id),
                )
                .await;
                return Ok(Resolution::Reply(Ok(merged)));
            }
            "prompts/get" => {
                let prompt = resolve_named(snapshot, &mut params, TargetKind::Prompt)?;
                decision = guard.check(
                    Kind::Prompt,
                    prompt.target.as_deref(),
                    None,
                    unknown(TargetKind::Prompt),
                )?;
                canonical = prompt.target.clone();
                (prompt.upstream.clone(), Rewrite::PromptResult)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let resource = resolve_uri_param(snapshot, &mut params, ListKind::Resources)?;
                decision = guard.check(
                    Kind::Resource,
                    resource.target.as_deref(),
                    None,
                    unknown(TargetKind::Resource),
                )?;
                canonical = resource.target.clone();
                match method {
                    "resources/read" => (resource.upstream, Rewrite::ReadResult),
                    // Legacy only (the modern era subscribes with subscriptions/listen); counted
                    // on connections shared with other clients.
                    "resources/subscribe" => (resource.upstream, Rewrite::None),
                    // Answered here: the upstream connection may be shared with other
                    // subscribers, and the gateway delivers updates only to subscribed sessions.
                    _ => return Ok(Resolution::Reply(Ok(json!({})))),
                }
            }
            "completion/complete" => {
                // Authorized on exactly what is routed: the prompt or template that `ref.type`
                // selects, whatever else the client put in `ref`.
                let (routed, kind) = resolve_completion(snapshot, &mut params)?;
                decision = guard.check(
                    Kind::Completion,
                    routed.target.as_deref(),
                    None,
                    unknown(kind),
                )?;
                canonical = routed.target.clone();
                (routed.upstream, Rewrite::None)
            }
            _ => {
                return Err(GatewayError::MethodNotFound {
                    method: method.to_string(),
                });
            }
        };
        Ok(Resolution::Target(Target {
            upstream,
            params,
            param_headers,
            rewrite,
            decision,
            canonical,
            tool: tool_name,
        }))
    }
}
