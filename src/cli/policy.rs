//! `mcpgate policy check | explain | diff`: the policy set as a security engineer sees it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::auth::Principal;
use crate::catalogue::Snapshot;
use crate::config::{Config, PolicyMode};
use crate::policy::compile::{self, PolicySet};
use crate::policy::{Kind, PolicyIssue, explain, lint};

/// The policy set a configuration names.
///
/// # Errors
/// When the configuration has no `policies` section, or the set is invalid (every problem
/// listed with file and line).
pub fn load(config: &Config) -> anyhow::Result<(Arc<PolicySet>, PolicyMode)> {
    let policies = config
        .policies
        .as_ref()
        .ok_or_else(|| anyhow!("the configuration has no `policies` section"))?;
    let set = load_dir(&policies.dir, config)?;
    Ok((set, policies.mode))
}

/// The policy set in `dir`, for the upstreams of `config`.
///
/// # Errors
/// Every problem of the set, with file and line.
pub fn load_dir(dir: &Path, config: &Config) -> anyhow::Result<Arc<PolicySet>> {
    let upstreams: Vec<String> = config.upstreams.iter().map(|u| u.id.to_string()).collect();
    compile::load_dir(dir, &upstreams)
        .map(Arc::new)
        .map_err(|issues| anyhow!("invalid policy set {}:\n{}", dir.display(), list(&issues)))
}

fn list(issues: &[PolicyIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `policy check`: the set loads; with a catalogue, the patterns that match nothing.
/// Returns the report and whether there were warnings.
pub fn check(set: &PolicySet, snapshot: Option<&Snapshot>) -> (String, bool) {
    let mut out = format!(
        "policy set valid: {} role(s) in {} file(s) ({}), hash {}\n",
        set.roles.len(),
        set.files.len(),
        set.files.join(", "),
        set.hash
    );
    let warnings = snapshot
        .map(|s| lint::unmatched_patterns(set, s))
        .unwrap_or_default();
    match snapshot {
        None => out.push_str("catalogue not checked (--offline)\n"),
        Some(_) if warnings.is_empty() => {
            out.push_str("every pattern matches the current catalogue\n")
        }
        Some(_) => {
            for w in &warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
        }
    }
    (out, !warnings.is_empty())
}

/// The principal described by a claims file (a JSON object of token claims), read with the
/// claim names of `config`, plus an API key name and mTLS identity if given.
///
/// # Errors
/// When the file is unreadable or not a JSON object.
pub fn principal(
    config: &Config,
    claims_file: &Path,
    api_key: Option<String>,
    mtls: Option<String>,
) -> anyhow::Result<Principal> {
    let text = std::fs::read_to_string(claims_file)
        .with_context(|| format!("cannot read {}", claims_file.display()))?;
    let Value::Object(claims) = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", claims_file.display()))?
    else {
        bail!(
            "{} must hold a JSON object of claims",
            claims_file.display()
        );
    };
    let names = config
        .auth
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .map(|j| j.claims.clone())
        .unwrap_or_default();
    let mut principal = crate::auth::jwt::principal_from_claims(claims, &names);
    principal.api_key = api_key;
    principal.mtls_identity = mtls;
    Ok(principal)
}

/// `policy explain`: the decision on `target` of `kind`, with the tool's annotations from
/// `snapshot` when given, and the rate limits and timeout of `config` the call would pass.
///
/// # Errors
/// When `kind` is not a policy kind.
pub fn explain(
    config: &Config,
    set: &Arc<PolicySet>,
    mode: PolicyMode,
    principal: &Principal,
    kind: &str,
    target: &str,
    snapshot: Option<&Snapshot>,
) -> anyhow::Result<explain::Explanation> {
    let kind = Kind::parse(kind).ok_or_else(|| {
        anyhow!("unknown kind {kind:?}: use tool, prompt, resource, resource_template, completion or task")
    })?;
    let tool = match (kind, snapshot) {
        (Kind::Tool, Some(s)) => s
            .entries(crate::catalogue::ListKind::Tools)
            .iter()
            .find(|e| e.target.as_deref() == Some(target))
            .map(|e| e.value.clone()),
        _ => None,
    };
    let mut explanation = explain::explain(set, mode, principal, kind, target, tool.as_ref());
    traffic(config, set, mode, principal, kind, target, &mut explanation);
    Ok(explanation)
}

/// The limits and timeout a call to `target` passes (DESIGN.md §5.10), into `explanation`.
fn traffic(
    config: &Config,
    set: &Arc<PolicySet>,
    mode: PolicyMode,
    principal: &Principal,
    kind: Kind,
    target: &str,
    explanation: &mut explain::Explanation,
) {
    let (upstream, name) = target.split_once('/').unwrap_or((target, ""));
    let config_of = config.upstreams.iter().find(|u| u.id.as_str() == upstream);
    let tool = match (kind, config_of) {
        (Kind::Tool, Some(u)) => u.traffic.tool(name),
        _ => None,
    };
    let grant = crate::policy::Grant::new(Arc::clone(set), principal, mode);
    let call = crate::limits::CallKey {
        principal: crate::limits::principal_key(&principal.digest()),
        upstream,
        tool,
    };
    let limits = crate::limits::RateLimits::new(&config.limits, &config.upstreams);
    explanation.limits = limits
        .applicable(&call, grant.role_rates())
        .into_iter()
        .map(Into::into)
        .collect();
    explanation.timeout = config_of.map(|u| {
        let timeout = u.traffic.tool_timeout(tool).unwrap_or(u.timeout);
        humantime::format_duration(timeout).to_string()
    });
}
