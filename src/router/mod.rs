//! Method → handler, with names, URIs and ids rewritten both ways.
//!
//! Catalogue methods are answered from the current [`Snapshot`]; call methods are resolved to
//! their owning upstream, rewritten to the upstream's own names, forwarded, and their results'
//! URIs rewritten back to client-facing form. Everything the router does not route on passes
//! through untouched (DESIGN.md §5.3). Results are era-neutral here; the downstream transport
//! adds what its era requires.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument as _;

use crate::audit::Auditor;
use crate::catalogue::{Catalogue, Entry, ListKind, Snapshot};
use crate::config::{ToolMatch, UpstreamId};
use crate::error::{GatewayError, TargetKind};
use crate::limits::{CallKey, Checked, RateLimits};
use crate::policy::Access;
use crate::telemetry::Metrics;
use crate::upstream::controls::Lease;
use crate::upstream::{Call, CallContext, CallItem, Reply, ServerRequest, Upstream, UpstreamError};

mod guard;
mod ledger;
mod resolve;
mod rewrite;
pub mod task_ids;
pub mod tasks;
pub use guard::Decision;
use guard::Guard;
use ledger::Ledger;
use resolve::{Resolution, Target};
use rewrite::Rewrite;

/// Routes decoded requests.
pub struct Router {
    catalogue: Arc<Catalogue>,
    metrics: Metrics,
    access: Arc<Access>,
    task_ids: Arc<task_ids::TaskIds>,
    limits: Arc<RateLimits>,
    auditor: Auditor,
}

impl Router {
    /// A router over `catalogue`, deciding with the policies of `access`, limiting with
    /// `limits`, recording calls with `auditor` and minting task ids with `task_ids`.
    pub fn new(
        catalogue: Arc<Catalogue>,
        metrics: Metrics,
        access: Arc<Access>,
        limits: Arc<RateLimits>,
        auditor: Auditor,
        task_ids: task_ids::TaskIds,
    ) -> Self {
        Self {
            catalogue,
            metrics,
            access,
            task_ids: Arc::new(task_ids),
            limits,
            auditor,
        }
    }

    /// The audit log.
    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    /// The rate limits.
    pub fn limits(&self) -> &Arc<RateLimits> {
        &self.limits
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
    /// ([`Routed::Call`]); an upstream's own JSON-RPC error passes through unchanged. Every
    /// call (not lists, not `ping`) is recorded once it ends, however it ends
    /// (its ledger): counted, timed and, for a client's call, audited.
    ///
    /// # Errors
    /// [`GatewayError::MethodNotFound`], [`GatewayError::InvalidParams`],
    /// [`GatewayError::UnknownTarget`], [`GatewayError::Denied`], [`GatewayError::InvalidCursor`],
    /// [`GatewayError::RateLimited`], [`GatewayError::Upstream`],
    /// [`GatewayError::AuditUnavailable`].
    pub async fn handle(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
    ) -> Result<Routed, GatewayError> {
        let span = crate::telemetry::trace_context::request_span(method, ctx.origin.trace);
        self.handle_in_span(ctx, method, params)
            .instrument(span)
            .await
    }

    async fn handle_in_span(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
    ) -> Result<Routed, GatewayError> {
        let guard = Guard::new(&self.access, ctx.principal.as_deref(), &self.metrics);
        if let Some(kind) = ListKind::from_method(method) {
            let cursor = match params.as_ref().and_then(|p| p.get("cursor")) {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.as_str()),
                Some(_) => return Err(invalid("`cursor` must be a string")),
            };
            let page = self.catalogue.snapshot().page_for(
                kind,
                cursor,
                self.catalogue.config.page_size,
                guard.view_key(),
                &|e| guard.lists(kind, e),
            )?;
            return Ok(Routed::Page(page));
        }
        if method == "ping" {
            return Ok(Routed::Reply(Ok(serde_json::json!({}))));
        }
        // The record's place in the audit queue is taken before anything else happens.
        let slot = match &ctx.principal {
            Some(_) => self
                .auditor
                .slot()
                .await
                .map_err(|_| GatewayError::AuditUnavailable)?,
            None => None,
        };
        let mut ledger = Ledger::open(
            &self.metrics.requests,
            &self.metrics.request_duration,
            &self.auditor,
            slot,
            ctx,
            method,
            params.as_ref(),
        );
        match self.route(ctx, &guard, &mut ledger, method, params).await {
            Ok(Routed::Call(mut call)) => {
                call.ledger = Some(ledger);
                Ok(Routed::Call(call))
            }
            Ok(Routed::Reply(reply)) => {
                ledger.settle_reply(&reply);
                Ok(Routed::Reply(reply))
            }
            Ok(page @ Routed::Page(_)) => Ok(page),
            Err(e) => {
                ledger.settle_error(&e, ctx.client_era());
                Err(e)
            }
        }
    }

    /// The stages of a call, in order (DESIGN.md §5.10).
    async fn route(
        &self,
        ctx: &CallContext,
        guard: &Guard<'_>,
        ledger: &mut Ledger,
        method: &str,
        params: Option<Value>,
    ) -> Result<Routed, GatewayError> {
        let snapshot = self.catalogue.snapshot();
        // The caller's digest (a SHA-256), for calls only: task ids and rate-limit keys.
        let owner = owner(ctx);
        // Every stage a call passes, in order (DESIGN.md §5.10); the result is rewritten back
        // and the call's outcome recorded as it ends (`RoutedCall::finish`).
        let mut target = match self
            .resolve(ctx, &snapshot, guard, &owner, method, params) // resolve → policy
            .await?
        {
            Resolution::Reply(reply) => return Ok(Routed::Reply(reply)),
            Resolution::Target(target) => target,
        };
        ledger.resolved(
            &target.upstream,
            target.canonical.take(),
            target.decision.take(),
            &self.auditor,
        );
        tracing::Span::current().record("mcp.upstream", target.upstream.as_str());
        let upstream = self.upstream(&target.upstream)?;
        let controls = upstream.controls();
        let tool = target
            .tool
            .as_deref()
            .and_then(|t| controls.traffic.tool(t));
        self.rate_limit(ctx, guard, &owner, &target, tool).await?; // limits
        if method == "resources/subscribe" {
            // Held per shared connection; one cheap request, so no bulkhead slot of its own.
            return self.subscribe(ctx, &upstream, &target).await;
        }
        let refused = |source| GatewayError::Upstream {
            upstream: target.upstream.to_string(),
            source,
        };
        let slot = controls.bulkhead().map_err(refused)?; // bulkhead
        let lease = controls
            .breaker(ctx.principal.is_none(), Some(slot)) // breaker
            .map_err(refused)?;
        let timeout = controls.timeout(tool); // timeout
        let call = Forward {
            upstream: &upstream,
            method,
            target,
            owner,
            lease,
            timeout,
        };
        self.forward(ctx, snapshot, call).await // upstream → rewrite
    }

    /// The upstream a resolved call goes to.
    fn upstream(&self, id: &UpstreamId) -> Result<Arc<Upstream>, GatewayError> {
        self.catalogue
            .upstreams()
            .get(id.as_str())
            .ok_or_else(|| GatewayError::Upstream {
                upstream: id.to_string(),
                source: UpstreamError::Unavailable {
                    detail: "not configured".into(),
                },
            })
    }

    /// The rate limits stage: every limit that applies to the caller, its roles, the upstream
    /// and the tool, checked all before any is consumed ([`crate::limits`]). The gateway's
    /// own calls are not limited.
    async fn rate_limit(
        &self,
        ctx: &CallContext,
        guard: &Guard<'_>,
        owner: &str,
        target: &Target,
        tool: Option<ToolMatch<'_>>,
    ) -> Result<(), GatewayError> {
        if ctx.principal.is_none() {
            return Ok(());
        }
        let key = CallKey {
            principal: crate::limits::principal_key(owner),
            upstream: target.upstream.as_str(),
            tool,
        };
        match self.limits.check(&key, guard.role_rates()).await {
            Checked::Admitted => Ok(()),
            Checked::Limited(refused) => {
                self.metrics
                    .traffic
                    .rate_limited
                    .with_label_values(&[refused.limit.as_str()])
                    .inc();
                Err(GatewayError::RateLimited {
                    limit: refused.limit,
                    retry_after: refused.retry_after,
                })
            }
            Checked::StoreUnavailable { refused } => {
                let outcome = if refused { "refused" } else { "admitted" };
                self.metrics
                    .traffic
                    .limit_store_errors
                    .with_label_values(&[outcome])
                    .inc();
                if refused {
                    Err(GatewayError::RateLimitStoreUnavailable)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// `resources/subscribe` of the resolved URI (the upstream's own).
    async fn subscribe(
        &self,
        ctx: &CallContext,
        upstream: &Upstream,
        target: &Target,
    ) -> Result<Routed, GatewayError> {
        let uri = target.params["uri"].as_str().unwrap_or_default();
        let reply =
            upstream
                .subscribe(ctx, uri)
                .await
                .map_err(|source| GatewayError::Upstream {
                    upstream: target.upstream.to_string(),
                    source,
                })?;
        Ok(Routed::Reply(reply))
    }

    async fn forward(
        &self,
        ctx: &CallContext,
        snapshot: Arc<Snapshot>,
        call: Forward<'_>,
    ) -> Result<Routed, GatewayError> {
        let Forward {
            upstream,
            method,
            target,
            owner,
            lease,
            timeout,
        } = call;
        let Target {
            upstream: upstream_id,
            params,
            param_headers,
            rewrite,
            ..
        } = target;
        let timer = self
            .metrics
            .upstream_request_duration
            .with_label_values(&[method, upstream_id.as_str()])
            .start_timer();
        // Only a legacy client's call is ever sent again by the gateway (a modern upstream's
        // `input_required` asked of the client, then retried): the copy is kept for it alone.
        let era = ctx.client_era();
        let retry = (era == crate::protocol::Era::Legacy).then(|| Retry {
            upstream: Arc::clone(upstream),
            ctx: ctx.clone(),
            params: params.clone(),
            param_headers: param_headers.clone(),
            timeout,
        });
        let span = tracing::info_span!(
            "mcp.upstream",
            otel.kind = "client",
            mcp.upstream = upstream_id.as_str(),
            rpc.method = method,
        );
        match upstream
            .call(ctx, method, Some(params), &param_headers, timeout)
            .instrument(span)
            .await
        {
            Ok(call) => Ok(Routed::Call(Box::new(RoutedCall {
                call,
                upstream: upstream_id,
                method: method.to_string(),
                snapshot,
                rewrite,
                timer: Some(timer),
                retry,
                era,
                ledger: None,
                task_ids: Arc::clone(&self.task_ids),
                owner,
                pushed_back: None,
                lease: Some(lease),
            }))),
            Err(source) => {
                lease.settle(Err(&source));
                tracing::warn!(upstream = %upstream_id, method, error = %source, "upstream call failed");
                Err(GatewayError::Upstream {
                    upstream: upstream_id.to_string(),
                    source,
                })
            }
        }
    }
}

/// What the router made of a request.
#[derive(Debug)]
pub enum Routed {
    /// A page of a merged list, already serialized.
    Page(crate::catalogue::Page),
    /// Answered by the gateway itself (`ping`, `tasks/list`, …).
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
    /// Times the upstream's answer (`mcpgate_upstream_request_duration_seconds`).
    timer: Option<prometheus::HistogramTimer>,
    /// What it takes to send the call again (legacy clients only).
    retry: Option<Retry>,
    /// The client's era.
    era: crate::protocol::Era,
    /// Counts, times and audits the call when it ends ([`ledger`]).
    ledger: Option<Ledger>,
    /// Mints the task ids of results and notifications, for `owner`.
    task_ids: Arc<task_ids::TaskIds>,
    /// The caller's principal digest (empty for the gateway's own calls).
    owner: String,
    /// A step taken and given back ([`RoutedCall::push_back`]), yielded next.
    pushed_back: Option<Step>,
    /// Bulkhead slot and breaker ticket, settled when the call ends (dropped with the call
    /// when the client goes away first).
    lease: Option<Lease>,
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
    /// The call's whole-call timeout.
    timeout: Duration,
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
        if let Some(lease) = self.lease.take() {
            lease.settle(outcome.as_ref());
        }
        let result = self.rewrite_outcome(outcome);
        if let Some(ledger) = self.ledger.as_mut() {
            match &result {
                Ok(reply) => ledger.settle_reply(reply),
                Err(e) => ledger.settle_error(e, self.era),
            }
        }
        result
    }

    /// The upstream's outcome with URIs and task ids rewritten back, or the gateway error.
    fn rewrite_outcome(
        &mut self,
        outcome: Result<Reply, UpstreamError>,
    ) -> Result<Reply, GatewayError> {
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
        let Some(retry) = self.retry.take() else {
            return Err(GatewayError::Upstream {
                upstream: self.upstream.to_string(),
                source: UpstreamError::Protocol {
                    detail: "only a legacy client's call is sent again".into(),
                },
            });
        };
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.reopen();
        }
        let mut params = retry.params.clone();
        if let Some(obj) = params.as_object_mut() {
            obj.insert("inputResponses".into(), input_responses);
            match request_state {
                Some(state) => obj.insert("requestState".into(), state),
                None => obj.remove("requestState"),
            };
        }
        let started = retry
            .upstream
            .call(
                &retry.ctx,
                &self.method,
                Some(params.clone()),
                &retry.param_headers,
                retry.timeout,
            )
            .await;
        match started {
            Ok(call) => {
                self.call = call;
                self.retry = Some(Retry { params, ..retry });
                Ok(self)
            }
            Err(source) => {
                let e = GatewayError::Upstream {
                    upstream: self.upstream.to_string(),
                    source,
                };
                if let Some(ledger) = self.ledger.as_mut() {
                    ledger.settle_error(&e, self.era);
                }
                Err(e)
            }
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

/// One resolved call past its controls, on its way to its owner.
struct Forward<'a> {
    upstream: &'a Arc<Upstream>,
    method: &'a str,
    target: Target,
    /// The caller's principal digest, computed once per request.
    owner: String,
    /// Its bulkhead slot and breaker ticket.
    lease: Lease,
    /// Its whole-call timeout.
    timeout: Duration,
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
