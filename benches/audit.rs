//! The audit record's cost (DESIGN.md §5.11). `cargo bench --bench audit`.
//!
//! - `audit_encode`: on the call path — the SHA-256 of a call's arguments and the JSON of its
//!   record (principal with roles and groups, policy decision, target, outcome, latency,
//!   remote address and trace id).
//! - `audit_encode_enqueue`: on the call path, all of it — a place reserved in the queue, the
//!   record encoded and queued, while the writer thread drains the queue into a file.
//! - `audit_seal_hmac`: on the writer thread, per record — the HMAC-SHA256 chain link and the
//!   sealed line.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate::audit::record::{self, CallRecord, DecisionFields, Origin, Outcome, PrincipalFields};
use mcpgate::audit::{Auditor, chain};
use mcpgate::auth::Principal;
use mcpgate::config::Config;
use mcpgate::protocol::Era;
use mcpgate::telemetry::Metrics;
use serde_json::json;

fn principal() -> Principal {
    let mut p = Principal::anonymous();
    p.subject = "alice@example.com".into();
    p.issuer = Some("https://idp.example.com/".into());
    p.client_id = Some("claude-desktop".into());
    p.roles = vec!["engineer".into(), "oncall".into()];
    p.groups = vec!["sre".into(), "platform".into()];
    p
}

fn encode(principal: &Principal) -> Vec<u8> {
    let arguments = json!({"project": "OPS", "summary": "disk full on db-7", "priority": 2});
    let digest = mcpgate::audit::arguments::digest(&arguments);
    let body = CallRecord {
        principal: Some(PrincipalFields::from(principal)),
        session: None,
        era: Era::Modern,
        method: "tools/call",
        target: Some("tickets/create_ticket"),
        name: Some("tickets__create_ticket"),
        upstream: Some("tickets"),
        decision: Some(DecisionFields {
            effect: "allow",
            mode: "enforce",
            file: Some("engineering.yaml"),
            line: Some(12),
            role: Some("engineer"),
            rule: Some("tickets/*"),
            policy_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        }),
        outcome: Outcome::Ok,
        error_code: None,
        latency_ms: 12.345,
        args_sha256: Some(&digest),
        arguments: None,
    };
    let origin = Origin {
        remote_addr: Some("10.1.2.3:52814".parse().unwrap()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    };
    record::encode("call", &body, origin)
}

fn bench(c: &mut Criterion) {
    let principal = principal();
    c.bench_function("audit_encode", |b| b.iter(|| black_box(encode(&principal))));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.key"), "ab".repeat(32)).unwrap();
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0 }}
upstreams: [{{ id: tickets, http: {{ url: 'http://127.0.0.1:9/mcp' }} }}]
audit: {{ path: '{0}/audit.jsonl', key_file: '{0}/audit.key', rotate: {{ max_bytes: 64MiB }} }}
",
        dir.path().display()
    );
    let config = Config::from_yaml(&yaml, Path::new("bench.yaml"), Path::new("."), &|_| None)
        .expect("valid");
    let metrics = Metrics::new();
    let auditor =
        Arc::new(Auditor::start(config.audit.as_ref().unwrap(), metrics.audit.clone()).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    c.bench_function("audit_encode_enqueue", |b| {
        b.to_async(&runtime).iter(|| {
            let (auditor, principal) = (Arc::clone(&auditor), &principal);
            async move {
                let slot = auditor.slot().await.unwrap().unwrap();
                slot.send(encode(principal));
            }
        })
    });
    runtime.block_on(auditor.flush());

    let record = encode(&principal);
    let mut sealer = chain::Chain::new(Some([7; 32]), chain::Tail::START);
    let mut out = Vec::with_capacity(1024);
    c.bench_function("audit_seal_hmac", |b| {
        b.iter(|| {
            out.clear();
            sealer.seal(black_box(&record), &mut out);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
