//! Warnings about a policy set against the current catalogue: patterns that match no target
//! (a typo, or an upstream that changed), with file and line. Warnings do not reject a set:
//! catalogues change, and a rule for a tool that is not there yet is legitimate.

use super::compile::PolicySet;
use super::{Kind, PolicyIssue};
use crate::catalogue::{ListKind, Snapshot};

/// Every pattern of `set` that matches nothing in `snapshot` (task patterns are not checked:
/// tasks come and go).
pub fn unmatched_patterns(set: &PolicySet, snapshot: &Snapshot) -> Vec<PolicyIssue> {
    let targets = |kind: Kind| -> Vec<String> {
        let lists: &[ListKind] = match kind {
            Kind::Tool => &[ListKind::Tools],
            Kind::Prompt => &[ListKind::Prompts],
            Kind::Resource => &[ListKind::Resources],
            Kind::ResourceTemplate => &[ListKind::ResourceTemplates],
            Kind::Completion => &[ListKind::Prompts, ListKind::ResourceTemplates],
            Kind::Task => &[],
        };
        lists
            .iter()
            .flat_map(|l| snapshot.entries(*l).iter().filter_map(|e| e.target.clone()))
            .collect()
    };
    let mut issues = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Task) {
        let names = targets(kind);
        for role in &set.roles {
            for (effect, rules) in [("allow", &role.allow), ("deny", &role.deny)] {
                let kind_rules = &rules.kinds[kind as usize];
                for (i, (pattern, line)) in kind_rules.patterns.iter().enumerate() {
                    let used = names.iter().any(|n| kind_rules.set.matches(n).contains(&i));
                    if !used {
                        issues.push(PolicyIssue::new(
                            role.file.clone(),
                            *line,
                            format!(
                                "role {:?}, {effect}.{}: {pattern:?} matches nothing in the current catalogue",
                                role.name,
                                kind.key()
                            ),
                        ));
                    }
                }
            }
        }
    }
    issues
}
