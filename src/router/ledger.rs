//! The record of one call from its request to its end, whatever the end: the
//! `mcpgate_requests_total{method,upstream,outcome}` count, the
//! `mcpgate_request_duration_seconds` observation and the audit record, all with the same
//! outcome ([`Outcome`]). A call that never reaches its end (the client went away, an MRTR
//! continuation expired) is recorded as `cancelled` when its ledger is dropped.

use std::sync::Arc;

use prometheus::{HistogramVec, IntCounterVec};
use serde_json::Value;
use tokio::time::Instant;

use super::Decision;
use crate::audit::record::{self, CallRecord, DecisionFields, Origin, Outcome, PrincipalFields};
use crate::audit::{Auditor, Slot};
use crate::config::UpstreamId;
use crate::error::GatewayError;
use crate::upstream::{CallContext, Reply};

/// The call methods the router records, the bounded `method` label (`other` for the rest).
const METHODS: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "tasks/get",
    "tasks/list",
    "tasks/update",
    "tasks/result",
    "tasks/cancel",
];

/// Longest `method` kept in an audit record, bytes: a client chooses it.
const MAX_METHOD: usize = 128;
/// Longest `name` kept in an audit record, bytes (URIs can be long).
const MAX_NAME: usize = 2048;

/// `text` cut to at most `max` bytes at a character boundary, `…` marking a cut: what a client
/// sends is recorded, but never lets one request write megabytes into the audit log.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The metric label of `method`.
pub(super) fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// What is known of a call so far, and how it ended once it has.
pub(crate) struct Ledger {
    started: Instant,
    method: &'static str,
    upstream: Option<UpstreamId>,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// The audit record's facts; `None` when records are not kept.
    audit: Option<Box<AuditFacts>>,
    /// The outcome, once settled, and the JSON-RPC error code answered.
    settled: Option<(Outcome, Option<i64>, f64)>,
}

/// What the audit record of a call says beyond the metrics.
struct AuditFacts {
    slot: Slot,
    principal: Option<Arc<crate::auth::Principal>>,
    session: Option<uuid::Uuid>,
    era: crate::protocol::Era,
    origin: crate::upstream::RequestOrigin,
    /// The trace the call belongs to (the client's, or one the gateway started).
    trace: Option<crate::telemetry::trace_context::TraceParent>,
    method: String,
    name: Option<String>,
    target: Option<String>,
    decision: Option<Decision>,
    args_sha256: Option<String>,
    arguments: Option<Value>,
}

impl Ledger {
    /// Opens the ledger of a call of `method` with `params` as the client sent them.
    pub(super) fn open(
        requests: &IntCounterVec,
        duration: &HistogramVec,
        auditor: &Auditor,
        slot: Option<Slot>,
        ctx: &CallContext,
        method: &str,
        params: Option<&Value>,
    ) -> Self {
        let audit = slot.map(|slot| {
            let args = crate::audit::arguments::of(method, params);
            let named = params.map(|p| p.get("ref").unwrap_or(p));
            let name = named.and_then(|n| {
                ["name", "uri", "taskId"]
                    .iter()
                    .find_map(|k| n.get(*k).and_then(Value::as_str))
                    .map(|n| bounded(n, MAX_NAME))
            });
            Box::new(AuditFacts {
                slot,
                principal: ctx.principal.clone(),
                session: ctx.downstream_session,
                era: ctx.client_era(),
                origin: ctx.origin,
                trace: crate::telemetry::trace_context::current(ctx.origin.trace),
                method: bounded(method, MAX_METHOD),
                name,
                target: None,
                decision: None,
                args_sha256: args.map(crate::audit::arguments::digest),
                // Kept until the target is known, then redacted or dropped.
                arguments: args
                    .filter(|_| auditor.arguments().is_some_and(|a| !a.tools.is_empty()))
                    .cloned(),
            })
        });
        Self {
            started: Instant::now(),
            method: method_label(method),
            upstream: None,
            requests: requests.clone(),
            duration: duration.clone(),
            audit,
            settled: None,
        }
    }

    /// The call resolved to `upstream`, canonical `target`, allowed by `decision`; the
    /// arguments are kept (redacted) if `target` is a tool opted in.
    pub(super) fn resolved(
        &mut self,
        upstream: &UpstreamId,
        target: Option<String>,
        decision: Option<Decision>,
        auditor: &Auditor,
    ) {
        self.upstream = Some(upstream.clone());
        if let Some(facts) = self.audit.as_deref_mut() {
            facts.target = target;
            facts.decision = decision;
            facts.arguments = match (
                facts.arguments.take(),
                auditor.arguments(),
                facts.target.as_deref(),
            ) {
                (Some(args), Some(config), Some(t))
                    if facts.method == "tools/call" && config.records(t) =>
                {
                    Some(crate::audit::arguments::redact(&args, config))
                }
                _ => None,
            };
        }
    }

    /// Settles the outcome of a reply (recorded when the ledger is dropped).
    pub(super) fn settle_reply(&mut self, reply: &Reply) {
        let (outcome, code) = match reply {
            Ok(result) if result.get("isError").and_then(Value::as_bool) == Some(true) => {
                (Outcome::ToolError, None)
            }
            Ok(_) => (Outcome::Ok, None),
            Err(error) => (
                Outcome::UpstreamError,
                error.get("code").and_then(Value::as_i64),
            ),
        };
        self.settle(outcome, code);
    }

    /// Settles the outcome of a gateway error answered to a client of the call's era.
    pub(super) fn settle_error(&mut self, error: &GatewayError, era: crate::protocol::Era) {
        if let GatewayError::Denied {
            decision: Some(d), ..
        } = error
        {
            // The canonical target decided on names its owner: `upstream/name`.
            let owner = d.target.split_once('/').map(|(u, _)| u);
            self.upstream = owner.and_then(|u| UpstreamId::parse(u).ok());
        }
        if let (GatewayError::Denied { decision, .. }, Some(facts)) =
            (error, self.audit.as_deref_mut())
        {
            // The decision that refused it; its target is the canonical one decided on.
            facts.target = decision.as_ref().map(|d| d.target.clone());
            facts.decision = decision.as_deref().cloned();
        }
        let code = error
            .to_wire(era)
            .error
            .and_then(|e| e.get("code").and_then(Value::as_i64));
        self.settle(outcome_of(error), code);
    }

    /// Takes the settled outcome back: the call goes on (an MRTR round, then a retry).
    pub(super) fn reopen(&mut self) {
        self.settled = None;
    }

    fn settle(&mut self, outcome: Outcome, code: Option<i64>) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.settled = Some((outcome, code, latency_ms));
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let (outcome, code, latency_ms) = self.settled.unwrap_or_else(|| {
            let latency = self.started.elapsed().as_secs_f64() * 1000.0;
            (Outcome::Cancelled, None, latency)
        });
        let upstream = self.upstream.as_ref().map_or("", UpstreamId::as_str);
        self.requests
            .with_label_values(&[self.method, upstream, outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[self.method, upstream])
            .observe(latency_ms / 1000.0);
        let Some(facts) = self.audit.take() else {
            return;
        };
        let AuditFacts {
            slot,
            principal,
            session,
            era,
            origin,
            trace,
            method,
            name,
            target,
            decision,
            args_sha256,
            arguments,
        } = *facts;
        let trace_id = trace.map(|t| t.trace_id_hex());
        let body = CallRecord {
            principal: principal.as_deref().map(PrincipalFields::from),
            session: session.as_ref().map(record::session_digest),
            era,
            method: &method,
            target: target.as_deref(),
            name: name.as_deref(),
            upstream: self.upstream.as_ref().map(UpstreamId::as_str),
            decision: decision.as_ref().map(DecisionFields::from),
            outcome,
            error_code: code,
            latency_ms: (latency_ms * 1000.0).round() / 1000.0,
            args_sha256: args_sha256.as_deref(),
            arguments: arguments.as_ref(),
        };
        let origin = Origin {
            remote_addr: origin.remote_addr,
            trace_id: trace_id.as_deref(),
        };
        slot.send(record::encode("call", &body, origin));
    }
}

/// The outcome a gateway error stands for.
fn outcome_of(error: &GatewayError) -> Outcome {
    use crate::upstream::UpstreamError as U;
    match error {
        GatewayError::Denied { .. } => Outcome::Denied,
        GatewayError::RateLimited { .. } => Outcome::RateLimited,
        GatewayError::Upstream { source, .. } => match source {
            U::CircuitOpen { .. } => Outcome::CircuitOpen,
            U::Overloaded => Outcome::Overloaded,
            U::Timeout => Outcome::Timeout,
            _ => Outcome::UpstreamError,
        },
        _ => Outcome::Invalid,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_strings_are_bounded_at_a_character_boundary() {
        assert_eq!(super::bounded("tools/call", 128), "tools/call");
        let long = "é".repeat(100); // 200 bytes
        let cut = super::bounded(&long, 101);
        assert_eq!(cut, format!("{}…", "é".repeat(50)));
    }
}
