//! Floods: no client, authenticated or not, may exhaust the gateway. Each test runs the
//! `mcpgate` binary as its own process, floods it for a bounded time, and asserts that its
//! resident memory stays under a stated bound and that a well-behaved client is served all
//! along.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::process::Spawned;
use support::{Client, stdio_mock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Resident memory the gateway may reach during a flood, KiB. An unflooded debug build sits
/// well under half of it; holding what the floods below send would take many times more.
const RSS_BOUND_KIB: u64 = 160 * 1024;

/// Samples the gateway's RSS until dropped; the peak, KiB.
struct RssWatch {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    fn start(gw: &Arc<Spawned>) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (gw, peak) = (Arc::clone(gw), Arc::clone(&peak));
            async move {
                loop {
                    peak.fetch_max(gw.rss_kib(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { peak, task }
    }

    fn peak(&self) -> u64 {
        let peak = self.peak.load(Ordering::Relaxed);
        eprintln!("peak RSS of the gateway: {} MiB", peak / 1024);
        peak
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A well-behaved client: a modern `tools/call` of `echo` every 200 ms until `until`, each on a
/// new connection; every one must succeed within 5 s. Returns how many were made.
fn well_behaved(url: String, until: Instant) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut served = 0;
        let mut slowest = Duration::ZERO;
        while Instant::now() < until {
            let started = Instant::now();
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let client = Client::over(url.clone(), http);
            let reply = client
                .modern(
                    "tools/call",
                    json!({"name": "echo", "arguments": {"message": "still here"}}),
                )
                .await;
            assert_eq!(
                reply.result()["content"][0]["text"],
                "still here",
                "served during the flood"
            );
            served += 1;
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("well-behaved client: {served} calls, the slowest took {slowest:?}");
        served
    })
}

fn config(listen_extra: &str, session_extra: &str, era: &str) -> String {
    format!(
        "listen: {{ addr: 127.0.0.1:0{listen_extra} }}\nadmin: {{ addr: 127.0.0.1:0 }}\nsession: {{ idle_timeout: 30m{session_extra} }}\nupstreams:\n  - {{ id: pipe, stdio: {} }}\n",
        stdio_mock(era)
    )
}

/// Slowloris: hundreds of connections that trickle a request head and never finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_cannot_hold_the_listener() {
    let gw = Arc::new(Spawned::start(&config(
        ", header_read_timeout: 1s, idle_timeout: 3s, max_connections: 64",
        "",
        "modern",
    )));
    let rss = RssWatch::start(&gw);
    let until = Instant::now() + Duration::from_secs(6);
    let cut_off = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    // Twice as many slow clients as connections allowed, each reconnecting as soon as it is
    // cut off.
    for _ in 0..128 {
        let (authority, cut_off) = (gw.authority(), Arc::clone(&cut_off));
        slow.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(&authority).await else {
                    continue;
                };
                let _ = tcp
                    .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .await;
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        read = tcp.read(&mut buf) => {
                            if matches!(read, Ok(0) | Err(_)) {
                                cut_off.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(300)) => {
                            if tcp.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                cut_off.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    if Instant::now() >= until {
                        return;
                    }
                }
            }
        }));
    }
    let good = well_behaved(gw.url.clone(), until);
    let mut most_open = 0.0f64;
    while Instant::now() < until {
        most_open = most_open.max(
            gw.metric("mcpgate_open_connections{listener=\"mcp\"}")
                .await,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let served = good.await.unwrap();
    for s in slow {
        s.await.unwrap();
    }
    assert!(
        served >= 5,
        "the well-behaved client was served {served} times"
    );
    assert!(
        cut_off.load(Ordering::Relaxed) >= 64,
        "slow request heads are cut off after header_read_timeout ({} were)",
        cut_off.load(Ordering::Relaxed)
    );
    assert!(most_open <= 64.0, "{most_open} connections open at once");
    assert!(rss.peak() < RSS_BOUND_KIB, "peak RSS {} KiB", rss.peak());
}

/// Idle keep-alive connections are closed after `idle_timeout`.
#[tokio::test]
async fn idle_connections_are_closed() {
    let gw = Spawned::start(&config(
        ", header_read_timeout: 10s, idle_timeout: 1s",
        "",
        "modern",
    ));
    let mut tcp = tokio::net::TcpStream::connect(gw.authority())
        .await
        .unwrap();
    tcp.write_all(b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(n > 0, "a response");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A connection that sends nothing at all is closed after the header read timeout too.
    let silent = Spawned::start(&config(", header_read_timeout: 1s", "", "modern"));
    let mut tcp = tokio::net::TcpStream::connect(silent.authority())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
}

/// Opens an HTTP+SSE (2024-11-05) connection and reads only up to its `endpoint` event: the
/// stream is then never read again. Returns the socket (kept open) and the endpoint path.
async fn unread_sse(authority: &str) -> (tokio::net::TcpStream, String) {
    let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    tcp.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("/messages?sessionId=") {
            let end = text[at..].find(['\r', '\n']).unwrap_or(text.len() - at);
            if at + end < text.len() {
                return (tcp, text[at..at + end].to_string());
            }
        }
    }
}

/// A client that posts to `/messages` and never reads its event stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_posts_without_reading_is_held_back() {
    let gw = Arc::new(Spawned::start(&config("", "", "modern")));
    let (_socket, endpoint) = unread_sse(&gw.authority()).await;
    let messages = format!("http://{}{endpoint}", gw.authority());
    let http = reqwest::Client::new();
    let post = move |body: Value| {
        let (http, messages) = (http.clone(), messages.clone());
        async move {
            http.post(messages)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let init = post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}}}))
    .await;
    assert_eq!(init.status(), 202);
    // Each answer is 1 MiB; 600 of them is far more than the gateway may hold for one client.
    let rss = RssWatch::start(&gw);
    let until = Instant::now() + Duration::from_secs(8);
    let good = well_behaved(gw.url.clone(), until);
    let statuses: Arc<std::sync::Mutex<Vec<u16>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..16 {
        let (post, statuses, sent) = (post.clone(), Arc::clone(&statuses), Arc::clone(&sent));
        flooders.push(tokio::spawn(async move {
            while Instant::now() < until && sent.fetch_add(1, Ordering::Relaxed) < 600 {
                let reply = post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "big", "arguments": {"size": 1_048_576}}}))
                .await;
                statuses.lock().unwrap().push(reply.status().as_u16());
            }
        }));
    }
    for f in flooders {
        f.await.unwrap();
    }
    let served = good.await.unwrap();
    let statuses = statuses.lock().unwrap().clone();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| matches!(**s, 429 | 503)).count();
    assert_eq!(accepted + refused, statuses.len(), "{statuses:?}");
    assert!(
        refused > 0,
        "a client that does not read is refused more messages"
    );
    assert!(
        served >= 10,
        "the well-behaved client was served {served} times"
    );
    assert!(rss.peak() < RSS_BOUND_KIB, "peak RSS {} KiB", rss.peak());
}

/// Many legacy sessions whose response streams carry large events, kept for replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_logs_stay_within_their_budget() {
    let gw = Arc::new(Spawned::start(&config(
        "",
        ", replay_buffer_bytes: 16MiB",
        "legacy",
    )));
    let rss = RssWatch::start(&gw);
    let until = Instant::now() + Duration::from_secs(30);
    let good = well_behaved(gw.url.clone(), Instant::now() + Duration::from_secs(3));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, next) = (gw.url.clone(), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let client = Client::over(url, reqwest::Client::new());
            while next.fetch_add(1, Ordering::Relaxed) < 300 && Instant::now() < until {
                let sid = client.initialize().await;
                let reply = client
                    .legacy(
                        &sid,
                        "tools/call",
                        json!({"name": "bigstream", "arguments": {"size": 1_048_576},
                            "_meta": {"progressToken": "p"}}),
                    )
                    .await;
                assert_eq!(reply.stream.len(), 2, "a progress event, then the answer");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(good.await.unwrap() >= 5);
    // 300 sessions each logged 1 MiB for replay: without a budget that is held for their idle
    // timeout (30 minutes here).
    assert!(rss.peak() < RSS_BOUND_KIB, "peak RSS {} KiB", rss.peak());
}

/// 200 concurrent clients: 150 of one principal far over its limit, 50 of another within it.
/// The first gets 429s with `Retry-After` at once; every call of the second succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_principal_over_its_limit_never_holds_back_another() {
    let gw = Arc::new(Spawned::start(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: 'https://mcp.test/mcp' }}
admin: {{ addr: 127.0.0.1:0 }}
limits: {{ per_principal: {{ rate: 6000/m, burst: 100 }} }}
upstreams:
  - {{ id: pipe, stdio: {} }}
auth:
  api_keys:
    - {{ name: hog, sha256: '{}' }}
    - {{ name: polite, sha256: '{}' }}
",
        stdio_mock("modern"),
        support::sha256_hex("hog-key"),
        support::sha256_hex("polite-key"),
    )));
    let rss = RssWatch::start(&gw);
    let until = Instant::now() + Duration::from_secs(4);
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..200 {
        let (url, refused) = (gw.url.clone(), Arc::clone(&refused));
        // A client per connection, as 200 agents would be.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        clients.push(tokio::spawn(async move {
            let hog = i < 150;
            let key = if hog { "hog-key" } else { "polite-key" };
            let client = Client::over(url, http).bearer(key);
            let mut served = 0;
            while Instant::now() < until {
                let reply = client
                    .modern(
                        "tools/call",
                        json!({"name": "echo", "arguments": {"message": "m"}}),
                    )
                    .await;
                if reply.status == 429 {
                    assert!(hog, "the polite principal was refused: {}", reply.body);
                    assert_eq!(reply.body["error"]["data"]["limit"], "per_principal");
                    let after: u64 = reply.headers["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(after >= 1);
                    refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(reply.result()["content"][0]["text"], "m");
                    served += 1;
                }
                // The polite principal calls 50 times a second in all; the hog 3000.
                let pause = if hog { 50 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            (hog, served)
        }));
    }
    let (mut hog_served, mut polite_served) = (0, 0);
    for c in clients {
        match c.await.unwrap() {
            (true, n) => hog_served += n,
            (false, n) => polite_served += n,
        }
    }
    eprintln!(
        "hog: {hog_served} served, {} refused; polite: {polite_served} served",
        refused.load(Ordering::Relaxed)
    );
    assert!(
        polite_served >= 150,
        "each polite client was served every second"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 1000,
        "the hog was refused"
    );
    // 100 a second after a burst of 100, over 4 s (and a little scheduling slack).
    assert!(
        hog_served <= 100 + 4 * 100 + 50,
        "{hog_served} hog calls served"
    );
    assert!(
        gw.metric("mcpgate_rate_limited_total{limit=\"per_principal\"}")
            .await
            >= 1000.0
    );
    assert!(rss.peak() < RSS_BOUND_KIB, "peak RSS {} KiB", rss.peak());
}
