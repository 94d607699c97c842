use std::path::Path;
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;
use crate::config::Config;

fn config(yaml_limits: &str, yaml_upstreams: &str) -> Config {
    let yaml = format!(
        "listen: {{ addr: \"127.0.0.1:0\" }}\nlimits: {yaml_limits}\nupstreams:\n{yaml_upstreams}"
    );
    Config::from_yaml(&yaml, Path::new("t.yaml"), Path::new("."), &|_| None).unwrap()
}

fn limits(
    yaml_limits: &str,
    yaml_upstreams: &str,
) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
    let cfg = config(yaml_limits, yaml_upstreams);
    let clock = FakeRelativeClock::default();
    (
        RateLimits::with_clock(&cfg.limits, &cfg.upstreams, clock.clone()),
        clock,
    )
}

const TWO_UPSTREAMS: &str = "
  - id: tight
    http: { url: \"http://127.0.0.1:9/mcp\" }
    rate_limit: 1/m
    tools:
      \"create_*\": { rate_limit: 1/h }
      \"create_ticket\": { rate_limit: 1000/s }
  - id: open
    http: { url: \"http://127.0.0.1:9/mcp\" }
";

fn call(principal: u64, upstream: &str) -> CallKey<'_> {
    CallKey {
        principal,
        upstream,
        tool: None,
    }
}

fn no_roles() -> std::iter::Empty<(&'static str, Rate)> {
    std::iter::empty()
}

#[test]
fn a_refused_call_costs_nothing_in_the_other_limits() {
    let (l, _) = limits("{ per_principal: 2/m }", TWO_UPSTREAMS);
    l.admit(&call(7, "tight"), no_roles()).unwrap();
    // The upstream's 1/m refuses; the principal's second cell must survive the refusal.
    let refused = l.admit(&call(7, "tight"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerUpstream);
    l.admit(&call(7, "open"), no_roles()).unwrap();
    let refused = l.admit(&call(7, "open"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerPrincipal);
    // Another principal has its own bucket.
    l.admit(&call(8, "open"), no_roles()).unwrap();
}

#[test]
fn the_longest_wait_is_reported_and_honoured() {
    let (l, clock) = limits("{ per_principal: 2/m }", TWO_UPSTREAMS);
    l.admit(&call(1, "tight"), no_roles()).unwrap();
    l.admit(&call(1, "open"), no_roles()).unwrap();
    // Both refuse now: the principal's next cell comes in 30 s, the upstream's in 60 s.
    let refused = l.admit(&call(1, "tight"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerUpstream);
    assert_eq!(refused.retry_after, Duration::from_secs(60));
    clock.advance(Duration::from_secs(59));
    assert!(l.admit(&call(1, "tight"), no_roles()).is_err());
    clock.advance(Duration::from_secs(1));
    l.admit(&call(1, "tight"), no_roles()).unwrap();
}

#[test]
fn role_limits_apply_to_each_holder_alone() {
    let (l, _) = limits("{}", TWO_UPSTREAMS);
    let rate = Rate::parse(&rate::RawRate::Text("1/m".into())).unwrap();
    let roles = [("analyst", rate)];
    l.admit(&call(1, "open"), roles.iter().copied()).unwrap();
    let refused = l
        .admit(&call(1, "open"), roles.iter().copied())
        .unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerRole);
    l.admit(&call(2, "open"), roles.iter().copied()).unwrap();
    // Another role with the same rate is a bucket of its own.
    l.admit(&call(1, "open"), [("auditor", rate)].into_iter())
        .unwrap();
    // Without the role, the principal is not limited.
    l.admit(&call(1, "open"), no_roles()).unwrap();
}

#[test]
fn tool_limits_follow_the_first_matching_glob_per_tool() {
    let (l, clock) = limits("{}", TWO_UPSTREAMS);
    let tight = config("{}", TWO_UPSTREAMS).upstreams[0].traffic.clone();
    let tool = |name| CallKey {
        principal: 1,
        upstream: "tight",
        tool: tight.tool(name),
    };
    l.admit(&tool("create_ticket"), no_roles()).unwrap();
    clock.advance(Duration::from_secs(60));
    // `create_*` (1/h) comes first in the file and wins over the later, looser entry.
    let refused = l.admit(&tool("create_ticket"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerTool);
    assert_eq!(refused.retry_after, Duration::from_secs(3540));
    // Each matching tool has its own bucket; a tool matching nothing has none.
    l.admit(&tool("create_user"), no_roles()).unwrap();
    clock.advance(Duration::from_secs(60));
    l.admit(&tool("search"), no_roles()).unwrap();
    assert_eq!(
        l.applicable(
            &tool("create_user"),
            [(
                "ops",
                Rate::parse(&rate::RawRate::Text("5/s".into())).unwrap()
            )]
            .into_iter()
        )
        .into_iter()
        .map(|a| AppliedLimit::from(a).to_string())
        .collect::<Vec<_>>(),
        [
            "per_role 5/s (role \"ops\")",
            "per_upstream 1/m",
            "per_tool 1/h"
        ]
    );
}

#[test]
fn burst_allows_calls_at_once_then_the_rate() {
    let (l, clock) = limits("{ global: { rate: 10/s, burst: 3 } }", TWO_UPSTREAMS);
    for principal in 0..3 {
        l.admit(&call(principal, "open"), no_roles()).unwrap();
    }
    let refused = l.admit(&call(9, "open"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::Global);
    assert_eq!(refused.retry_after, Duration::from_millis(100));
    clock.advance(Duration::from_millis(100));
    l.admit(&call(9, "open"), no_roles()).unwrap();
}

#[test]
fn a_million_principals_leave_nothing_behind_once_their_buckets_refill() {
    let (l, clock) = limits("{ per_principal: 600/m }", TWO_UPSTREAMS);
    for principal in 0..1_000_000u64 {
        l.admit(&call(principal, "open"), no_roles()).unwrap();
    }
    assert_eq!(l.keys(), 1_000_000);
    // Refusals store nothing: a peek of an unseen key does not create it.
    let (g, _) = limits("{ global: 1/h, per_principal: 600/m }", TWO_UPSTREAMS);
    g.admit(&call(0, "open"), no_roles()).unwrap();
    for principal in 1..1000u64 {
        assert!(g.admit(&call(principal, "open"), no_roles()).is_err());
    }
    assert_eq!(g.keys(), 2);
    // Each bucket refilled 100 ms (one call's worth) after its call; governor drops a key one
    // emission interval after that.
    clock.advance(Duration::from_millis(199));
    l.retain_recent();
    assert_eq!(l.keys(), 1_000_000);
    clock.advance(Duration::from_millis(1));
    l.retain_recent();
    assert_eq!(l.keys(), 0);
}

#[test]
fn principal_keys_come_from_the_digest() {
    assert_eq!(principal_key("00000000000000ff00"), 255);
    assert_ne!(
        principal_key(&crate::auth::Principal::anonymous().digest()),
        0
    );
    assert_eq!(principal_key(""), 0);
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_limits_and_starts_changed_ones_full() {
    let (l, _) = limits("{ per_principal: 1/m }", TWO_UPSTREAMS);
    l.admit(&call(1, "tight"), no_roles()).unwrap();
    // Both the principal's and the upstream's only cell are spent.
    assert!(l.admit(&call(1, "tight"), no_roles()).is_err());
    // Same limits, one more upstream: nothing is handed out afresh.
    let more = format!(
        "{TWO_UPSTREAMS}  - id: added\n    http: {{ url: \"http://127.0.0.1:9/mcp\" }}\n    rate_limit: 1/m\n"
    );
    let cfg = config("{ per_principal: 1/m }", &more);
    l.reconfigure(&cfg.limits, &cfg.upstreams);
    let refused = l.admit(&call(1, "tight"), no_roles()).unwrap_err();
    assert_eq!(refused.limit, LimitKind::PerPrincipal);
    l.admit(&call(2, "added"), no_roles()).unwrap();
    assert_eq!(
        l.admit(&call(3, "added"), no_roles()).unwrap_err().limit,
        LimitKind::PerUpstream,
        "the added upstream's limit applies"
    );
    // A changed per-principal rate starts full; the upstream's unchanged 1/m stays spent.
    let cfg = config("{ per_principal: 5/m }", &more);
    l.reconfigure(&cfg.limits, &cfg.upstreams);
    l.admit(&call(1, "open"), no_roles()).unwrap();
    assert_eq!(
        l.admit(&call(1, "tight"), no_roles()).unwrap_err().limit,
        LimitKind::PerUpstream
    );
    // A removed upstream's limit no longer applies.
    let cfg = config(
        "{}",
        "  - id: tight\n    http: { url: \"http://127.0.0.1:9/mcp\" }\n",
    );
    l.reconfigure(&cfg.limits, &cfg.upstreams);
    for _ in 0..3 {
        l.admit(&call(1, "tight"), no_roles()).unwrap();
    }
}
