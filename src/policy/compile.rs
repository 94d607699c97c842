//! Loading a policy directory: every `*.yaml` / `*.yml` file, read strictly, checked, and
//! compiled to glob sets. A set with any error is rejected whole; the errors name file and line.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::{PolicyFile, RoleSpec, RulesSpec, SubjectSpec};
use super::{Kind, PolicyIssue};

/// A compiled, immutable policy set.
#[derive(Debug)]
pub struct PolicySet {
    /// Roles in file-name order, then file order.
    pub roles: Vec<Role>,
    /// Hex SHA-256 of every file's name and content: names the set in explanations and audit.
    pub hash: String,
    /// The files, by name.
    pub files: Vec<String>,
}

/// One compiled role.
#[derive(Debug)]
pub struct Role {
    /// Its name.
    pub name: String,
    /// The file it is defined in.
    pub file: String,
    /// The line of its `name:`.
    pub line: usize,
    pub(super) subjects: Vec<Subject>,
    pub(super) allow: Rules,
    pub(super) deny: Rules,
    /// Calls per period for each principal holding this role, if limited.
    pub rate_limit: Option<crate::limits::rate::Rate>,
}

/// How a subject entry matches a principal.
#[derive(Debug)]
pub(super) enum Subject {
    Claim { name: String, matcher: ValueMatcher },
    Mtls(GlobMatcher),
    ApiKey(String),
    Authenticated,
}

#[derive(Debug)]
pub(super) enum ValueMatcher {
    Equals(String),
    AnyOf(Vec<String>),
    Glob(GlobMatcher),
}

/// The patterns of one effect (allow or deny) of a role.
#[derive(Debug, Default)]
pub(super) struct Rules {
    pub(super) kinds: [KindRules; 6],
    /// Tool annotation conditions, with their line.
    pub(super) tool_annotations: Option<(BTreeMap<String, Value>, usize)>,
}

/// The patterns of one kind: a glob set and the patterns in the same order, with their lines.
#[derive(Debug, Default)]
pub(super) struct KindRules {
    pub(super) set: GlobSet,
    pub(super) patterns: Vec<(String, usize)>,
}

/// Loads and compiles every policy file in `dir`. `upstreams` are the configured upstream ids:
/// a pattern naming another upstream is an error.
///
/// # Errors
/// Every problem found, each with file and line.
pub fn load_dir(dir: &Path, upstreams: &[String]) -> Result<PolicySet, Vec<PolicyIssue>> {
    let mut files: Vec<(String, String)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![PolicyIssue::new(
            dir.display().to_string(),
            0,
            format!("cannot read the policy directory: {e}"),
        )]
    })?;
    let mut issues = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if !is_yaml || !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((name, text)),
            Err(e) => issues.push(PolicyIssue::new(name, 0, format!("cannot read: {e}"))),
        }
    }
    files.sort();
    if !issues.is_empty() {
        return Err(issues);
    }
    compile(&files, upstreams)
}

/// Compiles policy files given as (file name, YAML text).
///
/// # Errors
/// Every problem found, each with file and line.
pub fn compile(
    files: &[(String, String)],
    upstreams: &[String],
) -> Result<PolicySet, Vec<PolicyIssue>> {
    let mut issues = Vec::new();
    let mut roles = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut hasher = Sha256::new();
    for (file, text) in files {
        hasher.update(file.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let parsed: PolicyFile = match serde_path_to_error::deserialize(de) {
            Ok(p) => p,
            Err(e) => {
                let line = e.inner().location().map_or(0, |l| l.line());
                issues.push(PolicyIssue::new(
                    file.clone(),
                    line,
                    format!("{}: {}", e.path(), e.inner()),
                ));
                continue;
            }
        };
        let mut cursor = Lines::new(text);
        for spec in parsed.roles {
            let line = [
                format!("name: {}", spec.name),
                format!("name: \"{}\"", spec.name),
                format!("name: '{}'", spec.name),
            ]
            .iter()
            .find_map(|needle| cursor.find(needle))
            .unwrap_or(0);
            if !names.insert(spec.name.clone()) {
                issues.push(PolicyIssue::new(
                    file.clone(),
                    line,
                    format!(
                        "role {:?} is defined more than once in the policy set",
                        spec.name
                    ),
                ));
            }
            if let Some(role) = role(file, line, &spec, &mut cursor, upstreams, &mut issues) {
                roles.push(role);
            }
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(PolicySet {
        roles,
        hash: base16ct::lower::encode_string(&hasher.finalize()),
        files: files.iter().map(|(f, _)| f.clone()).collect(),
    })
}

/// Finds the lines of names and patterns in a file, moving forward as roles are read.
struct Lines<'a> {
    lines: Vec<&'a str>,
    at: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
            at: 0,
        }
    }

    /// The 1-based line of the next occurrence of `needle` from the current position (which
    /// moves there), or `None`.
    fn find(&mut self, needle: &str) -> Option<usize> {
        let found = (self.at..self.lines.len()).find(|&i| self.lines[i].contains(needle))?;
        self.at = found;
        Some(found + 1)
    }

    /// The line of `needle` at or after the current position, without moving.
    fn peek(&self, needle: &str) -> usize {
        (self.at..self.lines.len())
            .find(|&i| self.lines[i].contains(needle))
            .map_or(self.at + 1, |i| i + 1)
    }
}

fn role(
    file: &str,
    line: usize,
    spec: &RoleSpec,
    lines: &mut Lines<'_>,
    upstreams: &[String],
    issues: &mut Vec<PolicyIssue>,
) -> Option<Role> {
    let before = issues.len();
    let mut push = |line: usize, message: String| {
        issues.push(PolicyIssue::new(file.to_string(), line, message));
    };
    if spec.subjects.is_empty() {
        push(
            line,
            format!("role {:?} has no subjects: nobody could hold it", spec.name),
        );
    }
    let subjects: Vec<Subject> = spec
        .subjects
        .iter()
        .filter_map(|s| {
            subject(s)
                .map_err(|m| push(line, format!("role {:?}: {m}", spec.name)))
                .ok()
        })
        .collect();
    let rate_limit = match &spec.rate_limit {
        None => None,
        Some(raw) => match crate::limits::rate::Rate::parse(raw) {
            Ok(r) => Some(r),
            Err(m) => {
                push(
                    lines.peek("rate_limit"),
                    format!("role {:?}: rate_limit {m}", spec.name),
                );
                None
            }
        },
    };
    let allow = rules(
        &spec.allow,
        "allow",
        &spec.name,
        lines,
        upstreams,
        &mut push,
    );
    let deny = rules(&spec.deny, "deny", &spec.name, lines, upstreams, &mut push);
    if issues.len() > before {
        return None;
    }
    Some(Role {
        name: spec.name.clone(),
        file: file.to_string(),
        line,
        subjects,
        allow,
        deny,
        rate_limit,
    })
}

fn subject(spec: &SubjectSpec) -> Result<Subject, String> {
    let set = [
        spec.claim.is_some(),
        spec.mtls.is_some(),
        spec.api_key.is_some(),
        spec.authenticated.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(
            "each subject sets exactly one of `claim`, `mtls`, `api_key`, `authenticated`".into(),
        );
    }
    if let Some(name) = &spec.claim {
        let matchers = [
            spec.equals.is_some(),
            spec.any_of.is_some(),
            spec.glob.is_some(),
        ];
        if matchers.iter().filter(|m| **m).count() != 1 {
            return Err(format!(
                "claim {name:?} needs exactly one of `equals`, `any_of`, `glob`"
            ));
        }
        let matcher = if let Some(v) = &spec.equals {
            ValueMatcher::Equals(v.clone())
        } else if let Some(vs) = &spec.any_of {
            ValueMatcher::AnyOf(vs.clone())
        } else {
            ValueMatcher::Glob(
                crate::glob::compile(spec.glob.as_deref().unwrap_or_default())?.compile_matcher(),
            )
        };
        return Ok(Subject::Claim {
            name: name.clone(),
            matcher,
        });
    }
    if spec.equals.is_some() || spec.any_of.is_some() || spec.glob.is_some() {
        return Err("`equals`, `any_of` and `glob` go with `claim`".into());
    }
    if let Some(pattern) = &spec.mtls {
        return Ok(Subject::Mtls(
            crate::glob::compile(pattern)?.compile_matcher(),
        ));
    }
    if let Some(name) = &spec.api_key {
        return Ok(Subject::ApiKey(name.clone()));
    }
    match spec.authenticated {
        Some(true) => Ok(Subject::Authenticated),
        _ => Err("`authenticated` can only be `true`".into()),
    }
}

fn rules(
    spec: &RulesSpec,
    effect: &str,
    role: &str,
    lines: &mut Lines<'_>,
    upstreams: &[String],
    push: &mut dyn FnMut(usize, String),
) -> Rules {
    let mut out = Rules::default();
    for kind in Kind::ALL {
        let patterns = match kind {
            Kind::Tool => &spec.tools,
            Kind::Prompt => &spec.prompts,
            Kind::Resource => &spec.resources,
            Kind::ResourceTemplate => &spec.resource_templates,
            Kind::Completion => &spec.completion,
            Kind::Task => &spec.tasks,
        };
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for pattern in patterns {
            let line = lines.peek(pattern);
            match check_pattern(pattern, upstreams) {
                Ok(g) => {
                    builder.add(g);
                    kept.push((pattern.clone(), line));
                }
                Err(m) => push(line, format!("role {role:?}, {effect}.{}: {m}", kind.key())),
            }
        }
        match builder.build() {
            Ok(set) => {
                out.kinds[kind as usize] = KindRules {
                    set,
                    patterns: kept,
                }
            }
            Err(e) => push(lines.peek(kind.key()), format!("role {role:?}: {e}")),
        }
    }
    if !spec.tool_annotations.is_empty() {
        let line = lines.peek("tool_annotations");
        out.tool_annotations = Some((spec.tool_annotations.clone(), line));
    }
    out
}

/// A target pattern is `upstream/name`; its upstream part, unless itself a glob, must be a
/// configured upstream.
fn check_pattern(pattern: &str, upstreams: &[String]) -> Result<Glob, String> {
    let compiled = crate::glob::compile(pattern)?;
    let upstream = pattern.split('/').next().unwrap_or_default();
    let is_glob = upstream.contains(['*', '?', '[']);
    if !pattern.contains('/') && !is_glob {
        return Err(format!(
            "{pattern:?} must name `upstream/target` (or use a glob such as `*`)"
        ));
    }
    if !is_glob && !upstreams.iter().any(|u| u == upstream) {
        return Err(format!(
            "{pattern:?} names upstream {upstream:?}, which is not configured (upstreams: {})",
            upstreams.join(", ")
        ));
    }
    Ok(compiled)
}
