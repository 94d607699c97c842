//! Several replicas of one gateway (in process, one session key), with and without the shared
//! store (`limits.store: redis`, a real redis-server): a legacy session opened on one replica
//! is served by the others; a `DELETE` on one replica makes the session unknown on every
//! replica sharing the store — also on one started afterwards — and, without the store, on that
//! replica only; a response stream lost on one replica resumes on another; an MRTR retry that
//! lands on another replica than the one holding its call completes it; a task created through
//! one replica is listed through another, for its creator only.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::cluster::{
    Cluster, cluster, cluster_with, cluster_with_session, http, park, retry, stdio_legacy,
};
use support::mock_http::{self, MockEra, MockSpec};
use support::redis::Redis;
use support::{Client, eventually, gateway};

async fn status(client: &Client, sid: &str) -> u16 {
    client.legacy(sid, "tools/list", json!({})).await.status
}

#[tokio::test]
async fn a_delete_on_one_replica_ends_the_session_on_every_replica_sharing_the_store() {
    let redis = Redis::start();
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(3, &http(addr), Some(&redis)).await;
    let clients: Vec<Client> = c.replicas.iter().map(Client::new).collect();
    let sid = clients[0].initialize().await;
    for client in &clients {
        assert_eq!(
            status(client, &sid).await,
            200,
            "any replica serves the session"
        );
    }
    let end = clients[1]
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(end.status, 200);
    for (i, client) in clients.iter().enumerate() {
        eventually(
            5,
            &format!("replica {i} refuses the ended session"),
            || async { status(client, &sid).await == 404 },
        )
        .await;
    }
    // A replica started after the DELETE knows it from the store.
    let late = gateway(&c.yaml).await;
    let late_client = Client::new(&late);
    eventually(5, "a later replica refuses the ended session", || async {
        status(&late_client, &sid).await == 404
    })
    .await;
    // Other sessions are untouched.
    let other = clients[2].initialize().await;
    assert_eq!(status(&clients[0], &other).await, 200);
    late.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn without_the_store_a_delete_ends_the_session_on_its_replica_only() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(2, &http(addr), None).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let sid = a.initialize().await;
    let end = b
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(end.status, 200);
    assert_eq!(status(&b, &sid).await, 404);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        status(&a, &sid).await,
        200,
        "per replica: the other still serves it"
    );
    c.shutdown().await;
}

/// Two replicas sharing `redis` in front of an HTTP mock with the `ticking` tool; keep the
/// mock handle as long as the cluster.
async fn ticking_cluster(redis: &Redis) -> (Cluster, impl Drop) {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tools
        .push(json!({"name": "ticking", "inputSchema": {"type": "object"}}));
    let (addr, _mock, task) = mock_http::start(spec).await;
    (
        cluster(2, &http(addr), Some(redis)).await,
        AbortOnDrop(task),
    )
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn a_lost_response_stream_resumes_on_another_replica() {
    let redis = Redis::start();
    let (c, _mock) = ticking_cluster(&redis).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let sid = a.initialize().await;
    let call = json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {
        "name": "ticking", "arguments": {"ticks": 4, "every_ms": 700},
        "_meta": {"progressToken": "t"}}});
    let mut stream = a.open_stream(&call, &[("mcp-session-id", &sid)]).await;
    let first = stream.next().await.unwrap();
    assert_eq!(first["params"]["progress"], 1);
    let event_id = stream
        .last_event_id
        .clone()
        .expect("legacy events carry ids");
    drop(stream); // the connection to replica A is lost: the call goes on there

    let mut resumed = b.resume_stream(&sid, &event_id).await;
    let mut progress = Vec::new();
    let result = loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), resumed.next())
            .await
            .expect("the resumed stream goes on")
            .expect("an event");
        match message["method"].as_str() {
            Some("notifications/progress") => progress.push(message["params"]["progress"].clone()),
            _ => break message,
        }
    };
    // 700 ms between events: the follower's reads block longer than a Redis command may take.
    assert_eq!(progress, [2, 3, 4], "nothing missed, nothing repeated");
    assert_eq!(result["id"], 41);
    assert_eq!(result["result"]["content"][0]["text"], "ticked");
    c.shutdown().await;
}

#[tokio::test]
async fn an_mrtr_retry_on_another_replica_completes_the_call_parked_on_the_first() {
    let redis = Redis::start();
    let c = cluster(2, &stdio_legacy(), Some(&redis)).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    // The upstream answers 2.5 s after the elicitation: keep-alives and long reads on the way.
    let state = park(&a, 2500).await;
    let mut tampered = state.clone();
    tampered.push('A');
    assert_eq!(
        retry(&b, &tampered).await.error_code(),
        -32602,
        "checked where it lands"
    );

    let done = retry(&b, &state).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.result()["resultType"], "complete");
    let text = done.result()["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Grace"), "{text}");
    let again = retry(&b, &state).await;
    assert_eq!(
        again.error_code(),
        -32602,
        "the call was taken: no second answer"
    );

    // A call parked on a replica that is gone: a clear error, not a hang.
    let state = park(&a, 0).await;
    let mut replicas = c.replicas.into_iter();
    replicas.next().unwrap().shutdown().await;
    let lost = retry(&b, &state).await;
    assert_eq!(lost.error_code(), -32602);
    assert!(
        lost.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gone"),
        "{}",
        lost.body
    );
    for r in replicas {
        r.shutdown().await;
    }
}

#[tokio::test]
async fn without_the_store_an_mrtr_retry_on_another_replica_is_refused() {
    let c = cluster(2, &stdio_legacy(), None).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let state = park(&a, 0).await;
    assert_eq!(retry(&b, &state).await.error_code(), -32602);
    let done = retry(&a, &state).await;
    assert!(
        done.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Grace")
    );
    c.shutdown().await;
}

/// Alice creates a task through one replica and lists it through another (the upstream's own
/// list holds every caller's tasks); Bob never sees it. Without the store only the replica that
/// saw it created lists it.
async fn tasks_listed_across_replicas(redis: Option<&Redis>) -> (usize, usize, usize) {
    let mut spec = MockSpec::new(MockEra::Legacy);
    spec.listed_tasks = true;
    spec.tools
        .push(json!({"name": "mktask", "inputSchema": {"type": "object"}}));
    let (addr, _mock, _task) = mock_http::start(spec).await;
    let auth = format!(
        "auth:\n  api_keys:\n    - {{ name: alice, sha256: '{}' }}\n    - {{ name: bob, sha256: '{}' }}\n",
        support::sha256_hex("key-alice"),
        support::sha256_hex("key-bob"),
    );
    let c = cluster_with(2, &http(addr), redis, &auth).await;
    let alice: Vec<Client> = c
        .replicas
        .iter()
        .map(|r| Client::new(r).with_header("x-api-key", "key-alice"))
        .collect();
    let bob = Client::new(&c.replicas[1]).with_header("x-api-key", "key-bob");
    let sid = alice[0].initialize().await;
    let task = alice[0].make_task(&sid).await;
    let count = |reply: support::Reply| {
        let tasks = reply.result()["tasks"].as_array().unwrap().clone();
        assert!(
            tasks.iter().all(|t| t["taskId"] == task.as_str()),
            "{tasks:?}"
        );
        tasks.len()
    };
    let here = count(alice[0].legacy(&sid, "tasks/list", json!({})).await);
    // The owner record is written in the background: with the store, wait for it to land;
    // without it, give a wrong answer the same time to appear.
    let list_there = || async { count(alice[1].legacy(&sid, "tasks/list", json!({})).await) };
    if redis.is_some() {
        eventually(5, "the other replica lists the task", || async {
            list_there().await == 1
        })
        .await;
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let there = list_there().await;
    let bob_sid = bob.initialize().await;
    let for_bob = count(bob.legacy(&bob_sid, "tasks/list", json!({})).await);
    c.shutdown().await;
    (here, there, for_bob)
}

#[tokio::test]
async fn a_task_created_through_one_replica_is_listed_through_another_for_its_creator_only() {
    let redis = Redis::start();
    assert_eq!(tasks_listed_across_replicas(Some(&redis)).await, (1, 1, 0));
}

#[tokio::test]
async fn without_the_store_a_task_is_listed_only_through_the_replica_that_saw_it_created() {
    assert_eq!(tasks_listed_across_replicas(None).await, (1, 0, 0));
}

#[tokio::test]
async fn a_resumed_stream_ends_when_the_replica_sending_it_is_gone() {
    let redis = Redis::start();
    let (c, _mock) = ticking_cluster(&redis).await;
    let mut replicas = c.replicas.into_iter();
    let (a, b) = (replicas.next().unwrap(), replicas.next().unwrap());
    let sid = Client::new(&a).initialize().await;
    // One event at once, then a minute of silence.
    let call = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {
        "name": "ticking", "arguments": {"ticks": 3, "first_ms": 10, "every_ms": 60000},
        "_meta": {"progressToken": "t"}}});
    let mut stream = Client::new(&a)
        .open_stream(&call, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(stream.next().await.unwrap()["params"]["progress"], 1);
    let event_id = stream.last_event_id.clone().unwrap();
    drop(stream);
    a.shutdown().await; // the replica sending the stream is gone

    let mut resumed = Client::new(&b).resume_stream(&sid, &event_id).await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(15), resumed.next())
        .await
        .expect("the resumed stream ends soon after its sender is found gone, not at idle timeout");
    assert!(end.is_none(), "nothing more was sent: {end:?}");
    b.shutdown().await;
}

#[tokio::test]
async fn a_resource_update_reaches_the_sessions_stream_on_another_replica() {
    let redis = Redis::start();
    let c = cluster(2, &stdio_legacy(), Some(&redis)).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let sid = a.initialize().await;
    let listed = a.legacy(&sid, "resources/list", json!({})).await;
    let uri = listed.result()["resources"][0]["uri"].clone();
    // The stream is on B; the subscription (and so the upstream's updates) on A.
    let mut events = b.open_get_stream(&sid).await;
    assert_eq!(
        a.legacy(&sid, "resources/subscribe", json!({"uri": uri}))
            .await
            .result(),
        &json!({})
    );
    let touch = || async {
        a.legacy(
            &sid,
            "tools/call",
            json!({"name": "touch", "arguments": {}}),
        )
        .await
        .result()
        .clone()
    };
    touch().await;
    let updated = next_within(&mut events, 2)
        .await
        .expect("the update reaches B's stream");
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], uri);

    // Unsubscribed through B: A hears it and stops forwarding.
    b.legacy(&sid, "resources/unsubscribe", json!({"uri": uri}))
        .await
        .result();
    // (Published, so it may take a moment: a touch until one is not forwarded.)
    let mut quiet = false;
    for _ in 0..5 {
        touch().await;
        if next_within(&mut events, 1).await.is_none() {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "updates stop after the unsubscribe");
    drop(events);
    c.shutdown().await;
}

/// The next message on `events` within `secs`, if any.
async fn next_within(events: &mut support::Stream, secs: u64) -> Option<serde_json::Value> {
    tokio::time::timeout(std::time::Duration::from_secs(secs), events.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_delete_while_redis_is_down_reaches_every_replica_once_it_is_back() {
    let mut redis = Redis::start();
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(2, &http(addr), Some(&redis)).await;
    let (a, b) = (Client::new(&c.replicas[0]), Client::new(&c.replicas[1]));
    let sid = a.initialize().await;
    let earlier = a.initialize().await;
    let end = |sid: String| {
        let a = &a;
        async move {
            a.raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
                .await
                .status
        }
    };
    assert_eq!(end(earlier.clone()).await, 200);
    eventually(5, "B hears of the first DELETE", || async {
        status(&b, &earlier).await == 404
    })
    .await;

    redis.stop();
    assert_eq!(end(sid.clone()).await, 200, "ended here at once");
    assert_eq!(status(&a, &sid).await, 404);
    assert_eq!(status(&b, &sid).await, 200, "B cannot know yet");

    redis.restart(); // empty: nothing was persisted
    eventually(
        15,
        "B refuses the session ended during the outage",
        || async { status(&b, &sid).await == 404 },
    )
    .await;
    // The store was refilled: a replica started now knows both.
    let late = gateway(&c.yaml).await;
    let late_client = Client::new(&late);
    for ended in [&sid, &earlier] {
        eventually(5, "a later replica refuses both ended sessions", || async {
            status(&late_client, ended).await == 404
        })
        .await;
    }
    late.shutdown().await;
    c.shutdown().await;
}

/// The `Mcp-Session-Id` of each `tools/call` the mock received, in order.
fn upstream_sessions_of_calls(mock: &mock_http::Mock) -> Vec<String> {
    mock.requests_for("tools/call")
        .iter()
        .map(|(headers, _)| headers["mcp-session-id"].to_str().unwrap().to_string())
        .collect()
}

/// Calls `echo` through each client in turn, in session `sid`; every call succeeds.
async fn echo_through(clients: &[Client], sid: &str) {
    for client in clients {
        let reply = client
            .legacy(sid, "tools/call", json!({"name": "echo", "arguments": {}}))
            .await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.get("result").is_some(), "{:?}", reply.body);
    }
}

#[tokio::test]
async fn a_client_session_talks_to_a_legacy_upstream_in_one_session_through_every_replica() {
    let redis = Redis::start();
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(3, &http(addr), Some(&redis)).await;
    let clients: Vec<Client> = c.replicas.iter().map(Client::new).collect();
    let sid = clients[0].initialize().await;
    echo_through(&clients, &sid).await;
    let used = upstream_sessions_of_calls(&mock);
    assert_eq!(used.len(), 3);
    assert!(used.iter().all(|s| *s == used[0]), "{used:?}");
    // Another client session gets a session of its own.
    let other = clients[1].initialize().await;
    echo_through(&clients[1..2], &other).await;
    assert_ne!(upstream_sessions_of_calls(&mock)[3], used[0]);
    // The upstream forgets it (a restart): the replica that sees the 404 opens a new one, and
    // the others adopt that one instead of the dead one.
    mock.expire_sessions();
    let before = mock
        .seen
        .initializes
        .load(std::sync::atomic::Ordering::SeqCst);
    echo_through(&clients, &sid).await;
    // (The mock records the refused calls too: each replica tries the old session once.)
    let after = upstream_sessions_of_calls(&mock)[4..].to_vec();
    let fresh: std::collections::HashSet<&String> =
        after.iter().filter(|s| **s != used[0]).collect();
    assert_eq!(fresh.len(), 1, "{after:?}");
    let fresh = fresh.into_iter().next().unwrap().clone();
    assert_eq!(
        mock.seen
            .initializes
            .load(std::sync::atomic::Ordering::SeqCst)
            - before,
        1,
        "one new session for the client session on all replicas"
    );
    // The client's DELETE, on any replica, ends the upstream session.
    let end = clients[2]
        .raw(reqwest::Method::DELETE, None, &[("mcp-session-id", &sid)])
        .await;
    assert_eq!(end.status, 200);
    eventually(5, "the upstream session is deleted", || async {
        mock.seen.deleted.lock().unwrap().contains(&fresh)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test]
async fn without_the_store_each_replica_opens_its_own_upstream_session() {
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster(2, &http(addr), None).await;
    let clients: Vec<Client> = c.replicas.iter().map(Client::new).collect();
    let sid = clients[0].initialize().await;
    echo_through(&clients, &sid).await;
    let used = upstream_sessions_of_calls(&mock);
    assert_ne!(used[0], used[1]);
    c.shutdown().await;
}

#[tokio::test]
async fn an_upstream_session_idle_on_one_replica_stays_open_while_another_uses_it() {
    let redis = Redis::start();
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Legacy)).await;
    let c = cluster_with_session(2, &http(addr), Some(&redis), ", idle_timeout: 2s", "").await;
    let clients: Vec<Client> = c.replicas.iter().map(Client::new).collect();
    let sid = clients[0].initialize().await;
    echo_through(&clients[..1], &sid).await;
    let opened = upstream_sessions_of_calls(&mock)[0].clone();
    // Only the second replica is used for twice the idle timeout: the first one's copy idles
    // out meanwhile, and must leave the session open.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        echo_through(&clients[1..], &sid).await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let used = upstream_sessions_of_calls(&mock);
    assert!(used.iter().all(|s| *s == opened), "{used:?}");
    // (The replicas' own sessions, used for listing, idle out and are closed meanwhile.)
    let deleted = mock.seen.deleted.lock().unwrap().clone();
    assert!(!deleted.contains(&opened), "{deleted:?}");
    // Idle everywhere: the last replica to hold it closes it.
    eventually(10, "the idle upstream session is closed", || async {
        mock.seen.deleted.lock().unwrap().contains(&opened)
    })
    .await;
    c.shutdown().await;
}
