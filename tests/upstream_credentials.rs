//! Upstream credentials: the gateway's own OAuth token (client credentials) and RFC 8693 token
//! exchange, checked at a mock upstream and a local token endpoint; the client's token never
//! reaches an upstream, and an upstream's 401 never reaches the client.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::idp::{ISSUER, Jwks, RESOURCE, TestKey, claims};
use support::mock_http::{self, MockEra, MockSpec};
use support::token_endpoint::{CLIENT_ID, CLIENT_SECRET, TokenEndpoint};
use support::{Client, gateway};

struct Setup {
    gw: mcpgate::app::Running,
    client: Client,
    mock: std::sync::Arc<mock_http::Mock>,
    tokens: TokenEndpoint,
    key: TestKey,
    _jwks: Jwks,
    _upstream: tokio::task::JoinHandle<()>,
}

async fn setup(spec: MockSpec, oauth_extra: &str) -> Setup {
    setup_with(spec, oauth_extra, "").await
}

/// As [`setup`], with `extra` YAML at the top level of the configuration.
async fn setup_with(spec: MockSpec, oauth_extra: &str, extra: &str) -> Setup {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let tokens = TokenEndpoint::start().await;
    let (addr, mock, task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - id: m
    http:
      url: 'http://{addr}/mcp'
      headers: {{ X-Static: from-config }}
      oauth: {{ token_url: '{token_url}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [mcp.read]{oauth_extra} }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{jwks_url}', algorithms: [RS256] }}
  api_keys: [{{ name: ci, sha256: '{hash}' }}]
{extra}
",
        token_url = tokens.url(),
        jwks_url = jwks.url(),
        hash = support::sha256_hex("mcpk_machine"),
    ))
    .await;
    let client = Client::new(&gw);
    Setup {
        gw,
        client,
        mock,
        tokens,
        key,
        _jwks: jwks,
        _upstream: task,
    }
}

fn authorizations(mock: &mock_http::Mock) -> Vec<String> {
    mock.seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| {
            h.get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

async fn call(client: &Client) -> support::Reply {
    client
        .modern(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await
}

#[tokio::test]
async fn the_gateway_calls_with_its_own_cached_token() {
    let s = setup(MockSpec::new(MockEra::Modern), "").await;
    let jwt = s.key.sign(&claims("alice"));
    let alice = s.client.bearer(&jwt);
    for _ in 0..3 {
        assert_eq!(call(&alice).await.result()["content"][0]["text"], "hi");
    }
    let seen = authorizations(&s.mock);
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|a| a == "Bearer cc-1"), "{seen:?}");
    assert!(
        seen.iter().all(|a| !a.contains(&jwt)),
        "the client's token never reaches the upstream"
    );
    let (headers, _) = s.mock.requests_for("tools/call").pop().unwrap();
    assert_eq!(headers["x-static"], "from-config");
    let grants = s.tokens.grants();
    assert_eq!(grants.len(), 1, "the token is cached: {grants:?}");
    assert_eq!(grants[0]["grant_type"], "client_credentials");
    assert_eq!(grants[0]["scope"], "mcp.read");
    assert!(
        grants[0]["resource"].ends_with("/mcp"),
        "RFC 8707 resource defaults to the upstream URL"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.reject_authorization = vec!["Bearer cc-1".into()];
    let s = setup(spec, "").await;
    let alice = s.client.bearer(&s.key.sign(&claims("alice")));
    assert_eq!(call(&alice).await.result()["content"][0]["text"], "hi");
    assert!(authorizations(&s.mock).contains(&"Bearer cc-2".to_string()));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn an_upstream_401_is_a_gateway_error_without_its_challenge() {
    let s = setup(MockSpec::new(MockEra::Modern), "").await;
    // The catalogue is listed; then the upstream starts refusing every token.
    s.mock.spec.lock().unwrap().reject_authorization = vec!["*".into()];
    let alice = s.client.bearer(&s.key.sign(&claims("alice")));
    let reply = call(&alice).await;
    assert!(
        reply.headers.get("www-authenticate").is_none(),
        "the upstream's challenge is not relayed"
    );
    let error = &reply.body["error"];
    assert_eq!(error["code"], -32603, "{}", reply.body);
    assert_eq!(error["data"]["upstream"], "m");
    assert!(!reply.body.to_string().contains("upstream.test"));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn token_exchange_carries_each_callers_identity() {
    let s = setup(
        MockSpec::new(MockEra::Modern),
        ", token_exchange: true, audience: upstream-m",
    )
    .await;
    let jwt = s.key.sign(&claims("alice"));
    let alice = s.client.bearer(&jwt);
    assert_eq!(call(&alice).await.result()["content"][0]["text"], "hi");
    assert_eq!(call(&alice).await.status, 200);
    let (headers, _) = s.mock.requests_for("tools/call").pop().unwrap();
    let sent = headers["authorization"].to_str().unwrap().to_string();
    assert!(sent.starts_with("Bearer xchg-"), "{sent}");
    assert!(!sent.contains(&jwt));
    let exchanges: Vec<_> = s
        .tokens
        .grants()
        .into_iter()
        .filter(|g| g["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange")
        .collect();
    assert_eq!(exchanges.len(), 1, "one exchange per caller token, cached");
    assert_eq!(exchanges[0]["subject_token"], jwt);
    assert_eq!(
        exchanges[0]["subject_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanges[0]["audience"], "upstream-m");
    // The catalogue plane (the gateway's own listing) used client credentials.
    let (list_headers, _) = s.mock.requests_for("tools/list").pop().unwrap();
    assert!(
        list_headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer cc-")
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn token_exchange_never_substitutes_the_gateway_for_a_caller_without_a_token() {
    let s = setup(MockSpec::new(MockEra::Modern), ", token_exchange: true").await;
    let machine = s.client.with_header("x-api-key", "mcpk_machine");
    let reply = call(&machine).await;
    let error: &Value = &reply.body["error"];
    assert_eq!(error["code"], -32603, "{}", reply.body);
    assert_eq!(error["data"]["reason"], "upstream_credentials");
    assert!(s.mock.requests_for("tools/call").is_empty());
    s.gw.shutdown().await;
}

/// A legacy mock serving standalone (GET) streams.
fn streaming_legacy() -> MockSpec {
    let mut spec = MockSpec::new(MockEra::Legacy);
    spec.get_stream = true;
    spec
}

/// Waits (at most 10 s) until the mock has `n` standalone streams open.
async fn open_gets(mock: &mock_http::Mock, n: usize, what: &str) {
    support::eventually(10, what, || async {
        mock.seen
            .open_gets
            .load(std::sync::atomic::Ordering::SeqCst)
            == n
    })
    .await;
}

fn get_authorizations(mock: &mock_http::Mock) -> Vec<String> {
    mock.seen
        .gets
        .lock()
        .unwrap()
        .iter()
        .map(|h| {
            h.get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn the_standalone_stream_carries_the_sessions_credentials() {
    let s = setup(streaming_legacy(), ", token_exchange: true").await;
    // The gateway's own session (catalogue plane) listens with the gateway's token.
    open_gets(&s.mock, 1, "the shared session's stream is open").await;
    assert_eq!(get_authorizations(&s.mock), ["Bearer cc-1"]);
    // A client's session listens with the client's exchanged token once it subscribes.
    let jwt = s.key.sign(&claims("alice"));
    let alice = s.client.bearer(&jwt);
    let sid = alice.initialize().await;
    let subscribed = alice
        .legacy(&sid, "resources/subscribe", json!({"uri": "mock://doc/1"}))
        .await;
    assert_eq!(subscribed.status, 200, "{}", subscribed.body);
    open_gets(&s.mock, 2, "alice's session stream is open").await;
    let seen = get_authorizations(&s.mock);
    assert!(seen[1].starts_with("Bearer xchg-"), "{seen:?}");
    assert!(!seen.iter().any(|a| a.contains(&jwt)), "{seen:?}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_standalone_stream_is_not_retried() {
    let mut spec = streaming_legacy();
    spec.reject_get = true;
    let s = setup(spec, "").await;
    support::eventually(5, "the stream was tried", || async {
        !s.mock.seen.gets.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let seen = get_authorizations(&s.mock);
    // Once with the cached token, once with a renewed one; then never again.
    assert_eq!(seen, ["Bearer cc-1", "Bearer cc-2"]);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn standalone_streams_end_with_their_idle_sessions() {
    let s = setup_with(streaming_legacy(), "", "session: { idle_timeout: 1s }").await;
    let alice = s.client.bearer(&s.key.sign(&claims("alice")));
    let sid = alice.initialize().await;
    let subscribed = alice
        .legacy(&sid, "resources/subscribe", json!({"uri": "mock://doc/1"}))
        .await;
    assert_eq!(subscribed.status, 200);
    open_gets(&s.mock, 2, "the session streams are open").await;
    // Nobody uses either upstream session any more: both idle out, are deleted upstream, and
    // their streams are closed.
    open_gets(&s.mock, 0, "the idle sessions' streams are closed").await;
    // Every upstream session is deleted (the gateway's own, which a health check may have
    // opened again meanwhile, idles out too).
    support::eventually(5, "every upstream session is deleted", || async {
        s.mock.session_count() == 0
    })
    .await;
    assert!(s.mock.seen.deleted.lock().unwrap().len() >= 2);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn upstream_urls_in_errors_keep_no_secrets() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: m, http: {{ url: 'http://agent:pa55word@127.0.0.1:{port}/mcp?api_key=k3y' }}, timeout: 2s }}
"
    ))
    .await;
    let snapshot = gw.catalogue.snapshot();
    let error = snapshot.upstreams[0].1.last_error.clone().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}/mcp")), "{error}");
    assert!(
        !error.contains("pa55word") && !error.contains("k3y") && !error.contains("agent"),
        "{error}"
    );
    gw.shutdown().await;
}
