//! The one decision function, used for lists and calls alike: a principal holds every role whose
//! subjects match; a deny in any held role beats every allow; no allow means deny.

use serde::Serialize;
use serde_json::Value;

use super::Kind;
use super::compile::{PolicySet, Role, Rules, Subject, ValueMatcher};
use crate::auth::Principal;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The target may be used.
    Allow,
    /// The target is hidden and refused.
    Deny,
}

impl Effect {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The rule that decided, for explanations and audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecidingRule {
    /// Policy file.
    pub file: String,
    /// Line of the pattern (or of `tool_annotations`) in it.
    pub line: usize,
    /// Role.
    pub role: String,
    /// The pattern, or the annotation condition as JSON.
    pub rule: String,
}

/// What the policy set says about one target for one principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The effect the rules give.
    pub effect: Effect,
    /// The rule that decided; `None` when no role allowed the target (default deny).
    pub rule: Option<DecidingRule>,
}

/// The roles a principal holds, by index into the set's roles.
pub fn held_roles(set: &PolicySet, principal: &Principal) -> Vec<usize> {
    set.roles
        .iter()
        .enumerate()
        .filter(|(_, role)| role.subjects.iter().any(|s| subject_matches(s, principal)))
        .map(|(i, _)| i)
        .collect()
}

/// The verdict on `target` (`upstream/name`) of `kind` for a principal holding `held`; `tool`
/// is the tool's definition (for annotation conditions) when `kind` is [`Kind::Tool`].
pub fn decide(
    set: &PolicySet,
    held: &[usize],
    kind: Kind,
    target: &str,
    tool: Option<&Value>,
) -> Verdict {
    match deciding(set, held, kind, target, tool) {
        Some((effect, role, matched)) => Verdict {
            effect,
            rule: Some(describe(role, role_rules(role, effect), matched, kind)),
        },
        None => Verdict {
            effect: Effect::Deny,
            rule: None,
        },
    }
}

/// Only the effect of [`decide`], without describing the rule: the per-entry cost of
/// filtering a list.
pub fn effect(
    set: &PolicySet,
    held: &[usize],
    kind: Kind,
    target: &str,
    tool: Option<&Value>,
) -> Effect {
    deciding(set, held, kind, target, tool).map_or(Effect::Deny, |(effect, _, _)| effect)
}

/// Which rule of a role matched.
#[derive(Debug, Clone, Copy)]
enum Matched {
    /// The pattern at this index of the kind's patterns.
    Pattern(usize),
    /// The tool annotation condition.
    Annotations,
}

/// The deciding effect, role and rule: the first deny of any held role, else the first allow.
fn deciding<'s>(
    set: &'s PolicySet,
    held: &[usize],
    kind: Kind,
    target: &str,
    tool: Option<&Value>,
) -> Option<(Effect, &'s Role, Matched)> {
    for effect in [Effect::Deny, Effect::Allow] {
        for role in held.iter().map(|&i| &set.roles[i]) {
            if let Some(m) = matched(role_rules(role, effect), kind, target, tool) {
                return Some((effect, role, m));
            }
        }
    }
    None
}

fn role_rules(role: &Role, effect: Effect) -> &Rules {
    match effect {
        Effect::Allow => &role.allow,
        Effect::Deny => &role.deny,
    }
}

fn matched(rules: &Rules, kind: Kind, target: &str, tool: Option<&Value>) -> Option<Matched> {
    let kind_rules = &rules.kinds[kind as usize];
    // `is_match` first: most targets match no rule of most roles, and it does not allocate.
    if kind_rules.set.is_match(target)
        && let Some(&first) = kind_rules.set.matches(target).first()
    {
        return Some(Matched::Pattern(first));
    }
    if kind == Kind::Tool
        && let (Some((wanted, _)), Some(tool)) = (&rules.tool_annotations, tool)
        && wanted.iter().all(|(k, v)| annotation(tool, k) == Some(v))
    {
        return Some(Matched::Annotations);
    }
    None
}

/// The value of annotation `key` of a tool definition. A hint the tool leaves out has the
/// default the specification gives it (`ToolAnnotations`, 2025-06-18 and later): a tool that
/// says nothing is assumed destructive (`destructiveHint` true), not read-only, not idempotent,
/// and open-world — so a deny on `destructiveHint: true` catches it, and an allow on
/// `readOnlyHint: true` does not. Other keys have no default.
pub fn annotation<'t>(tool: &'t Value, key: &str) -> Option<&'t Value> {
    static TRUE: Value = Value::Bool(true);
    static FALSE: Value = Value::Bool(false);
    if let Some(value) = tool.get("annotations").and_then(|a| a.get(key)) {
        return Some(value);
    }
    match key {
        "destructiveHint" | "openWorldHint" => Some(&TRUE),
        "readOnlyHint" | "idempotentHint" => Some(&FALSE),
        _ => None,
    }
}

/// The file, line, role and text of a matched rule.
fn describe(role: &Role, rules: &Rules, matched: Matched, kind: Kind) -> DecidingRule {
    let (rule, line) = match (matched, &rules.tool_annotations) {
        (Matched::Pattern(i), _) => rules.kinds[kind as usize].patterns[i].clone(),
        (Matched::Annotations, Some((wanted, line))) => (
            format!(
                "tool_annotations {}",
                serde_json::to_string(wanted).unwrap_or_default()
            ),
            *line,
        ),
        (Matched::Annotations, None) => (String::new(), 0),
    };
    DecidingRule {
        file: role.file.clone(),
        line,
        role: role.name.clone(),
        rule,
    }
}

fn subject_matches(subject: &Subject, principal: &Principal) -> bool {
    match subject {
        // A verified token, API key or client certificate.
        Subject::Authenticated => principal.issuer.is_some() || principal.mtls_identity.is_some(),
        Subject::ApiKey(name) => principal.api_key.as_deref() == Some(name.as_str()),
        Subject::Mtls(glob) => principal
            .mtls_identity
            .as_deref()
            .is_some_and(|id| glob.is_match(id)),
        Subject::Claim { name, matcher } => claim_values(principal, name)
            .iter()
            .any(|v| value_matches(matcher, v)),
    }
}

/// The values of claim `name` for a principal: its fields for the well-known names (so the
/// configured claim names and API key principals work), else the token claim itself.
fn claim_values(principal: &Principal, name: &str) -> Vec<String> {
    let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    match name {
        "sub" => vec![principal.subject.clone()],
        "iss" => one(&principal.issuer),
        "client_id" => one(&principal.client_id),
        "scope" | "scopes" => principal.scopes.clone(),
        "groups" => principal.groups.clone(),
        "roles" => principal.roles.clone(),
        other => match principal.claims.get(other) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                    _ => None,
                })
                .collect(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => vec![v.to_string()],
            _ => Vec::new(),
        },
    }
}

fn value_matches(matcher: &ValueMatcher, value: &str) -> bool {
    match matcher {
        ValueMatcher::Equals(v) => v == value,
        ValueMatcher::AnyOf(vs) => vs.iter().any(|v| v == value),
        ValueMatcher::Glob(g) => g.is_match(value),
    }
}
