//! Explanations for security engineers (`mcpgate policy explain` and `diff`): which roles a
//! principal holds, what decides a target and why, and which targets a policy change gives and
//! takes away. Text for people, JSON for tools; both come from the same decision function the
//! gateway uses.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{Effect, Grant, Kind, Mode, PolicySet, Verdict};
use crate::auth::Principal;
use crate::catalogue::{ListKind, Snapshot};

/// The answer of `policy explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Kind of target.
    pub kind: Kind,
    /// Canonical target.
    pub target: String,
    /// The rules' verdict and deciding rule.
    pub verdict: Verdict,
    /// Enforce or audit.
    pub mode: Mode,
    /// Whether the call would go ahead (allowed, or audit mode).
    pub allowed: bool,
    /// The principal's subject.
    pub subject: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Hash of the policy set.
    pub policy_hash: String,
    /// Whether tool annotations were known (a live catalogue) when deciding.
    pub annotations_known: bool,
    /// The rate limits the call would pass, in checking order (filled in by the caller that
    /// knows the configuration).
    pub limits: Vec<crate::limits::AppliedLimit>,
    /// The call's whole-call timeout, e.g. `30s` (filled in likewise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Explains the decision on `target` of `kind` for `principal`. `tool` is the tool's definition
/// from the catalogue, when known (for annotation conditions).
pub fn explain(
    set: &Arc<PolicySet>,
    mode: Mode,
    principal: &Principal,
    kind: Kind,
    target: &str,
    tool: Option<&Value>,
) -> Explanation {
    let grant = Grant::new(Arc::clone(set), principal, mode);
    let verdict = grant.verdict(kind, target, tool).unwrap_or(Verdict {
        effect: Effect::Allow,
        rule: None,
    });
    Explanation {
        kind,
        target: target.to_string(),
        allowed: grant.allows(kind, target, tool),
        mode,
        subject: principal.subject.clone(),
        roles: grant.roles(),
        policy_hash: set.hash.clone(),
        annotations_known: kind != Kind::Tool || tool.is_some(),
        verdict,
        limits: Vec::new(),
        timeout: None,
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = self.verdict.effect.as_str().to_uppercase();
        writeln!(f, "{effect}  {} {}", self.kind.key(), self.target)?;
        writeln!(f, "principal  {}", self.subject)?;
        if self.roles.is_empty() {
            writeln!(f, "roles      (none)")?;
        } else {
            writeln!(f, "roles      {}", self.roles.join(", "))?;
        }
        match &self.verdict.rule {
            Some(rule) => writeln!(
                f,
                "decided by {}:{}  role {:?}  {} {:?}",
                rule.file,
                rule.line,
                rule.role,
                self.verdict.effect.as_str(),
                rule.rule
            )?,
            None => writeln!(f, "decided by default: no held role allows this target")?,
        }
        if self.mode == Mode::Audit {
            writeln!(
                f,
                "mode       audit: the call would go ahead and the decision be logged"
            )?;
        }
        if self.limits.is_empty() {
            writeln!(f, "limits     (none)")?;
        } else {
            let limits: Vec<String> = self.limits.iter().map(ToString::to_string).collect();
            writeln!(f, "limits     {}", limits.join(", "))?;
        }
        if let Some(timeout) = &self.timeout {
            writeln!(f, "timeout    {timeout}")?;
        }
        if !self.annotations_known {
            writeln!(
                f,
                "note       tool annotations unknown (offline): annotation rules were not applied"
            )?;
        }
        write!(f, "policy set {}", self.policy_hash)
    }
}

/// One target and how a change affects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Kind of target.
    pub kind: Kind,
    /// Canonical target.
    pub target: String,
}

/// What a principal gains and loses between two policy sets, over the catalogue's targets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    /// Targets allowed by the new set only.
    pub gained: Vec<Change>,
    /// Targets allowed by the old set only.
    pub lost: Vec<Change>,
}

/// The targets `principal` gains and loses going from `old` to `new`, over every entry of
/// `snapshot` (both sets enforced).
pub fn diff(
    old: &Arc<PolicySet>,
    new: &Arc<PolicySet>,
    principal: &Principal,
    snapshot: &Snapshot,
) -> Diff {
    let before = Grant::new(Arc::clone(old), principal, Mode::Enforce);
    let after = Grant::new(Arc::clone(new), principal, Mode::Enforce);
    let mut out = Diff::default();
    for list in ListKind::ALL {
        for entry in snapshot.entries(list) {
            let (was, is) = (before.lists(list, entry), after.lists(list, entry));
            let change = || Change {
                kind: Kind::of_list(list),
                target: entry
                    .target
                    .clone()
                    .unwrap_or_else(|| entry.original.clone()),
            };
            match (was, is) {
                (false, true) => out.gained.push(change()),
                (true, false) => out.lost.push(change()),
                _ => {}
            }
        }
    }
    out
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.gained.is_empty() && self.lost.is_empty() {
            return write!(f, "no change");
        }
        for (sign, changes) in [("+", &self.gained), ("-", &self.lost)] {
            for c in changes {
                writeln!(f, "{sign} {} {}", c.kind.key(), c.target)?;
            }
        }
        write!(f, "{} gained, {} lost", self.gained.len(), self.lost.len())
    }
}
