//! "Listed iff callable": for random policy sets, principals and catalogues, every merged list
//! (paged, as clients read it) holds exactly the entries a call would be allowed for.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Grant, Kind, Mode, compile::compile};
use crate::auth::Principal;
use crate::catalogue::namespace::Namespacer;
use crate::catalogue::{ListKind, UpstreamListing};
use crate::config::{NamespacingConfig, PrefixMode, UpstreamId};

const PATTERNS: &[&str] = &[
    "*",
    "up1/*",
    "up2/*",
    "*/a*",
    "up1/b?",
    "*/*c",
    "up2/mem://*",
    "up1/mem://a*",
];
const GROUPS: &[&str] = &["g1", "g2", "g3"];

fn pattern_list() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(PATTERNS, 0..3)
}

/// One role as YAML.
fn role() -> impl Strategy<Value = String> {
    (
        proptest::sample::subsequence(GROUPS, 1..3),
        [pattern_list(), pattern_list(), pattern_list(), pattern_list()],
        [pattern_list(), pattern_list()],
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(groups, allow, deny, annotation)| {
            let list = |p: &Vec<&str>| {
                format!(
                    "[{}]",
                    p.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
                )
            };
            let deny_annotations = annotation
                .map(|a| format!(", tool_annotations: {{ destructiveHint: {a} }}"))
                .unwrap_or_default();
            format!(
                "  - name: NAME\n    subjects: [{{ claim: groups, any_of: {} }}]\n    allow: {{ tools: {}, prompts: {}, resources: {}, resource_templates: {} }}\n    deny: {{ tools: {}, resources: {}{deny_annotations} }}\n",
                list(&groups),
                list(&allow[0]),
                list(&allow[1]),
                list(&allow[2]),
                list(&allow[3]),
                list(&deny[0]),
                list(&deny[1]),
            )
        })
}

fn names() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set("[abc]{1,3}", 0..8)
}

fn listing(
    tools: &BTreeSet<String>,
    destructive: &BTreeSet<String>,
    other: &BTreeSet<String>,
) -> UpstreamListing {
    UpstreamListing {
        lists: [
            tools
                .iter()
                .map(|n| json!({"name": n, "annotations": {"destructiveHint": destructive.contains(n)}}))
                .collect(),
            other.iter().map(|n| json!({"name": n})).collect(),
            other.iter().map(|n| json!({"uri": format!("mem://{n}"), "name": n})).collect(),
            other
                .iter()
                .map(|n| json!({"uriTemplate": format!("mem://{n}/{{id}}"), "name": n}))
                .collect(),
        ],
        ..UpstreamListing::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn listed_iff_callable(
        roles in proptest::collection::vec(role(), 0..4),
        held_groups in proptest::sample::subsequence(GROUPS, 0..3),
        (t1, t2, d, o1, o2) in (names(), names(), names(), names(), names()),
        page_size in 1usize..5,
        audit in any::<bool>(),
    ) {
        let yaml = format!(
            "roles:\n{}",
            roles
                .iter()
                .enumerate()
                .map(|(i, r)| r.replace("NAME", &format!("r{i}")))
                .collect::<String>()
        );
        let yaml = if roles.is_empty() { "roles: []\n".to_string() } else { yaml };
        let upstreams = vec!["up1".to_string(), "up2".to_string()];
        let set = Arc::new(compile(&[("p.yaml".into(), yaml)], &upstreams).expect("generated policy compiles"));
        let principal = Principal {
            subject: "p".into(),
            issuer: Some("iss".into()),
            groups: held_groups.iter().map(|g| g.to_string()).collect(),
            ..Principal::anonymous()
        };
        let mode = if audit { Mode::Audit } else { Mode::Enforce };
        let grant = Grant::new(set, &principal, mode);
        let ns = Namespacer::new(
            &NamespacingConfig { separator: "__".into(), prefix: PrefixMode::Always },
            2,
        );
        let snapshot = crate::catalogue::merge::merge(&ns, &[
            (UpstreamId::parse("up1").unwrap(), Arc::new(listing(&t1, &d, &o1))),
            (UpstreamId::parse("up2").unwrap(), Arc::new(listing(&t2, &d, &o2))),
        ]);
        for list in ListKind::ALL {
            // What a client reads, page by page.
            let mut listed = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = snapshot
                    .page(list, cursor.as_deref(), page_size, &|e| grant.lists(list, e))
                    .unwrap()
                    .to_value();
                listed.extend(
                    page[list.result_member()]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v[list.key_field()].as_str().unwrap().to_string()),
                );
                match page.get("nextCursor").and_then(Value::as_str) {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            // What a call would be allowed for: the router's check on the same target.
            let callable: Vec<String> = snapshot
                .entries(list)
                .iter()
                .filter(|e| {
                    let tool = (list == ListKind::Tools).then_some(&e.value);
                    e.target.as_deref().is_some_and(|t| grant.allows(Kind::of_list(list), t, tool))
                })
                .map(|e| e.key.clone())
                .collect();
            prop_assert_eq!(listed, callable, "{:?}", list);
        }
    }
}
