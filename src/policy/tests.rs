//! Matching rules and precedence.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::compile::compile;
use super::{Effect, Grant, Kind, Mode, PolicySet};
use crate::auth::Principal;

const UPSTREAMS: &[&str] = &["k8s", "grafana", "time", "docs", "github"];

fn set(yaml: &str) -> Arc<PolicySet> {
    let upstreams: Vec<String> = UPSTREAMS.iter().map(|s| s.to_string()).collect();
    Arc::new(compile(&[("org.yaml".into(), yaml.into())], &upstreams).expect("valid policy"))
}

fn issues(yaml: &str) -> Vec<String> {
    let upstreams: Vec<String> = UPSTREAMS.iter().map(|s| s.to_string()).collect();
    compile(&[("bad.yaml".into(), yaml.into())], &upstreams)
        .expect_err("invalid policy")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn person(sub: &str, groups: &[&str]) -> Principal {
    Principal {
        subject: sub.into(),
        issuer: Some("https://idp/".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Principal::anonymous()
    }
}

fn effect(set: &Arc<PolicySet>, who: &Principal, kind: Kind, target: &str) -> Effect {
    Grant::new(Arc::clone(set), who, Mode::Enforce)
        .verdict(kind, target, None)
        .unwrap()
        .effect
}

const ORG: &str = r#"
roles:
  - name: sre
    subjects:
      - claim: groups
        any_of: [sre, platform-eng]
    allow:
      tools: ["k8s/*", "grafana/query_*"]
      prompts: ["*"]
    deny:
      tools: ["k8s/delete_*"]
  - name: everyone
    subjects:
      - authenticated: true
    allow:
      tools: ["time/*"]
  - name: auditors
    subjects:
      - claim: sub
        glob: "audit-*"
    deny:
      tools: ["time/*"]
"#;

#[test]
fn deny_beats_allow_and_no_allow_means_deny() {
    let s = set(ORG);
    let sre = person("alice", &["sre"]);
    assert_eq!(effect(&s, &sre, Kind::Tool, "k8s/get_pods"), Effect::Allow);
    assert_eq!(effect(&s, &sre, Kind::Tool, "k8s/delete_pod"), Effect::Deny);
    assert_eq!(
        effect(&s, &sre, Kind::Tool, "grafana/query_range"),
        Effect::Allow
    );
    assert_eq!(
        effect(&s, &sre, Kind::Tool, "grafana/create_dashboard"),
        Effect::Deny
    );
    assert_eq!(
        effect(&s, &sre, Kind::Tool, "time/now"),
        Effect::Allow,
        "from `everyone`"
    );
    let auditor = person("audit-7", &["sre"]);
    assert_eq!(
        effect(&s, &auditor, Kind::Tool, "time/now"),
        Effect::Deny,
        "a deny in any held role beats an allow in another"
    );
    let nobody = Principal::anonymous();
    assert_eq!(effect(&s, &nobody, Kind::Tool, "time/now"), Effect::Deny);
    assert_eq!(
        effect(&s, &sre, Kind::Resource, "docs/file:///a"),
        Effect::Deny
    );
}

#[test]
fn verdicts_name_the_deciding_rule() {
    let s = set(ORG);
    let grant = Grant::new(
        Arc::clone(&s),
        &person("alice", &["platform-eng"]),
        Mode::Enforce,
    );
    assert_eq!(grant.roles(), ["sre", "everyone"]);
    let v = grant.verdict(Kind::Tool, "k8s/delete_pod", None).unwrap();
    let rule = v.rule.unwrap();
    assert_eq!(
        (rule.file.as_str(), rule.role.as_str(), rule.rule.as_str()),
        ("org.yaml", "sre", "k8s/delete_*")
    );
    assert_eq!(rule.line, 11);
    let none = grant.verdict(Kind::Resource, "docs/x", None).unwrap();
    assert_eq!((none.effect, none.rule), (Effect::Deny, None));
}

#[test]
fn every_subject_matcher() {
    let s = set(r#"
roles:
  - { name: by-sub, subjects: [{ claim: sub, equals: alice }], allow: { tools: ["time/a"] } }
  - { name: by-scope, subjects: [{ claim: scope, any_of: [mcp.admin] }], allow: { tools: ["time/b"] } }
  - { name: by-client, subjects: [{ claim: client_id, glob: "svc-*" }], allow: { tools: ["time/c"] } }
  - { name: by-issuer, subjects: [{ claim: iss, equals: "https://partner/" }], allow: { tools: ["time/d"] } }
  - { name: by-claim, subjects: [{ claim: tenant, equals: acme }], allow: { tools: ["time/e"] } }
  - { name: by-mtls, subjects: [{ mtls: "spiffe://prod/*" }], allow: { tools: ["time/f"] } }
  - { name: by-key, subjects: [{ api_key: ci-bot }], allow: { tools: ["time/g"] } }
  - { name: by-role, subjects: [{ claim: roles, equals: admin }], allow: { tools: ["time/h"] } }
"#);
    let mut claims = Map::new();
    claims.insert("tenant".into(), json!("acme"));
    let p = Principal {
        subject: "alice".into(),
        issuer: Some("https://partner/".into()),
        client_id: Some("svc-billing".into()),
        scopes: vec!["mcp".into(), "mcp.admin".into()],
        roles: vec!["admin".into()],
        mtls_identity: Some("spiffe://prod/agent".into()),
        api_key: Some("ci-bot".into()),
        claims: Arc::new(claims),
        ..Principal::anonymous()
    };
    for t in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        assert_eq!(
            effect(&s, &p, Kind::Tool, &format!("time/{t}")),
            Effect::Allow,
            "{t}"
        );
    }
    let other = Principal {
        mtls_identity: Some("spiffe://dev/agent".into()),
        ..person("bob", &[])
    };
    for t in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        assert_eq!(
            effect(&s, &other, Kind::Tool, &format!("time/{t}")),
            Effect::Deny,
            "{t}"
        );
    }
}

#[test]
fn annotation_conditions_deny_destructive_tools() {
    let s = set(r#"
roles:
  - name: sre
    subjects: [{ authenticated: true }]
    allow: { tools: ["k8s/*"] }
    deny: { tool_annotations: { destructiveHint: true } }
  - name: analysts
    subjects: [{ claim: groups, equals: analysts }]
    allow: { tool_annotations: { readOnlyHint: true } }
"#);
    let grant = Grant::new(Arc::clone(&s), &person("a", &[]), Mode::Enforce);
    let destructive = json!({"name": "scale", "annotations": {"destructiveHint": true}});
    let safe = json!({"name": "get", "annotations": {"destructiveHint": false}});
    let unannotated = json!({"name": "list"});
    let e = |tool: &Value| {
        grant
            .verdict(Kind::Tool, "k8s/x", Some(tool))
            .unwrap()
            .effect
    };
    assert_eq!(e(&destructive), Effect::Deny);
    assert_eq!(e(&safe), Effect::Allow);
    // The spec's default for a missing destructiveHint is true: the deny catches it.
    assert_eq!(e(&unannotated), Effect::Deny);
    assert_eq!(e(&json!({"annotations": {"title": "List"}})), Effect::Deny);
    let read_only_without_destructive = json!({"annotations": {"readOnlyHint": true}});
    assert_eq!(e(&read_only_without_destructive), Effect::Deny);
    let analyst = Grant::new(
        s,
        &Principal {
            issuer: None,
            ..person("b", &["analysts"])
        },
        Mode::Enforce,
    );
    let read_only = json!({"annotations": {"readOnlyHint": true}});
    assert_eq!(
        analyst
            .verdict(Kind::Tool, "github/search", Some(&read_only))
            .unwrap()
            .effect,
        Effect::Allow
    );
    assert_eq!(
        analyst
            .verdict(Kind::Tool, "github/search", Some(&unannotated))
            .unwrap()
            .effect,
        Effect::Deny
    );
}

#[test]
fn audit_mode_decides_but_allows() {
    let s = set(ORG);
    let grant = Grant::new(s, &Principal::anonymous(), Mode::Audit);
    assert_eq!(
        grant
            .verdict(Kind::Tool, "k8s/delete_pod", None)
            .unwrap()
            .effect,
        Effect::Deny
    );
    assert!(grant.allows(Kind::Tool, "k8s/delete_pod", None));
}

#[test]
fn invalid_sets_are_reported_with_file_and_line() {
    let found = issues(
        "roles:\n  - name: a\n    subjects: [{ authenticated: true }]\n    alow: { tools: [\"time/*\"] }\n",
    );
    assert!(found[0].starts_with("bad.yaml:4:"), "{found:?}");
    assert!(found[0].contains("alow"), "{found:?}");
    let found = issues(
        r#"
roles:
  - name: a
    subjects: [{ claim: sub, equals: x, glob: "y*" }]
    allow:
      tools: ["nowhere/*", "time/[", "no-slash"]
    rate_limit: lots
  - name: a
    subjects: []
"#,
    )
    .join("\n");
    assert!(
        found.contains("needs exactly one of `equals`, `any_of`, `glob`"),
        "{found}"
    );
    assert!(
        found.contains(
            "bad.yaml:6: role \"a\", allow.tools: \"nowhere/*\" names upstream \"nowhere\""
        ),
        "{found}"
    );
    assert!(found.contains("invalid glob \"time/[\""), "{found}");
    assert!(
        found.contains("\"no-slash\" must name `upstream/target`"),
        "{found}"
    );
    assert!(
        found.contains("rate_limit \"lots\" is not a rate"),
        "{found}"
    );
    assert!(
        found.contains("role \"a\" is defined more than once"),
        "{found}"
    );
    assert!(found.contains("has no subjects"), "{found}");
}

#[test]
fn the_hash_names_the_content() {
    let a = set(ORG);
    let b = set(ORG);
    assert_eq!(a.hash, b.hash);
    let c = set(&ORG.replace("grafana/query_*", "grafana/*"));
    assert_ne!(a.hash, c.hash);
}

fn claims_principal(claims: Value) -> Principal {
    let Value::Object(map) = claims else {
        unreachable!()
    };
    crate::auth::jwt::principal_from_claims(map, &crate::config::ClaimNames::default())
}

#[test]
fn explain_output() {
    let s = set(ORG);
    let alice = claims_principal(json!({"sub": "alice", "iss": "https://idp/", "groups": ["sre"]}));
    let denied = super::explain::explain(
        &s,
        Mode::Enforce,
        &alice,
        Kind::Tool,
        "k8s/delete_pod",
        None,
    );
    insta::assert_snapshot!("explain_denied_by_rule", denied.to_string());
    let allowed = super::explain::explain(
        &s,
        Mode::Enforce,
        &alice,
        Kind::Tool,
        "time/now",
        Some(&json!({})),
    );
    insta::assert_snapshot!("explain_allowed", allowed.to_string());
    let nobody = claims_principal(json!({"sub": "eve"}));
    let default = super::explain::explain(
        &s,
        Mode::Audit,
        &nobody,
        Kind::Prompt,
        "github/triage",
        None,
    );
    insta::assert_snapshot!("explain_default_deny_audit", default.to_string());
    insta::assert_json_snapshot!("explain_json", denied);
}

#[test]
fn missing_hints_take_the_spec_defaults() {
    let tool = json!({"name": "t"});
    let annotation = super::decide::annotation;
    assert_eq!(annotation(&tool, "destructiveHint"), Some(&json!(true)));
    assert_eq!(annotation(&tool, "openWorldHint"), Some(&json!(true)));
    assert_eq!(annotation(&tool, "readOnlyHint"), Some(&json!(false)));
    assert_eq!(annotation(&tool, "idempotentHint"), Some(&json!(false)));
    assert_eq!(annotation(&tool, "title"), None);
    let explicit = json!({"annotations": {"destructiveHint": false}});
    assert_eq!(
        annotation(&explicit, "destructiveHint"),
        Some(&json!(false))
    );
    let s = set(r#"
roles:
  - name: writers
    subjects: [{ authenticated: true }]
    allow: { tool_annotations: { idempotentHint: false, openWorldHint: true } }
"#);
    let grant = Grant::new(s, &person("a", &[]), Mode::Enforce);
    let verdict = grant.verdict(Kind::Tool, "k8s/x", Some(&tool)).unwrap();
    assert_eq!(
        verdict.effect,
        Effect::Allow,
        "defaults satisfy an allow too"
    );
}

#[test]
fn braces_in_patterns_are_literal() {
    let s = set(r#"
roles:
  - name: readers
    subjects: [{ authenticated: true }]
    allow:
      resource_templates: ["docs/*"]
      completion: ["docs/*"]
      tools: ["time/{get,set}"]
    deny:
      resource_templates: ["docs/file:///{path}"]
      completion: ["docs/file:///{path}"]
"#);
    let who = person("a", &[]);
    for kind in [Kind::ResourceTemplate, Kind::Completion] {
        assert_eq!(effect(&s, &who, kind, "docs/file:///{path}"), Effect::Deny);
        assert_eq!(effect(&s, &who, kind, "docs/file:///{id}"), Effect::Allow);
    }
    assert_eq!(
        effect(&s, &who, Kind::Tool, "time/{get,set}"),
        Effect::Allow
    );
    assert_eq!(
        effect(&s, &who, Kind::Tool, "time/get"),
        Effect::Deny,
        "no alternation"
    );
    // Escaped braces and braces inside a class stay what they were.
    let escaped = set(r#"
roles:
  - name: r
    subjects: [{ authenticated: true }]
    allow: { tools: ["time/\\{x\\}", "time/[{]y[}]", "time/[]{]z"] }
"#);
    assert_eq!(
        effect(&escaped, &who, Kind::Tool, "time/{x}"),
        Effect::Allow
    );
    assert_eq!(
        effect(&escaped, &who, Kind::Tool, "time/{y}"),
        Effect::Allow
    );
    assert_eq!(effect(&escaped, &who, Kind::Tool, "time/{z"), Effect::Allow);
}
