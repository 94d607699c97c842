//! Policy files exactly as security teams write them (`policies/*.yaml`); serde types with
//! `deny_unknown_fields`, so a misspelt key is an error, never a silently ignored rule.
//! [`super::compile`] checks and compiles them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Roles defined in this file.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
}

/// A role: who holds it and what it allows and denies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Unique name across the policy set.
    pub name: String,
    /// Free text for readers.
    #[serde(default)]
    pub description: Option<String>,
    /// The principal holds the role when any of these matches.
    pub subjects: Vec<SubjectSpec>,
    /// What the role allows.
    #[serde(default)]
    pub allow: RulesSpec,
    /// What the role denies; a deny in any held role beats every allow.
    #[serde(default)]
    pub deny: RulesSpec,
    /// Calls per period for each principal holding this role: `600/m`, or
    /// `{ rate: 600/m, burst: 100 }` (DESIGN.md §5.10).
    #[serde(default)]
    pub rate_limit: Option<crate::limits::rate::RawRate>,
}

/// One way of matching a principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSpec {
    /// A token claim: `sub`, `iss`, `client_id`, `scope`, `groups`, `roles` (as configured
    /// under `auth.jwt.claims`), or any other claim of the token.
    #[serde(default)]
    pub claim: Option<String>,
    /// The claim (or one of its values) equals this.
    #[serde(default)]
    pub equals: Option<String>,
    /// The claim (or one of its values) is one of these.
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    /// The claim (or one of its values) matches this glob.
    #[serde(default)]
    pub glob: Option<String>,
    /// The TLS client certificate identity matches this glob.
    #[serde(default)]
    pub mtls: Option<String>,
    /// The caller used the API key with this name.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `true`: any authenticated caller.
    #[serde(default)]
    pub authenticated: Option<bool>,
}

/// Target patterns per kind, and tool annotation conditions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// `upstream/tool` globs.
    #[serde(default)]
    pub tools: Vec<String>,
    /// `upstream/prompt` globs.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// `upstream/uri` globs (also for reads of URIs made from templates).
    #[serde(default)]
    pub resources: Vec<String>,
    /// `upstream/uriTemplate` globs.
    #[serde(default)]
    pub resource_templates: Vec<String>,
    /// `upstream/name` globs of the prompt or resource template a completion is for.
    #[serde(default)]
    pub completion: Vec<String>,
    /// `upstream/taskId` globs.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Tools whose `annotations` have all of these values (e.g. `destructiveHint: true`).
    /// Annotations are hints from the upstream, not guarantees.
    #[serde(default)]
    pub tool_annotations: BTreeMap<String, Value>,
}
