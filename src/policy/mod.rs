//! RBAC policies owned by security teams (`policies/*.yaml`, DESIGN.md §5.7).
//!
//! A policy set is a directory of YAML files defining roles ([`model`]); it is loaded strictly
//! and compiled to glob sets ([`compile`]), and one decision function ([`decide`]) answers for
//! lists and calls alike, so every list shows exactly what a call would be allowed. [`Access`]
//! holds the set in force: none (every caller may use everything, and the gateway says so), or
//! a set that is replaced whole and atomically on reload ([`reload`]); an invalid new set
//! changes nothing. In `audit` mode every decision is made and logged, and everything is
//! allowed. Patterns that match nothing in the catalogue are reported by [`lint`].

pub mod compile;
pub mod decide;
pub mod explain;
pub mod lint;
pub mod model;
#[cfg(test)]
mod prop_tests;
pub mod reload;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::auth::Principal;
pub use crate::config::{PolicyConfig, PolicyMode as Mode};
pub use compile::PolicySet;
pub use decide::{DecidingRule, Effect, Verdict};

/// The kinds of target a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `tools/list`, `tools/call`.
    Tool,
    /// `prompts/list`, `prompts/get`.
    Prompt,
    /// `resources/list`, `resources/read`, `resources/subscribe`.
    Resource,
    /// `resources/templates/list`.
    ResourceTemplate,
    /// `completion/complete`, by the prompt or template it completes.
    Completion,
    /// The `tasks/*` methods, by task.
    Task,
}

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Self; 6] = [
        Self::Tool,
        Self::Prompt,
        Self::Resource,
        Self::ResourceTemplate,
        Self::Completion,
        Self::Task,
    ];

    /// The key of this kind in a rule (`tools`, `prompts`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::Tool => "tools",
            Self::Prompt => "prompts",
            Self::Resource => "resources",
            Self::ResourceTemplate => "resource_templates",
            Self::Completion => "completion",
            Self::Task => "tasks",
        }
    }

    /// The kind named by `text` (a rule key, or its singular).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.key() == text || k.key().strip_suffix('s') == Some(text))
    }

    /// The policy kind of a merged list.
    pub fn of_list(kind: crate::catalogue::ListKind) -> Self {
        use crate::catalogue::ListKind;
        match kind {
            ListKind::Tools => Self::Tool,
            ListKind::Prompts => Self::Prompt,
            ListKind::Resources => Self::Resource,
            ListKind::ResourceTemplates => Self::ResourceTemplate,
        }
    }
}

/// A problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The file (name within the policy directory).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl PolicyIssue {
    /// An issue at `file:line`.
    pub fn new(file: String, line: usize, message: String) -> Self {
        Self {
            file,
            line,
            message,
        }
    }
}

impl std::fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// The policy set in force, if any.
pub struct Access {
    inner: Option<Policies>,
}

struct Policies {
    config: PolicyConfig,
    /// The configured upstream ids, which policy patterns may name (a configuration reload
    /// changes them).
    upstreams: RwLock<Vec<String>>,
    current: RwLock<Arc<PolicySet>>,
    changes: tokio::sync::broadcast::Sender<Arc<PolicySet>>,
}

impl Access {
    /// No policies: every caller may use everything.
    pub fn open() -> Self {
        Self { inner: None }
    }

    /// Loads the policy directory of `config`; `upstreams` are the configured upstream ids.
    ///
    /// # Errors
    /// Every problem in the set, with file and line.
    pub fn load(config: PolicyConfig, upstreams: Vec<String>) -> Result<Self, Vec<PolicyIssue>> {
        let set = compile::load_dir(&config.dir, &upstreams)?;
        tracing::info!(dir = %config.dir.display(), roles = set.roles.len(), hash = %set.hash, mode = ?config.mode, "policy set loaded");
        Ok(Self {
            inner: Some(Policies {
                config,
                upstreams: RwLock::new(upstreams),
                current: RwLock::new(Arc::new(set)),
                changes: tokio::sync::broadcast::channel(16).0,
            }),
        })
    }

    /// The set in force, if any.
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.inner
            .as_ref()
            .map(|p| Arc::clone(&p.current.read().unwrap_or_else(|e| e.into_inner())))
    }

    /// The policy directory and mode, if policies are configured.
    pub fn config(&self) -> Option<&PolicyConfig> {
        self.inner.as_ref().map(|p| &p.config)
    }

    /// What `principal` may do under the set in force.
    pub fn grant(&self, principal: &Principal) -> Grant {
        match self.inner.as_ref() {
            None => Grant {
                set: None,
                held: Vec::new(),
                mode: Mode::Enforce,
            },
            Some(p) => {
                let set = Arc::clone(&p.current.read().unwrap_or_else(|e| e.into_inner()));
                Grant::new(set, principal, p.config.mode)
            }
        }
    }

    /// Loads the directory again; a valid set replaces the one in force at once and is
    /// announced to [`Access::subscribe`]rs. `Ok(false)` when nothing changed (same hash).
    ///
    /// # Errors
    /// The new set's problems; the set in force stays.
    pub fn reload(&self) -> Result<bool, Vec<PolicyIssue>> {
        let Some(p) = &self.inner else {
            return Ok(false);
        };
        let upstreams = p
            .upstreams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let set = compile::load_dir(&p.config.dir, &upstreams)?;
        let mut current = p.current.write().unwrap_or_else(|e| e.into_inner());
        if current.hash == set.hash {
            return Ok(false);
        }
        let set = Arc::new(set);
        tracing::info!(old = %current.hash, new = %set.hash, roles = set.roles.len(), "policy set replaced");
        *current = Arc::clone(&set);
        drop(current);
        let _ = p.changes.send(set);
        Ok(true)
    }

    /// Whether the policy files are valid with `upstreams` as the configured upstream ids
    /// (a configuration reload that removes an upstream a policy names is refused).
    ///
    /// # Errors
    /// The set's problems under those ids.
    pub fn check_upstreams(&self, upstreams: &[String]) -> Result<(), Vec<PolicyIssue>> {
        match &self.inner {
            Some(p) => compile::load_dir(&p.config.dir, upstreams).map(drop),
            None => Ok(()),
        }
    }

    /// Makes `upstreams` the configured upstream ids that later policy reloads check against.
    pub fn set_upstreams(&self, upstreams: Vec<String>) {
        if let Some(p) = &self.inner {
            *p.upstreams.write().unwrap_or_else(|e| e.into_inner()) = upstreams;
        }
    }

    /// Receives each newly applied policy set.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<PolicySet>>> {
        self.inner.as_ref().map(|p| p.changes.subscribe())
    }
}

/// What one principal may do under one policy set: its roles, resolved once per request.
#[derive(Debug, Clone)]
pub struct Grant {
    set: Option<Arc<PolicySet>>,
    held: Vec<usize>,
    mode: Mode,
}

impl Grant {
    /// The grant of `principal` under `set`.
    pub fn new(set: Arc<PolicySet>, principal: &Principal, mode: Mode) -> Self {
        let held = decide::held_roles(&set, principal);
        Self {
            set: Some(set),
            held,
            mode,
        }
    }

    /// The verdict of the rules on a target, `None` without policies. `tool` is the tool's
    /// definition for annotation conditions.
    pub fn verdict(&self, kind: Kind, target: &str, tool: Option<&Value>) -> Option<Verdict> {
        self.set
            .as_ref()
            .map(|set| decide::decide(set, &self.held, kind, target, tool))
    }

    /// Whether the target may be used: allowed by the rules, or any target without policies
    /// or in audit mode.
    pub fn allows(&self, kind: Kind, target: &str, tool: Option<&Value>) -> bool {
        self.verdict(kind, target, tool)
            .is_none_or(|v| self.permits(v.effect))
    }

    /// As [`Grant::allows`], for a canonical target that may be missing (a URI too ambiguous to
    /// decide on): refused whenever policies are enforced.
    pub fn allows_target(&self, kind: Kind, target: Option<&str>, tool: Option<&Value>) -> bool {
        match target {
            Some(target) => self.allows(kind, target, tool),
            None => self.set.is_none() || self.mode == Mode::Audit,
        }
    }

    /// Whether the rules' effect lets the request through: an allow, or anything in audit
    /// mode. The one place this is decided, for lists and calls.
    pub fn permits(&self, effect: Effect) -> bool {
        self.mode == Mode::Audit || effect == Effect::Allow
    }

    /// Whether a merged list entry is shown: the same decision a call to it would get
    /// (computed without describing the deciding rule, which lists do not report).
    pub fn lists(&self, kind: crate::catalogue::ListKind, entry: &crate::catalogue::Entry) -> bool {
        let Some(set) = &self.set else {
            return true;
        };
        let Some(target) = &entry.target else {
            return self.mode == Mode::Audit;
        };
        let tool = (kind == crate::catalogue::ListKind::Tools).then_some(&entry.value);
        self.permits(decide::effect(
            set,
            &self.held,
            Kind::of_list(kind),
            target,
            tool,
        ))
    }

    /// The class of callers whose lists look exactly like this grant's (same policy set, roles
    /// and mode), for the cached views of a snapshot ([`crate::catalogue::views`]); `None` when
    /// lists are not filtered at all (no policies, or audit mode, where everything is listed).
    pub fn view_key(&self) -> Option<crate::catalogue::ViewKey> {
        let set = self.set.as_ref()?;
        (self.mode == Mode::Enforce).then(|| crate::catalogue::ViewKey {
            set: Arc::clone(set),
            held: self.held.clone(),
            mode: self.mode,
        })
    }

    /// Whether a policy set is in force (without one, everything is allowed).
    pub fn has_policies(&self) -> bool {
        self.set.is_some()
    }

    /// The names of the roles held.
    pub fn roles(&self) -> Vec<String> {
        match &self.set {
            Some(set) => self
                .held
                .iter()
                .map(|&i| set.roles[i].name.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The rate limits of the roles held, as (role name, rate) in policy order: each applies
    /// to this principal alone (DESIGN.md §5.10 `per_role`).
    pub fn role_rates(&self) -> impl Iterator<Item = (&str, crate::limits::rate::Rate)> + Clone {
        let roles = self.set.as_deref().map(|set| set.roles.as_slice());
        self.held.iter().filter_map(move |&i| {
            let role = &roles?[i];
            Some((role.name.as_str(), role.rate_limit?))
        })
    }

    /// The hash of the policy set, if any.
    pub fn policy_hash(&self) -> Option<&str> {
        self.set.as_deref().map(|s| s.hash.as_str())
    }

    /// Enforce or audit.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}
