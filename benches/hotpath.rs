//! The per-call pieces of the gateway's hot path that are not policy, limits, JWT or audit
//! (those have benches of their own): `cargo bench --bench hotpath`.
//!
//! - `envelope_decode`: a `tools/call` request body (about 300 bytes) → [`Message`].
//! - `name_rewrite`: a namespaced tool name looked up in the merged catalogue of 10 upstreams ×
//!   100 tools and `params.name` rewritten to the upstream's own name; a prefixed resource URI
//!   split to its owner and upstream URI, and an upstream URI mapped back to its wire form.
//! - `session_unseal`: a sealed session id (the `Mcp-Session-Id` of a legacy client with
//!   realistic capabilities) opened and checked: decrypted on its first use, then from the
//!   cache of opened ids on every later request of the session.
//! - `catalogue_page`: one 100-entry `tools/list` page served from the cached snapshot, as the
//!   bytes a transport writes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mcpgate::catalogue::merge::merge;
use mcpgate::catalogue::namespace::Namespacer;
use mcpgate::catalogue::{ListKind, Snapshot, UpstreamListing};
use mcpgate::config::{NamespacingConfig, PrefixMode, UpstreamId};
use mcpgate::downstream::seal::Sealer;
use mcpgate::downstream::session::{SessionClaims, SessionSealer, now_secs};
use mcpgate::jsonrpc::Message;
use serde_json::{Value, json};

const UPSTREAMS: usize = 10;
const TOOLS_PER_UPSTREAM: usize = 100;

/// What an agent sends: a `tools/call` with a few arguments and `_meta`.
const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":4711,"method":"tools/call","params":{"name":"github__search_issues","arguments":{"query":"label:bug state:open gateway","per_page":30,"page":2,"sort":"updated"},"_meta":{"progressToken":"p-4711","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}"#;

fn snapshot() -> Snapshot {
    let ns = Namespacer::new(
        &NamespacingConfig {
            separator: "__".into(),
            prefix: PrefixMode::Always,
        },
        UPSTREAMS,
    );
    let listings: Vec<_> = (0..UPSTREAMS)
        .map(|u| {
            let tools = (0..TOOLS_PER_UPSTREAM)
                .map(|i| {
                    json!({
                        "name": format!("tool_{i:03}"),
                        "description": format!("Tool {i} of upstream {u}: does one thing well."),
                        "inputSchema": {
                            "type": "object",
                            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                            "required": ["query"]
                        }
                    })
                })
                .collect();
            let resources = vec![json!({"uri": format!("file:///srv/u{u}/readme.md"), "name": "readme"})];
            let listing = UpstreamListing {
                lists: [tools, vec![], resources, vec![]],
                up: true,
                ..UpstreamListing::default()
            };
            (UpstreamId::parse(&format!("up{u}")).unwrap(), Arc::new(listing))
        })
        .collect();
    merge(&ns, &listings)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hotpath");

    group.bench_function("envelope_decode/tools_call", |b| {
        b.iter(|| Message::decode(black_box(CALL)).unwrap());
    });

    let snapshot = snapshot();
    assert_eq!(
        snapshot.entries(ListKind::Tools).len(),
        UPSTREAMS * TOOLS_PER_UPSTREAM
    );
    let Message::Request { params, .. } = Message::decode(CALL).unwrap() else {
        panic!("a request");
    };
    let mut params = params.unwrap();
    params["name"] = Value::from("up7__tool_042");
    group.bench_function("name_rewrite/tool", |b| {
        b.iter_batched_ref(
            || params.clone(),
            |params| {
                let name = params["name"].as_str().unwrap();
                let entry = snapshot.tool(name).unwrap();
                params["name"] = Value::from(entry.original.as_str());
                Arc::clone(entry)
            },
            BatchSize::SmallInput,
        );
    });
    let wire_uri = snapshot.entries(ListKind::Resources)[7].key.clone();
    group.bench_function("name_rewrite/resource_uri_in", |b| {
        b.iter(|| snapshot.resolve_uri(black_box(&wire_uri)).unwrap());
    });
    let (owner, upstream_uri) = snapshot.resolve_uri(&wire_uri).unwrap();
    assert_eq!(snapshot.wire_uri(&owner, &upstream_uri), wire_uri);
    group.bench_function("name_rewrite/resource_uri_out", |b| {
        b.iter(|| snapshot.wire_uri(&owner, black_box(&upstream_uri)));
    });

    let sessions = SessionSealer::new(Sealer::new(Some([7; 32])), Duration::from_secs(86_400));
    let claims = SessionClaims {
        id: uuid::Uuid::new_v4(),
        version: "2025-11-25".into(),
        capabilities: json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}, "url": {}}}),
        client_info: Some(json!({"name": "claude-code", "version": "2.1.0"})),
        principal_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        issued_at: now_secs(),
    };
    let token = sessions.seal(&claims);
    assert_eq!(sessions.open(&token).as_deref(), Some(&claims));
    group.bench_function("session_unseal/first_use", |b| {
        b.iter_batched(
            || sessions.seal(&claims),
            |token| sessions.open(&token).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("session_unseal/cached", |b| {
        b.iter(|| sessions.open(black_box(&token)).unwrap());
    });

    let extra = json!({});
    group.bench_function("catalogue_page/100_of_1000_tools", |b| {
        b.iter(|| {
            snapshot
                .page(ListKind::Tools, None, 100, &|_| true)
                .unwrap()
                .close_with(&extra)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
