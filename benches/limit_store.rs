//! The added cost of shared rate limits (`limits.store: redis`, DESIGN.md §5.12): one call's
//! check of six limits (global, per-principal, two per-role, per-upstream, per-tool) in memory
//! beside the same check in a real Redis on loopback (one round trip running the GCRA script).
//! Starts its own `redis-server` (Debian package, installed by scripts/setup-e2e.sh) on a free
//! port. `cargo bench --bench limit_store`.
//!
//! - `check/memory`: `RateLimits::check` with the in-process store.
//! - `check/redis`: the same call through the shared store.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate::config::Config;
use mcpgate::limits::rate::{Rate, RawRate};
use mcpgate::limits::{CallKey, Checked, RateLimits};

const PRINCIPALS: u64 = 10_000;

fn limits(store: &str) -> RateLimits {
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0 }}
limits: {{ global: 100000000/s, per_principal: 100000000/s{store} }}
upstreams:
  - id: tickets
    http: {{ url: 'http://127.0.0.1:9/mcp' }}
    rate_limit: 100000000/s
    tools:
      \"create_*\": {{ rate_limit: 100000000/s }}
"
    );
    let cfg = Config::from_yaml(&yaml, Path::new("bench.yaml"), Path::new("."), &|_| None).unwrap();
    RateLimits::new(&cfg.limits, &cfg.upstreams)
        .with_store(&cfg.limits)
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup-e2e.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let role = |r: &str| Rate::parse(&RawRate::Text(r.into())).unwrap();
    let roles = [
        ("analysts", role("100000000/s")),
        ("oncall", role("100000000/s")),
    ];
    let stores = [
        ("memory", String::new()),
        (
            "redis",
            format!(", store: redis, redis: {{ url: 'redis://127.0.0.1:{port}' }}"),
        ),
    ];
    let mut group = c.benchmark_group("check");
    for (name, store) in stores {
        let limits = runtime.block_on(async { limits(&store) });
        let mut principal = 0u64;
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                principal = (principal + 1) % PRINCIPALS;
                let call = CallKey {
                    principal: principal.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    upstream: "tickets",
                    tool: Some(mcpgate::config::ToolMatch {
                        name: "create_ticket",
                        entry: 0,
                    }),
                };
                let limits = &limits;
                async move {
                    let checked = limits.check(&call, roles.iter().copied()).await;
                    assert_eq!(checked, Checked::Admitted);
                }
            });
        });
    }
    group.finish();
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
