//! Rate limits counted in a real Redis (`limits.store: redis`): two `RateLimits` sharing one
//! store behave as two replicas of one gateway. A limit admits exactly its rate across both; a
//! refused call consumes nothing; role limits are shared too; while Redis is down the
//! configured `on_store_error` applies (role limits always refuse) and, once it is back, limits
//! are enforced again without a restart; a store that does not answer times out; behind Redis
//! Sentinel, the limits follow the master through a failover after the master died and through
//! a planned one.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use mcpgate::config::Config;
use mcpgate::limits::rate::{Rate, RawRate};
use mcpgate::limits::{CallKey, Checked, LimitKind, RateLimits};
use support::redis::{Redis, Sentinel};

const UPSTREAMS: &str = "
  - id: tight
    http: { url: \"http://127.0.0.1:9/mcp\" }
    rate_limit: 1/m
  - id: open
    http: { url: \"http://127.0.0.1:9/mcp\" }
    tools:
      \"create_*\": { rate_limit: 2/m }
";

fn replica(limits: &str) -> RateLimits {
    let yaml =
        format!("listen: {{ addr: \"127.0.0.1:0\" }}\nlimits: {limits}\nupstreams:\n{UPSTREAMS}");
    let cfg = Config::from_yaml(&yaml, Path::new("t.yaml"), Path::new("."), &|_| None).unwrap();
    RateLimits::new(&cfg.limits, &cfg.upstreams)
        .with_store(&cfg.limits)
        .unwrap()
}

fn store(redis: &Redis, rest: &str) -> String {
    format!(
        "{{ store: redis, redis: {{ url: \"{}\", timeout: 200ms }}{rest} }}",
        redis.url()
    )
}

fn call(principal: u64, upstream: &str) -> CallKey<'_> {
    CallKey {
        principal,
        upstream,
        tool: None,
    }
}

fn rate(text: &str) -> Rate {
    Rate::parse(&RawRate::Text(text.into())).unwrap()
}

/// The limit that refused a call (panics when none did).
fn refused_by(checked: Checked) -> LimitKind {
    match checked {
        Checked::Limited(r) => r.limit,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn no_roles() -> std::iter::Empty<(&'static str, Rate)> {
    std::iter::empty()
}

#[tokio::test]
async fn a_limit_admits_its_rate_across_replicas_together() {
    let redis = Redis::start();
    let limits = store(&redis, ", per_principal: 10/m");
    let replicas = [replica(&limits), replica(&limits)];
    for i in 0..10 {
        let checked = replicas[i % 2].check(&call(1, "open"), no_roles()).await;
        assert_eq!(checked, Checked::Admitted, "call {i}");
    }
    for r in &replicas {
        match r.check(&call(1, "open"), no_roles()).await {
            Checked::Limited(refused) => {
                assert_eq!(refused.limit, LimitKind::PerPrincipal);
                assert!(
                    refused.retry_after > Duration::ZERO
                        && refused.retry_after <= Duration::from_secs(6),
                    "{refused:?}"
                );
            }
            other => panic!("the 11th call across replicas: {other:?}"),
        }
    }
    // Another principal has its own bucket.
    assert_eq!(
        replicas[1].check(&call(2, "open"), no_roles()).await,
        Checked::Admitted
    );
    // The in-memory limiters were not used: a replica without the store admits freely.
    let alone = replica("{ per_principal: 10/m }");
    assert_eq!(
        alone.check(&call(1, "open"), no_roles()).await,
        Checked::Admitted
    );
}

#[tokio::test]
async fn a_refused_call_consumes_nothing_in_the_other_limits() {
    let redis = Redis::start();
    let limits = store(&redis, ", per_principal: 2/m");
    let (a, b) = (replica(&limits), replica(&limits));
    assert_eq!(
        a.check(&call(7, "tight"), no_roles()).await,
        Checked::Admitted
    );
    // The upstream's 1/m refuses on the other replica; the principal's cell must survive.
    assert_eq!(
        refused_by(b.check(&call(7, "tight"), no_roles()).await),
        LimitKind::PerUpstream
    );
    assert_eq!(
        b.check(&call(7, "open"), no_roles()).await,
        Checked::Admitted
    );
    assert_eq!(
        refused_by(a.check(&call(7, "open"), no_roles()).await),
        LimitKind::PerPrincipal
    );
}

#[tokio::test]
async fn role_and_tool_limits_are_shared_too() {
    let redis = Redis::start();
    let limits = store(&redis, "");
    let (a, b) = (replica(&limits), replica(&limits));
    let roles = [("analysts", rate("3/m"))];
    for i in 0..3 {
        let r = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            r.check(&call(9, "open"), roles.iter().copied()).await,
            Checked::Admitted
        );
    }
    assert_eq!(
        refused_by(b.check(&call(9, "open"), roles.iter().copied()).await),
        LimitKind::PerRole
    );
    // A tool entry's limit counts every caller of that tool together.
    let cfg_tool = |principal| CallKey {
        principal,
        upstream: "open",
        tool: Some(mcpgate::config::ToolMatch {
            name: "create_ticket",
            entry: 0,
        }),
    };
    assert_eq!(a.check(&cfg_tool(1), no_roles()).await, Checked::Admitted);
    assert_eq!(b.check(&cfg_tool(2), no_roles()).await, Checked::Admitted);
    assert_eq!(
        refused_by(a.check(&cfg_tool(3), no_roles()).await),
        LimitKind::PerTool
    );
}

#[tokio::test]
async fn an_outage_follows_on_store_error_and_recovery_needs_no_restart() {
    let mut redis = Redis::start();
    let open = replica(&store(&redis, ", per_principal: 1/h"));
    let closed = replica(&store(
        &redis,
        ", per_principal: 1/h, on_store_error: fail_closed",
    ));
    let roles = [("analysts", rate("100/m"))];
    assert_eq!(
        open.check(&call(1, "open"), no_roles()).await,
        Checked::Admitted
    );
    redis.stop();
    assert_eq!(
        open.check(&call(1, "open"), no_roles()).await,
        Checked::StoreUnavailable { refused: false },
        "fail_open lets the call through"
    );
    assert_eq!(
        closed.check(&call(1, "open"), no_roles()).await,
        Checked::StoreUnavailable { refused: true }
    );
    assert_eq!(
        open.check(&call(1, "open"), roles.iter().copied()).await,
        Checked::StoreUnavailable { refused: true },
        "a role's limit (the security team's) always fails closed"
    );
    // Back (empty: nothing persisted): shared limits apply again, without a restart.
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match open.check(&call(5, "open"), no_roles()).await {
            Checked::Admitted => break,
            Checked::StoreUnavailable { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("after the store came back: {other:?}"),
        }
    }
    assert_eq!(
        refused_by(closed.check(&call(5, "open"), no_roles()).await),
        LimitKind::PerPrincipal,
        "shared with `open`"
    );
}

#[tokio::test]
async fn a_store_that_does_not_answer_times_out() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let limits = replica(&format!(
        "{{ store: redis, redis: {{ url: \"redis://127.0.0.1:{port}\", timeout: 50ms }}, per_principal: 10/m }}"
    ));
    let started = tokio::time::Instant::now();
    assert_eq!(
        limits.check(&call(1, "open"), no_roles()).await,
        Checked::StoreUnavailable { refused: false }
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

/// A principal not seen before: once the store answers (within 15 s), its limit of 2 admits
/// two calls and refuses the third.
async fn limit_holds_for(limits: &RateLimits, principal: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match limits.check(&call(principal, "open"), no_roles()).await {
            Checked::Admitted => break,
            Checked::StoreUnavailable { refused: true }
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("principal {principal}: {other:?}"),
        }
    }
    assert_eq!(
        limits.check(&call(principal, "open"), no_roles()).await,
        Checked::Admitted
    );
    assert_eq!(
        refused_by(limits.check(&call(principal, "open"), no_roles()).await),
        LimitKind::PerPrincipal
    );
}

#[tokio::test]
async fn behind_sentinels_the_limits_follow_the_master_through_failovers() {
    let mut first = Redis::start();
    let second = Redis::replica_of(&first);
    let sentinel = Sentinel::start(&first);
    let limits = replica(&format!(
        "{{ store: redis, redis: {{ url: \"redis://mymaster\", sentinels: [\"redis://127.0.0.1:{}\"], timeout: 200ms }}, per_principal: 2/m, on_store_error: fail_closed }}",
        sentinel.port
    ));
    limit_holds_for(&limits, 1).await;
    // The master dies: the Sentinel promotes its replica.
    first.stop();
    sentinel.wait_for_master(second.port).await;
    limit_holds_for(&limits, 2).await;
    // The first server comes back (as a replica of the second), and a planned failover promotes
    // it again: the second is demoted (Redis closes its clients' connections).
    first.restart();
    sentinel.failover();
    sentinel.wait_for_master(first.port).await;
    for _ in 0..100 {
        if second.role() == "slave" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(second.role(), "slave");
    limit_holds_for(&limits, 3).await;
}
