//! Policy at the router: lists show exactly the entries a call would be allowed for, and a call
//! to a denied target fails as if the target did not exist. Each call decision is counted, kept
//! for the call's audit record, and logged at debug level as a structured event (target, effect,
//! mode, roles, file, role, rule, policy hash).

use serde_json::Value;

use crate::auth::Principal;
use crate::catalogue::{Entry, ListKind};
use crate::config::UpstreamId;
use crate::error::GatewayError;
use crate::policy::{Access, Grant, Kind, Mode, Verdict};
use crate::telemetry::Metrics;

/// A call decision: what was decided and whether it was applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// Kind of target.
    pub kind: Kind,
    /// Canonical target, `upstream/name`.
    pub target: String,
    /// The rules' verdict and the rule that decided.
    pub verdict: Verdict,
    /// `enforce` or `audit` (in audit the call went ahead whatever the verdict).
    pub mode: Mode,
    /// Roles the principal holds.
    pub roles: Vec<String>,
    /// Hash of the policy set.
    pub policy_hash: String,
}

/// The policy view of one request: the caller's grant, or none for the gateway's own calls.
pub(super) struct Guard<'a> {
    grant: Option<Grant>,
    principal: Option<&'a Principal>,
    metrics: &'a Metrics,
}

impl<'a> Guard<'a> {
    pub(super) fn new(
        access: &Access,
        principal: Option<&'a Principal>,
        metrics: &'a Metrics,
    ) -> Self {
        Self {
            grant: principal.map(|p| access.grant(p)),
            principal,
            metrics,
        }
    }

    /// The (role, rate) of each held role with a rate limit (none without policies).
    pub(super) fn role_rates(
        &self,
    ) -> impl Iterator<Item = (&str, crate::limits::rate::Rate)> + Clone {
        self.grant.iter().flat_map(|g| g.role_rates())
    }

    /// Whether a merged entry is listed for this caller.
    pub(super) fn lists(&self, kind: ListKind, entry: &Entry) -> bool {
        self.grant.as_ref().is_none_or(|g| g.lists(kind, entry))
    }

    /// The class of callers this one's lists are shared with; `None` when nothing is filtered.
    pub(super) fn view_key(&self) -> Option<crate::catalogue::ViewKey> {
        self.grant.as_ref().and_then(crate::policy::Grant::view_key)
    }

    /// Whether the caller may use task `task_id` of `upstream` (for the merged `tasks/list`).
    pub(super) fn sees_task(&self, upstream: &UpstreamId, task_id: &str) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.allows(Kind::Task, &format!("{upstream}/{task_id}"), None))
    }

    /// Decides a call to `target`, the canonical `upstream/name` of what will be forwarded
    /// (`None`: a URI too ambiguous to decide on, refused whenever policies apply); `denied`
    /// is the error answered when the policy refuses it (the one for an unknown target).
    ///
    /// # Errors
    /// [`GatewayError::Denied`] wrapping `denied`, in `enforce` mode, when no held role allows
    /// the target or one denies it.
    pub(super) fn check(
        &self,
        kind: Kind,
        target: Option<&str>,
        tool: Option<&Value>,
        denied: impl FnOnce() -> GatewayError,
    ) -> Result<Option<Decision>, GatewayError> {
        let Some(grant) = &self.grant else {
            return Ok(None);
        };
        let Some(target) = target else {
            return if grant.allows_target(kind, None, tool) {
                Ok(None)
            } else {
                Err(GatewayError::Denied {
                    unknown: Box::new(denied()),
                    decision: None,
                })
            };
        };
        let Some(verdict) = grant.verdict(kind, target, tool) else {
            return Ok(None);
        };
        let decision = Decision {
            kind,
            target: target.to_string(),
            roles: grant.roles(),
            policy_hash: grant.policy_hash().unwrap_or_default().to_string(),
            mode: grant.mode(),
            verdict,
        };
        self.metrics
            .policy_decisions
            .with_label_values(&[decision.verdict.effect.as_str()])
            .inc();
        let rule = decision.verdict.rule.as_ref();
        // The audit log records every decision; the log line is for debugging only (a log
        // line per call would sit on the hot path).
        tracing::debug!(
            target: "mcpgate::policy",
            subject = self.principal.map(|p| p.subject.as_str()),
            kind = ?decision.kind,
            target_name = %decision.target,
            effect = decision.verdict.effect.as_str(),
            mode = ?decision.mode,
            roles = ?decision.roles,
            file = rule.map(|r| r.file.as_str()),
            line = rule.map(|r| r.line),
            role = rule.map(|r| r.role.as_str()),
            rule = rule.map(|r| r.rule.as_str()),
            policy_hash = %decision.policy_hash,
            "policy decision"
        );
        if !grant.permits(decision.verdict.effect) {
            return Err(GatewayError::Denied {
                unknown: Box::new(denied()),
                decision: Some(Box::new(decision)),
            });
        }
        Ok(Some(decision))
    }
}
