//! The added latency of an MRTR retry that lands on another replica than the one holding its
//! call (`limits.store: redis`, DESIGN.md §5.12): the retry is published to the owner over Redis
//! pub/sub, the owner answers it as if local and streams the HTTP answer back through a Redis
//! stream. Two in-process replicas share a real `redis-server` (Debian package, installed by
//! scripts/setup-e2e.sh) in front of the legacy stdio mock, whose `ask` tool sends an
//! elicitation and then answers at once. Only the retry is timed (parking the call is set-up).
//! `cargo bench --bench mrtr_handoff`.
//!
//! - `retry/same_replica`: the retry lands on the replica holding the call.
//! - `retry/other_replica`: it lands on the other one and is handed off through Redis.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use support::Client;
use support::cluster::{cluster, park, retry, stdio_legacy};
use support::redis::Redis;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = Redis::start();
    let replicas = rt.block_on(cluster(2, &stdio_legacy(), Some(&redis)));
    let clients: Vec<Client> = replicas.replicas.iter().map(Client::new).collect();
    let mut group = c.benchmark_group("retry");
    group.measurement_time(Duration::from_secs(10));
    for (name, lands) in [("same_replica", 0), ("other_replica", 1)] {
        let (owner, lands) = (&clients[0], &clients[lands]);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let state = park(owner, 0).await;
                    let started = tokio::time::Instant::now();
                    let done = retry(lands, &state).await;
                    spent += started.elapsed();
                    assert_eq!(done.result()["resultType"], "complete");
                }
                spent
            });
        });
    }
    group.finish();
    rt.block_on(replicas.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
