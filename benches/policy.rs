//! Policy decisions at scale: 1,000 tools over 5 upstreams and 50 roles, for a principal who
//! holds 5 of them. `cargo bench --bench policy`.
//!
//! - `decide_call`: what a `tools/call` pays (the principal's roles resolved, then the verdict
//!   on one tool).
//! - `list_tools`: a whole `tools/list` read page by page (100 per page), every entry filtered;
//!   `cached_view` is the same read as the gateway serves it (the principal's view of the
//!   snapshot computed once, then cached); `unfiltered_baseline` is the same read without
//!   policies.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate::auth::Principal;
use mcpgate::catalogue::merge::merge;
use mcpgate::catalogue::namespace::Namespacer;
use mcpgate::catalogue::{ListKind, Page, UpstreamListing};
use mcpgate::config::{NamespacingConfig, PrefixMode, UpstreamId};
use mcpgate::error::GatewayError;
use mcpgate::policy::compile::compile;
use mcpgate::policy::{Grant, Kind, Mode};
use serde_json::{Value, json};

const UPSTREAMS: usize = 5;
const TOOLS: usize = 1000;
const ROLES: usize = 50;

fn policy() -> String {
    let mut yaml = String::from("roles:\n");
    for r in 0..ROLES {
        let up = r % UPSTREAMS;
        writeln!(
            yaml,
            "  - name: role-{r}\n    subjects: [{{ claim: groups, any_of: [group-{r}, all-{}] }}]\n    allow:\n      tools: [\"up{up}/tool_{r}*\", \"up{up}/read_*\", \"up{}/tool_9*\"]\n    deny:\n      tools: [\"up{up}/tool_{r}99\"]\n      tool_annotations: {{ destructiveHint: true }}",
            r % 10,
            (up + 1) % UPSTREAMS
        )
        .unwrap();
    }
    yaml
}

fn listing(up: usize) -> UpstreamListing {
    let tools: Vec<Value> = (0..TOOLS / UPSTREAMS)
        .map(|i| {
            let name = if i % 4 == 0 { format!("read_{up}_{i}") } else { format!("tool_{}", i * 7 + up) };
            json!({"name": name, "inputSchema": {"type": "object"}, "annotations": {"destructiveHint": i % 10 == 0}})
        })
        .collect();
    UpstreamListing {
        lists: [tools, vec![], vec![], vec![]],
        ..UpstreamListing::default()
    }
}

/// Reads a whole list page by page, following `nextCursor`; the number of entries shown.
fn read_all(read: &dyn Fn(Option<&str>) -> Result<Page, GatewayError>) -> usize {
    let mut cursor: Option<String> = None;
    let mut shown = 0;
    loop {
        let page = read(cursor.as_deref()).unwrap().to_value();
        shown += page["tools"].as_array().unwrap().len();
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => return shown,
        }
    }
}

fn bench(c: &mut Criterion) {
    let upstreams: Vec<String> = (0..UPSTREAMS).map(|u| format!("up{u}")).collect();
    let set = Arc::new(compile(&[("org.yaml".into(), policy())], &upstreams).unwrap());
    assert_eq!(set.roles.len(), ROLES);
    let ns = Namespacer::new(
        &NamespacingConfig {
            separator: "__".into(),
            prefix: PrefixMode::Always,
        },
        UPSTREAMS,
    );
    let listings: Vec<_> = (0..UPSTREAMS)
        .map(|u| {
            (
                UpstreamId::parse(&format!("up{u}")).unwrap(),
                Arc::new(listing(u)),
            )
        })
        .collect();
    let snapshot = merge(&ns, &listings);
    assert_eq!(snapshot.entries(ListKind::Tools).len(), TOOLS);
    let principal = Principal {
        subject: "bench".into(),
        issuer: Some("https://idp/".into()),
        groups: vec!["all-3".into()],
        ..Principal::anonymous()
    };
    let held = Grant::new(Arc::clone(&set), &principal, Mode::Enforce)
        .roles()
        .len();
    assert_eq!(held, ROLES / 10, "the principal holds 5 roles");
    let tool = snapshot.entries(ListKind::Tools)[TOOLS / 2].clone();
    let target = tool.target.clone().expect("a tool's target");

    let mut group = c.benchmark_group("policy");
    group.bench_function("decide_call/1000_tools_50_roles", |b| {
        b.iter(|| {
            let grant = Grant::new(Arc::clone(&set), &principal, Mode::Enforce);
            grant.allows(Kind::Tool, &target, Some(&tool.value))
        });
    });
    group.bench_function("list_tools/1000_tools_50_roles", |b| {
        b.iter(|| {
            let grant = Grant::new(Arc::clone(&set), &principal, Mode::Enforce);
            read_all(&|cursor| {
                snapshot.page(ListKind::Tools, cursor, 100, &|e| {
                    grant.lists(ListKind::Tools, e)
                })
            })
        });
    });
    group.bench_function("list_tools/1000_tools_50_roles_cached_view", |b| {
        b.iter(|| {
            let grant = Grant::new(Arc::clone(&set), &principal, Mode::Enforce);
            read_all(&|cursor| {
                snapshot.page_for(ListKind::Tools, cursor, 100, grant.view_key(), &|e| {
                    grant.lists(ListKind::Tools, e)
                })
            })
        });
    });
    group.bench_function("list_tools/unfiltered_baseline", |b| {
        b.iter(|| read_all(&|cursor| snapshot.page(ListKind::Tools, cursor, 100, &|_| true)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
