//! The per-call traffic-control path (DESIGN.md §5.10), everything on: global, per-principal,
//! two per-role, per-upstream and per-tool rate limits (each checked, then consumed), the
//! bulkhead slot and the breaker ticket, settled. `cargo bench --bench traffic`; compare with
//! `decide_call` of `cargo bench --bench policy` (a call's policy decision).
//!
//! - `control_path`: one call admitted by every control (its tool matched against the
//!   upstream's `tools:` globs, 6 limits peeked and consumed, bulkhead slot taken and freed,
//!   breaker ticket taken and settled), among 10,000 principals.
//! - `rate_limited`: one call refused by its principal's limit (6 limits peeked, none
//!   consumed).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate::config::Config;
use mcpgate::limits::rate::{Rate, RawRate};
use mcpgate::limits::{CallKey, RateLimits};
use mcpgate::telemetry::Metrics;
use mcpgate::upstream::controls::Controls;

const PRINCIPALS: u64 = 10_000;

fn config(per_principal: &str) -> Config {
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0 }}
limits: {{ global: 100000000/s, per_principal: {per_principal} }}
upstreams:
  - id: tickets
    http: {{ url: 'http://127.0.0.1:9/mcp' }}
    rate_limit: 100000000/s
    max_concurrency: 64
    circuit_breaker: {{ consecutive_failures: 5 }}
    tools:
      \"read_*\": {{ rate_limit: 100000/s }}
      \"create_*\": {{ rate_limit: 100000000/s, timeout: 2m }}
"
    );
    Config::from_yaml(&yaml, Path::new("bench.yaml"), Path::new("."), &|_| None).unwrap()
}

fn bench(c: &mut Criterion) {
    let role = |r: &str| Rate::parse(&RawRate::Text(r.into())).unwrap();
    let roles = [("analysts", role("100000/s")), ("oncall", role("200000/s"))];
    let metrics = Metrics::new();

    // Rates far above what one core reaches: the bench measures the path, never a refusal.
    let cfg = config("100000000/s");
    let limits = RateLimits::new(&cfg.limits, &cfg.upstreams);
    let up = &cfg.upstreams[0];
    let controls = Controls::new(
        up.id.as_str(),
        up.timeout,
        up.traffic.clone(),
        &metrics.traffic,
    );
    let mut principal = 0u64;
    c.bench_function("control_path", |b| {
        b.iter(|| {
            principal = (principal + 1) % PRINCIPALS;
            let call = CallKey {
                principal: principal.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                upstream: "tickets",
                // Matched once per call, as the router does.
                tool: controls.traffic.tool("create_ticket"),
            };
            limits.admit(&call, roles.iter().copied()).unwrap();
            let slot = controls.bulkhead().unwrap();
            let lease = controls.breaker(false, Some(slot)).unwrap();
            black_box(controls.timeout(call.tool));
            lease.settle(Ok(&Ok(serde_json::Value::Null)));
        });
    });

    let cfg = config("1/h");
    let limits = RateLimits::new(&cfg.limits, &cfg.upstreams);
    let call = CallKey {
        principal: 42,
        upstream: "tickets",
        tool: cfg.upstreams[0].traffic.tool("create_ticket"),
    };
    limits.admit(&call, roles.iter().copied()).unwrap();
    c.bench_function("rate_limited", |b| {
        b.iter(|| black_box(limits.admit(&call, roles.iter().copied()).unwrap_err()));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
