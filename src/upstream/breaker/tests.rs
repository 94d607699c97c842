use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

use super::*;

fn config(consecutive: u32, half_open: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: NonZeroU32::new(consecutive).unwrap(),
        failure_rate: 0.5,
        window: Duration::from_secs(30),
        min_calls: 10,
        open_for: Duration::from_secs(30),
        half_open_calls: NonZeroU32::new(half_open).unwrap(),
    }
}

fn breaker(config: BreakerConfig) -> (Arc<Breaker>, BreakerMetrics) {
    let counter = |n: &str| IntCounter::new(n, "t").unwrap();
    let metrics = BreakerMetrics {
        state: IntGauge::new("s", "t").unwrap(),
        transitions: [counter("c"), counter("h"), counter("o")],
    };
    (Arc::new(Breaker::new(config, metrics.clone())), metrics)
}

fn fail(b: &Arc<Breaker>) {
    b.admit(false).unwrap().settle(Verdict::Failure);
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures_and_recovers_through_half_open() {
    let (b, m) = breaker(config(3, 1));
    fail(&b);
    fail(&b);
    // A success in between starts the count again.
    b.admit(false).unwrap().settle(Verdict::Success);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Closed);
    fail(&b);
    assert_eq!(b.state(), State::Open);
    assert_eq!(m.state.get(), 2);
    assert_eq!(b.admit(false).err(), Some(Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.admit(false).err(), Some(Duration::from_secs(20)));

    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(b.state(), State::HalfOpen);
    let probe = b.admit(false).unwrap();
    assert_eq!(m.state.get(), 1);
    // One probe slot: the next client call is refused while the probe runs.
    assert!(b.admit(false).is_err());
    probe.settle(Verdict::Failure);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.admit(false).err(), Some(Duration::from_secs(30)));

    tokio::time::advance(Duration::from_secs(30)).await;
    b.admit(false).unwrap().settle(Verdict::Success);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(m.state.get(), 0);
    assert_eq!(
        m.transitions
            .iter()
            .map(IntCounter::get)
            .collect::<Vec<_>>(),
        [1, 2, 2]
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_ends_without_a_verdict_frees_its_slot() {
    let (b, _) = breaker(config(1, 1));
    fail(&b);
    tokio::time::advance(Duration::from_secs(30)).await;
    drop(b.admit(false).unwrap());
    assert_eq!(b.state(), State::HalfOpen);
    b.admit(false).unwrap().settle(Verdict::Neutral);
    b.admit(false).unwrap().settle(Verdict::Success);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_gateways_own_calls_pass_an_open_circuit_and_decide_it() {
    let (b, _) = breaker(config(1, 1));
    fail(&b);
    assert!(b.admit(false).is_err());
    // The catalogue refresh still reaches the upstream; its failure keeps the circuit open for
    // another full spell.
    tokio::time::advance(Duration::from_secs(20)).await;
    b.admit(true).unwrap().settle(Verdict::Failure);
    assert_eq!(b.admit(false).err(), Some(Duration::from_secs(30)));
    // Its success closes it.
    b.admit(true).unwrap().settle(Verdict::Success);
    assert_eq!(b.state(), State::Closed);
    b.admit(false).unwrap().settle(Verdict::Success);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_the_window_opens_it_once_enough_calls_were_seen() {
    let (b, _) = breaker(config(100, 1));
    // Alternating outcomes: 50% failures, never two in a row.
    for _ in 0..4 {
        fail(&b);
        b.admit(false).unwrap().settle(Verdict::Success);
    }
    fail(&b);
    // 9 calls: below min_calls (10), so no trip yet.
    assert_eq!(b.state(), State::Closed);
    b.admit(false).unwrap().settle(Verdict::Success);
    // 10 calls, 5 failures: the next failure (6 of 11) trips.
    fail(&b);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn old_outcomes_leave_the_window() {
    let (b, _) = breaker(config(100, 1));
    for _ in 0..4 {
        fail(&b);
        b.admit(false).unwrap().settle(Verdict::Success);
    }
    // Half a minute later those 8 calls (4 failed) are out of the 30 s window: 3 more calls,
    // 2 failed, would trip it (6 of 11) if they were not.
    tokio::time::advance(Duration::from_secs(31)).await;
    fail(&b);
    b.admit(false).unwrap().settle(Verdict::Success);
    fail(&b);
    assert_eq!(b.state(), State::Closed);
    // Neutral outcomes (the client went away) are not calls the upstream failed.
    for _ in 0..20 {
        b.admit(false).unwrap().settle(Verdict::Neutral);
    }
    assert_eq!(b.state(), State::Closed);
}
