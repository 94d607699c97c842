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
use crate::policy::{Access, Kind};
use crate::telemetry::Metrics;
use crate::upstream::{Call, CallContext, CallItem, Reply, ServerRequest, Upstream, UpstreamError};

mod guard;
mod rewrite;
pub mod task_ids;
pub mod tasks;
pub use guard::Decision;
use guard::Guard;
use rewrite::Rewrite;

/// Routes decoded requests.
pub struct Router {
    catalogue: Arc<Catalogue>,
    metrics: Metrics,
    access: Arc<Access>,
    task_ids: Arc<task_ids::TaskIds>,
}

impl Router {
    /// A router over `catalogue`, deciding with the policies of `access`; task ids are keyed
    /// from `session_key` (random per process when `None`).
    pub fn new(
        catalogue: Arc<Catalogue>,
        metrics: Metrics,
        access: Arc<Access>,
        session_key: Option<[u8; 32]>,
    ) -> Self {
        Self {
            catalogue,
            metrics,
            access,
            task_ids: Arc::new(task_ids::TaskIds::new(session_key)),
        }
    }

    /// The policies in force.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// Handles one request: answered here ([`Routed::Reply`]) or forwarded to its owner
    /// ([`Routed::Call`]); an upstream's own JSON-RPC error passes through unchanged.
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
    ) -> Result<Routed, GatewayError> {
        let guard = Guard::new(&self.access, ctx.principal.as_deref(), &self.metrics);
        let owner = owner(ctx);
        if let Some(kind) = ListKind::from_method(method) {
            let cursor = match params.as_ref().and_then(|p| p.get("cursor")) {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.as_str()),
                Some(_) => return Err(invalid("`cursor` must be a string")),
            };
            let page = self.catalogue.snapshot().page(
                kind,
                cursor,
                self.catalogue.config.page_size,
                &|e| guard.lists(kind, e),
            )?;
            return Ok(Routed::Reply(Ok(page)));
        }
        let snapshot = self.catalogue.snapshot();
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
        let decision;
        let (upstream, rewrite) = match method {
            "tools/call" => {
                let tool = resolve_named(&snapshot, &mut params, TargetKind::Tool)?;
                decision = guard.check(
                    Kind::Tool,
                    tool.target.as_deref(),
                    Some(&tool.value),
                    unknown(TargetKind::Tool),
                )?;
                let arguments = params.get("arguments").unwrap_or(&Value::Null);
                param_headers = crate::param_headers::header_values(&tool.param_headers, arguments);
                (tool.upstream.clone(), Rewrite::ToolResult)
            }
            "tasks/get" | "tasks/update" | "tasks/result" | "tasks/cancel" => {
                let rewrite = if method == "tasks/result" {
                    Rewrite::TaskPayload
                } else {
                    Rewrite::Task
                };
                let upstream = tasks::resolve(&snapshot, &mut params, &self.task_ids, &owner)?;
                let task_id = params["taskId"].as_str().unwrap_or_default();
                decision = guard.check(
                    Kind::Task,
                    Some(&format!("{upstream}/{task_id}")),
                    None,
                    unknown(TargetKind::Task),
                )?;
                (upstream, rewrite)
            }
            "tasks/list" => {
                let merged = tasks::list(
                    &snapshot,
                    self.catalogue.upstreams(),
                    ctx,
                    &self.task_ids,
                    &owner,
                    &|up, id| guard.sees_task(up, id),
                )
                .await;
                return Ok(Routed::Reply(Ok(merged)));
            }
            "prompts/get" => {
                let prompt = resolve_named(&snapshot, &mut params, TargetKind::Prompt)?;
                decision = guard.check(
                    Kind::Prompt,
                    prompt.target.as_deref(),
                    None,
                    unknown(TargetKind::Prompt),
                )?;
                (prompt.upstream.clone(), Rewrite::PromptResult)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let resource = resolve_uri_param(&snapshot, &mut params, ListKind::Resources)?;
                decision = guard.check(
                    Kind::Resource,
                    resource.target.as_deref(),
                    None,
                    unknown(TargetKind::Resource),
                )?;
                let upstream = resource.upstream;
                match method {
                    "resources/read" => (upstream, Rewrite::ReadResult),
                    // Legacy only (the modern era subscribes with subscriptions/listen); counted
                    // on connections shared with other clients.
                    "resources/subscribe" => {
                        let uri = params["uri"].as_str().unwrap_or_default();
                        return self.subscribe(ctx, &upstream, uri).await;
                    }
                    // Answered here: the upstream connection may be shared with other
                    // subscribers, and the gateway delivers updates only to subscribed sessions.
                    _ => return Ok(Routed::Reply(Ok(json!({})))),
                }
            }
            "completion/complete" => {
                // Authorized on exactly what is routed: the prompt or template that `ref.type`
                // selects, whatever else the client put in `ref`.
                let (routed, kind) = resolve_completion(&snapshot, &mut params)?;
                decision = guard.check(
                    Kind::Completion,
                    routed.target.as_deref(),
                    None,
                    unknown(kind),
                )?;
                (routed.upstream, Rewrite::None)
            }
            "ping" => return Ok(Routed::Reply(Ok(json!({})))),
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
            owner,
        };
        let mut routed = self.forward(ctx, snapshot, call).await?;
        if let Routed::Call(call) = &mut routed {
            call.decision = decision;
        }
        Ok(routed)
    }

    /// `resources/subscribe` of `uri` (the upstream's own) at `upstream`.
    async fn subscribe(
        &self,
        ctx: &CallContext,
        upstream: &UpstreamId,
        uri: &str,
    ) -> Result<Routed, GatewayError> {
        let upstream_error = |source| GatewayError::Upstream {
            upstream: upstream.to_string(),
            source,
        };
        let up = self
            .catalogue
            .upstreams()
            .get(upstream.as_str())
            .ok_or_else(|| {
                upstream_error(UpstreamError::Unavailable {
                    detail: "not configured".into(),
                })
            })?;
        let reply = up.subscribe(ctx, uri).await.map_err(upstream_error)?;
        Ok(Routed::Reply(reply))
    }

    async fn forward(
        &self,
        ctx: &CallContext,
        snapshot: Arc<Snapshot>,
        call: Forward<'_>,
    ) -> Result<Routed, GatewayError> {
        let Forward {
            upstream: upstream_id,
            method,
            params,
            param_headers,
            rewrite,
            owner,
        } = call;
        let upstream_error = |source| GatewayError::Upstream {
            upstream: upstream_id.to_string(),
            source,
        };
        let Some(upstream) = self.catalogue.upstreams().get(upstream_id.as_str()) else {
            return Err(upstream_error(UpstreamError::Unavailable {
                detail: "not configured".into(),
            }));
        };
        let timer = self
            .metrics
            .request_duration
            .with_label_values(&[method, upstream_id.as_str()])
            .start_timer();
        let retry = Retry {
            upstream: Arc::clone(upstream),
            ctx: ctx.clone(),
            params: params.clone(),
            param_headers: param_headers.to_vec(),
        };
        match upstream
            .call(ctx, method, Some(params), param_headers)
            .await
        {
            Ok(call) => Ok(Routed::Call(Box::new(RoutedCall {
                call,
                upstream: upstream_id.clone(),
                method: method.to_string(),
                snapshot,
                rewrite,
                metrics: self.metrics.clone(),
                timer: Some(timer),
                retry,
                decision: None,
                task_ids: Arc::clone(&self.task_ids),
                owner,
                pushed_back: None,
            }))),
            Err(source) => {
                self.metrics
                    .requests
                    .with_label_values(&[method, upstream_id.as_str(), "upstream_error"])
                    .inc();
                tracing::warn!(upstream = %upstream_id, method, error = %source, "upstream call failed");
                Err(upstream_error(source))
            }
        }
    }
}

/// What the router made of a request.
#[derive(Debug)]
pub enum Routed {
    /// Answered by the gateway itself (lists, `ping`).
    Reply(Reply),
    /// Forwarded: the owner's answer, as it arrives.
    Call(Box<RoutedCall>),
}

/// What a forwarded call yields, in order.
#[derive(Debug)]
pub enum Step {
    /// A notification for this request (progress, log message), verbatim.
    Notification(Value),
    /// A server→client request tied to this call.
    Request(ServerRequest),
    /// The end: the upstream's JSON-RPC outcome with URIs rewritten, or a gateway error.
    Done(Result<Reply, GatewayError>),
}

/// A call forwarded to its owner. Dropping it before [`Step::Done`] cancels the upstream
/// request.
pub struct RoutedCall {
    call: Call,
    upstream: UpstreamId,
    method: String,
    snapshot: Arc<Snapshot>,
    rewrite: Rewrite,
    metrics: Metrics,
    timer: Option<prometheus::HistogramTimer>,
    retry: Retry,
    /// The policy decision that let the call through, if policies are configured.
    decision: Option<Decision>,
    /// Mints the task ids of results and notifications, for `owner`.
    task_ids: Arc<task_ids::TaskIds>,
    /// The caller's principal digest (empty for the gateway's own calls).
    owner: String,
    /// A step taken and given back ([`RoutedCall::push_back`]), yielded next.
    pushed_back: Option<Step>,
}

/// The principal digest task ids are bound to: the caller's, or empty for the gateway.
fn owner(ctx: &CallContext) -> String {
    ctx.principal
        .as_ref()
        .map(|p| p.digest())
        .unwrap_or_default()
}

/// What it takes to send a call again (MRTR retries).
struct Retry {
    upstream: Arc<Upstream>,
    ctx: CallContext,
    /// Params in the upstream's own names.
    params: Value,
    param_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for RoutedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedCall")
            .field("upstream", &self.upstream)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl RoutedCall {
    /// The owning upstream.
    pub fn upstream(&self) -> &UpstreamId {
        &self.upstream
    }

    /// The policy decision that let the call through (for the audit record).
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Gives a step back: the next [`RoutedCall::next`] yields it again (one at most).
    pub fn push_back(&mut self, step: Step) {
        debug_assert!(self.pushed_back.is_none());
        self.pushed_back = Some(step);
    }

    /// The next step; `None` after [`Step::Done`].
    pub async fn next(&mut self) -> Option<Step> {
        if let Some(step) = self.pushed_back.take() {
            return Some(step);
        }
        Some(match self.call.next().await? {
            CallItem::Notification(mut n) => {
                let status = n["method"]
                    .as_str()
                    .is_some_and(tasks::is_status_notification);
                if let Some(params) = n.get_mut("params") {
                    if status {
                        tasks::rewrite_ids(params, &self.upstream, &self.task_ids, &self.owner);
                    } else {
                        tasks::rewrite_related(params, &self.upstream, &self.task_ids, &self.owner);
                    }
                }
                Step::Notification(n)
            }
            CallItem::Request(mut r) => {
                if let Some(params) = r.params.as_mut() {
                    tasks::rewrite_related(params, &self.upstream, &self.task_ids, &self.owner);
                }
                Step::Request(r)
            }
            CallItem::Final(outcome) => Step::Done(self.finish(outcome)),
        })
    }

    fn finish(&mut self, outcome: Result<Reply, UpstreamError>) -> Result<Reply, GatewayError> {
        if let Some(timer) = self.timer.take() {
            timer.observe_duration();
        }
        let label = match &outcome {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "upstream_error",
        };
        self.metrics
            .requests
            .with_label_values(&[&self.method, self.upstream.as_str(), label])
            .inc();
        match outcome {
            Ok(Ok(mut result)) => {
                let (snapshot, upstream) = (&self.snapshot, &self.upstream);
                self.rewrite
                    .apply(&mut result, &|uri| snapshot.wire_uri(upstream, uri));
                if self.rewrite.has_task_ids() {
                    tasks::rewrite_ids(&mut result, upstream, &self.task_ids, &self.owner);
                }
                Ok(Ok(result))
            }
            Ok(Err(error)) => Ok(Err(error)),
            Err(source) => {
                tracing::warn!(upstream = %self.upstream, method = %self.method, error = %source, "upstream call failed");
                Err(GatewayError::Upstream {
                    upstream: self.upstream.to_string(),
                    source,
                })
            }
        }
    }

    /// Sends the request again with `inputResponses` and `requestState` (2026-07-28 MRTR), for
    /// an upstream that answered `input_required`. The new call replaces this one.
    ///
    /// # Errors
    /// [`GatewayError::Upstream`] when the retry cannot be sent.
    pub async fn retry(
        mut self,
        input_responses: Value,
        request_state: Option<Value>,
    ) -> Result<RoutedCall, GatewayError> {
        let mut params = self.retry.params.clone();
        if let Some(obj) = params.as_object_mut() {
            obj.insert("inputResponses".into(), input_responses);
            match request_state {
                Some(state) => obj.insert("requestState".into(), state),
                None => obj.remove("requestState"),
            };
        }
        let started = self
            .retry
            .upstream
            .call(
                &self.retry.ctx,
                &self.method,
                Some(params.clone()),
                &self.retry.param_headers,
            )
            .await;
        match started {
            Ok(call) => {
                self.call = call;
                self.retry.params = params;
                Ok(self)
            }
            Err(source) => Err(GatewayError::Upstream {
                upstream: self.upstream.to_string(),
                source,
            }),
        }
    }

    /// Waits for the final outcome, rejecting server requests and dropping notifications.
    ///
    /// # Errors
    /// As [`Router::handle`].
    pub async fn finish_quietly(mut self) -> Result<Reply, GatewayError> {
        while let Some(step) = self.next().await {
            match step {
                Step::Done(outcome) => return outcome,
                Step::Request(r) => {
                    r.reject(crate::jsonrpc::code::METHOD_NOT_FOUND, "not relayed")
                        .await;
                }
                Step::Notification(_) => {}
            }
        }
        Err(GatewayError::Upstream {
            upstream: self.upstream.to_string(),
            source: UpstreamError::Closed {
                detail: "the call already ended".into(),
            },
        })
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
    /// The caller's principal digest, computed once per request.
    owner: String,
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

/// Where a request goes and what policy decides on.
pub struct Resolved {
    /// The owning upstream.
    pub upstream: UpstreamId,
    /// The canonical policy target of what is forwarded (see [`crate::catalogue::Entry`]).
    pub target: Option<String>,
}

/// `params.uri` → owner and policy target ([`resolve_uri`]); rewrites it to the URI that is
/// forwarded.
fn resolve_uri_param(
    snapshot: &Snapshot,
    params: &mut Value,
    kind: ListKind,
) -> Result<Resolved, GatewayError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`uri` must be a string"))?;
    let (resolved, forward) = resolve_uri(snapshot, uri, kind)?;
    params["uri"] = Value::from(forward);
    Ok(resolved)
}

/// A client-facing resource URI (or template, for `kind` [`ListKind::ResourceTemplates`]) →
/// owner, policy target, and the upstream URI to forward: the one the policy decides on, the
/// upstream's URI in RFC 3986 normal form ([`crate::uri`]), or, for an entry the upstream
/// listed, its URI exactly as listed (the same resource, spelt as the upstream knows it).
///
/// # Errors
/// [`GatewayError::UnknownTarget`] when no upstream owns the URI; [`GatewayError::InvalidParams`]
/// for a URI too ambiguous to normalize.
pub fn resolve_uri(
    snapshot: &Snapshot,
    uri: &str,
    kind: ListKind,
) -> Result<(Resolved, String), GatewayError> {
    let (upstream, original) =
        snapshot
            .resolve_uri(uri)
            .ok_or_else(|| GatewayError::UnknownTarget {
                kind: TargetKind::Resource,
                name: uri.to_string(),
            })?;
    let (forward, target) = match snapshot.entry(kind, uri) {
        Some(listed) => (listed.original.clone(), listed.target.clone()),
        None => {
            let normal = crate::uri::normalize(&original).map_err(|e| invalid(&e.to_string()))?;
            let target = format!("{upstream}/{normal}");
            (normal, Some(target))
        }
    };
    Ok((Resolved { upstream, target }, forward))
}

/// `params.ref` of `completion/complete` → the prompt or template `ref.type` selects, and the
/// kind of target to name in an "unknown" answer; rewrites the name or URI for the upstream.
fn resolve_completion(
    snapshot: &Snapshot,
    params: &mut Value,
) -> Result<(Resolved, TargetKind), GatewayError> {
    let reference = params
        .get_mut("ref")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("`ref` must be an object"))?;
    // Only the member `ref.type` selects goes upstream: what is forwarded is what was decided.
    let selected = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => "name",
        Some("ref/resource") => "uri",
        _ => return Err(invalid("`ref.type` must be ref/prompt or ref/resource")),
    };
    if let Some(obj) = reference.as_object_mut() {
        obj.remove(if selected == "name" { "uri" } else { "name" });
    }
    match selected {
        "name" => {
            let prompt = resolve_named(snapshot, reference, TargetKind::Prompt)?;
            let resolved = Resolved {
                upstream: prompt.upstream.clone(),
                target: prompt.target.clone(),
            };
            Ok((resolved, TargetKind::Prompt))
        }
        _ => {
            let template = resolve_uri_param(snapshot, reference, ListKind::ResourceTemplates)?;
            Ok((template, TargetKind::Resource))
        }
    }
}
