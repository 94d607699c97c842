//! The front door: bearer JWTs signed with real keys (RSA, EC P-256, Ed25519) against a real
//! JWKS endpoint with rotation, API keys, scopes, RFC 9728 metadata, and principal-bound
//! sessions. Every refused request is checked to get 401 (or 403) with the right
//! `WWW-Authenticate` and to reach no upstream.

#![allow(clippy::unwrap_used)]

mod support;

use mcpgate::app::Running;
use serde_json::{Value, json};
use support::idp::{ISSUER, Jwks, RESOURCE, TestKey, claims, now};
use support::mock_http::{self, Mock, MockEra, MockSpec};
use support::{Client, Reply, gateway};

const METADATA_URL: &str = "https://mcp.test/.well-known/oauth-protected-resource/mcp";

struct Setup {
    gw: Running,
    client: Client,
    mock: std::sync::Arc<Mock>,
    jwks: Jwks,
    rsa: TestKey,
    _upstream: tokio::task::JoinHandle<()>,
}

/// A gateway with JWT auth (JWKS at a local endpoint serving `rsa`, an EC and an Ed25519 key),
/// one API key, and `extra` YAML under `auth:`, in front of a modern HTTP mock.
async fn setup(extra: &str) -> (Setup, TestKey, TestKey) {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let ed = TestKey::ed25519("ed-1");
    let jwks = Jwks::start(&[&rsa, &ec, &ed]).await;
    let (addr, mock, task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let yaml = format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
auth:
  jwt:
    issuer: '{ISSUER}'
    jwks_url: '{jwks}'
    algorithms: [RS256, ES256, EdDSA]
    required_claims: [sub, tenant]
    jwks_min_refetch_interval: 1h
  authorization_servers: ['{ISSUER}']
  scopes_supported: [mcp, tools.call]
  api_keys:
    - {{ name: ci-bot, sha256: '{hash}', scopes: [mcp, tools.call] }}
{extra}",
        jwks = jwks.url(),
        hash = support::sha256_hex("mcpk_test_key"),
    );
    let gw = gateway(&yaml).await;
    let client = Client::new(&gw);
    (
        Setup {
            gw,
            client,
            mock,
            jwks,
            rsa,
            _upstream: task,
        },
        ec,
        ed,
    )
}

fn good(sub: &str) -> Value {
    let mut c = claims(sub);
    c["tenant"] = json!("acme");
    c
}

async fn call(client: &Client) -> Reply {
    client
        .modern(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await
}

fn challenge(reply: &Reply) -> String {
    reply
        .headers
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {} {}", reply.status, reply.body))
        .to_str()
        .unwrap()
        .to_string()
}

/// 401, a Bearer challenge naming the metadata, `invalid_token` when credentials were sent.
fn assert_refused(reply: &Reply, presented: bool, why: &str) {
    assert_eq!(reply.status, 401, "{why}: {}", reply.body);
    let c = challenge(reply);
    assert!(c.starts_with("Bearer "), "{why}: {c}");
    assert!(
        c.contains(&format!("resource_metadata=\"{METADATA_URL}\"")),
        "{why}: {c}"
    );
    assert_eq!(
        c.contains("error=\"invalid_token\""),
        presented,
        "{why}: {c}"
    );
}

#[tokio::test]
async fn tokens_signed_by_each_key_type_are_accepted() {
    let (s, ec, ed) = setup("").await;
    for key in [&s.rsa, &ec, &ed] {
        let reply = call(&s.client.bearer(&key.sign(&good("alice")))).await;
        assert_eq!(
            reply.result()["content"][0]["text"],
            "hi",
            "{:?} token",
            key.alg
        );
    }
    let calls = s.mock.requests_for("tools/call");
    assert_eq!(calls.len(), 3);
    assert!(
        calls.iter().all(|(h, _)| h.get("authorization").is_none()),
        "the client's token never reaches an upstream"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn every_bad_token_is_refused_and_reaches_nothing() {
    let (s, _, _) = setup("").await;
    let other = TestKey::other_rsa("rsa-1");
    let mut cases: Vec<(&str, Client, bool)> = vec![
        (
            "missing header",
            s.client.with_header("x-nothing", "1"),
            false,
        ),
        (
            "wrong scheme",
            s.client
                .with_header("authorization", "Basic YWxpY2U6c2VjcmV0"),
            false,
        ),
        ("garbage", s.client.bearer("not-a-token"), true),
        ("garbage JWT", s.client.bearer("abc.def.ghi"), true),
    ];
    let unsigned = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
            b64.encode(good("mallory").to_string())
        )
    };
    cases.push(("alg none", s.client.bearer(&unsigned), true));
    let confused = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let secret = jsonwebtoken::EncodingKey::from_secret(s.rsa.public_pem.as_bytes());
        jsonwebtoken::encode(&header, &good("mallory"), &secret).unwrap()
    };
    cases.push((
        "HS256 with the RSA public key",
        s.client.bearer(&confused),
        true,
    ));
    cases.push((
        "wrong signature",
        s.client.bearer(&other.sign(&good("mallory"))),
        true,
    ));
    let unknown = TestKey::other_rsa("rsa-unknown");
    cases.push((
        "unknown kid",
        s.client.bearer(&unknown.sign(&good("mallory"))),
        true,
    ));
    let mut expired = good("alice");
    expired["exp"] = json!(now() - 3600);
    cases.push(("expired", s.client.bearer(&s.rsa.sign(&expired)), true));
    let mut early = good("alice");
    early["nbf"] = json!(now() + 3600);
    cases.push(("not yet valid", s.client.bearer(&s.rsa.sign(&early)), true));
    let mut issuer = good("alice");
    issuer["iss"] = json!("https://evil.test/");
    cases.push(("wrong issuer", s.client.bearer(&s.rsa.sign(&issuer)), true));
    let mut audience = good("alice");
    audience["aud"] = json!("api://something-else");
    cases.push((
        "wrong audience",
        s.client.bearer(&s.rsa.sign(&audience)),
        true,
    ));
    let mut missing = good("alice");
    missing.as_object_mut().unwrap().remove("tenant");
    cases.push((
        "missing required claim",
        s.client.bearer(&s.rsa.sign(&missing)),
        true,
    ));
    let mut other_resource = good("alice");
    other_resource["aud"] = json!("https://other-mcp.test/mcp");
    cases.push((
        "token for another resource",
        s.client.bearer(&s.rsa.sign(&other_resource)),
        true,
    ));
    cases.push((
        "unknown API key",
        s.client.with_header("x-api-key", "mcpk_wrong"),
        true,
    ));
    let before = s.mock.requests_for("tools/call").len();
    let fetches = s.jwks.fetches();
    for (why, client, presented) in &cases {
        assert_refused(&call(client).await, *presented, why);
        let list = client.modern("tools/list", json!({})).await;
        assert_refused(&list, *presented, why);
    }
    assert_eq!(
        s.mock.requests_for("tools/call").len(),
        before,
        "no refused request reached the upstream"
    );
    assert_eq!(
        s.jwks.fetches(),
        fetches + 1,
        "one refetch for the unknown kid, then rate-limited"
    );
    let (_, early_client, _) = cases.iter().find(|c| c.0 == "not yet valid").unwrap();
    let body = call(early_client).await.body;
    assert_eq!(body["error"], "invalid_token");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not valid yet")
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let (s, _, _) = setup("").await;
    let next = TestKey::other_rsa("rsa-2");
    let token = next.sign(&good("alice"));
    s.jwks.publish(&[&s.rsa, &next]);
    let fetches = s.jwks.fetches();
    assert_eq!(
        call(&s.client.bearer(&token)).await.result()["content"][0]["text"],
        "hi"
    );
    assert_eq!(s.jwks.fetches(), fetches + 1);
    // Cached: the same token again needs neither a fetch nor (observably) anything else.
    assert_eq!(call(&s.client.bearer(&token)).await.status, 200);
    assert_eq!(s.jwks.fetches(), fetches + 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn scopes_are_required_per_request_and_per_method() {
    let (s, _, _) =
        setup("  required_scopes: [mcp]\n  method_scopes: { tools/call: [tools.call] }\n").await;
    let mut none = good("alice");
    none["scope"] = json!("openid");
    let reply = call(&s.client.bearer(&s.rsa.sign(&none))).await;
    assert_eq!(reply.status, 403);
    let c = challenge(&reply);
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"mcp\""), "{c}");

    let reader = s.client.bearer(&s.rsa.sign(&good("alice")));
    assert_eq!(reader.modern("tools/list", json!({})).await.status, 200);
    let reply = call(&reader).await;
    assert_eq!(reply.status, 403);
    assert!(challenge(&reply).contains("scope=\"tools.call\""));

    let mut caller = good("alice");
    caller["scope"] = json!("mcp tools.call");
    assert_eq!(
        call(&s.client.bearer(&s.rsa.sign(&caller))).await.status,
        200
    );

    let missing = s.client.modern("tools/list", json!({})).await;
    assert_eq!(missing.status, 401);
    assert!(
        challenge(&missing).contains("scope=\"mcp\""),
        "the challenge says what to ask for"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn api_keys_authenticate_machine_clients() {
    let (s, _, _) = setup("").await;
    for client in [
        s.client.with_header("x-api-key", "mcpk_test_key"),
        s.client.bearer("mcpk_test_key"),
    ] {
        assert_eq!(call(&client).await.result()["content"][0]["text"], "hi");
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn protected_resource_metadata_is_published() {
    let (s, _, _) = setup("").await;
    let base = format!("http://{}", s.gw.mcp_addr);
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let body = reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["resource"], RESOURCE, "{path}");
        assert_eq!(doc["authorization_servers"], json!([ISSUER]));
        assert_eq!(doc["scopes_supported"], json!(["mcp", "tools.call"]));
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_session_is_bound_to_its_principal() {
    let (s, _, _) = setup("").await;
    let alice = s.client.bearer(&s.rsa.sign(&good("alice")));
    let bob = s.client.bearer(&s.rsa.sign(&good("bob")));
    let sid = alice.initialize().await;
    assert_eq!(
        alice.legacy(&sid, "tools/list", json!({})).await.status,
        200
    );
    let stolen = bob.legacy(&sid, "tools/list", json!({})).await;
    assert_eq!(stolen.status, 404, "another principal's session is unknown");
    // A fresh token of the same principal keeps the session.
    let mut later = good("alice");
    later["exp"] = json!(now() + 1200);
    let renewed = s.client.bearer(&s.rsa.sign(&later));
    assert_eq!(
        renewed.legacy(&sid, "tools/list", json!({})).await.status,
        200
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn static_key_files_verify_tokens_without_a_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::rsa("any-kid");
    let pem = dir.path().join("issuer.pem");
    std::fs::write(&pem, &key.public_pem).unwrap();
    let ec = TestKey::ec("ec-file");
    let jwk = dir.path().join("issuer.jwk.json");
    std::fs::write(&jwk, ec.jwk.to_string()).unwrap();
    let (addr, mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
admin: {{ addr: 127.0.0.1:0 }}
auth:
  jwt: {{ issuer: '{ISSUER}', key_files: ['{}', '{}'], algorithms: [RS256, ES256] }}
",
        pem.display(),
        jwk.display()
    ))
    .await;
    let client = Client::new(&gw);
    for k in [&key, &ec] {
        let reply = call(&client.bearer(&k.sign(&claims("alice")))).await;
        assert_eq!(reply.status, 200, "{:?}: {}", k.alg, reply.body);
    }
    // The client's cookies are not forwarded either.
    let with_cookie = client
        .bearer(&key.sign(&claims("alice")))
        .with_header("cookie", "session=client-secret");
    assert_eq!(call(&with_cookie).await.status, 200);
    assert!(
        mock.requests_for("tools/call")
            .iter()
            .all(|(h, _)| h.get("cookie").is_none() && h.get("authorization").is_none())
    );
    let forged = TestKey::other_rsa("any-kid").sign(&claims("mallory"));
    assert_eq!(call(&client.bearer(&forged)).await.status, 401);
    let metrics = support::metrics(&gw).await;
    assert!(
        metrics.contains("mcpgate_auth_rejections_total{reason=\"invalid_token\"} 1"),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_task_belongs_to_the_principal_that_created_it() {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let mut spec = MockSpec::new(MockEra::Modern);
    spec.tasks = true;
    spec.tools
        .push(json!({"name": "job", "inputSchema": {"type": "object"}}));
    let (addr, mock, _task) = mock_http::start(spec).await;
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{}', algorithms: [RS256] }}
",
        jwks.url()
    ))
    .await;
    let client = Client::new(&gw);
    let (alice, bob) = (
        client.bearer(&key.sign(&claims("alice"))),
        client.bearer(&key.sign(&claims("bob"))),
    );
    let tasks = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let created = alice
        .modern_caps(
            "tools/call",
            json!({"name": "job", "arguments": {}}),
            tasks.clone(),
        )
        .await;
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    let params = json!({"taskId": id});
    let own = alice
        .modern_caps("tasks/get", params.clone(), tasks.clone())
        .await;
    assert_eq!(own.result()["status"], "completed");
    let stolen = bob.modern_caps("tasks/get", params, tasks.clone()).await;
    assert_eq!(
        stolen.error_code(),
        -32602,
        "another principal's task is unknown"
    );
    assert_eq!(
        mock.requests_for("tasks/get").len(),
        1,
        "bob's request never left"
    );
    // A forged tag does not help either.
    let forged = format!("m+{}.t1", "0".repeat(16));
    let reply = bob
        .modern_caps("tasks/cancel", json!({"taskId": forged}), tasks.clone())
        .await;
    assert_eq!(reply.error_code(), -32602);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_shared_upstream_never_gives_one_principals_task_traffic_to_another() {
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - {{ id: pipe, stdio: {} }}
auth:
  api_keys:
    - {{ name: alice, sha256: '{}' }}
    - {{ name: bob, sha256: '{}' }}
",
        support::stdio_mock_with("legacy", &["tasks"]),
        support::sha256_hex("key-alice"),
        support::sha256_hex("key-bob"),
    ))
    .await;
    let client = Client::new(&gw);
    let alice = client.with_header("x-api-key", "key-alice");
    let bob = client.with_header("x-api-key", "key-bob");
    let alice_sid = alice.initialize().await;
    let task = alice.make_task(&alice_sid).await;
    assert!(task.ends_with(".T1"), "{task}");
    // Bob's call is the only one in flight on the shared process when it sends a status
    // notification and a request about Alice's task: neither may reach Bob.
    let bob_sid = bob.initialize_with(json!({"elicitation": {}})).await;
    let leaked = bob
        .legacy(
            &bob_sid,
            "tools/call",
            json!({"name": "leak", "arguments": {"taskId": "T1"}}),
        )
        .await;
    assert!(
        leaked.stream.iter().all(|m| m.get("method").is_none()),
        "bob got nothing but his answer: {:?}",
        leaked.stream
    );
    let answer = leaked.result()["content"][0]["text"].as_str().unwrap();
    assert!(
        answer.contains("error"),
        "the request about alice's task was refused: {answer}"
    );
    // The task stays Alice's.
    let for_alice = alice.legacy(&alice_sid, "tasks/list", json!({})).await;
    assert_eq!(for_alice.result()["tasks"][0]["taskId"], task.as_str());
    let for_bob = bob.legacy(&bob_sid, "tasks/list", json!({})).await;
    assert_eq!(for_bob.result()["tasks"], json!([]));
    gw.shutdown().await;
}

#[tokio::test]
async fn origin_is_checked_before_credentials_on_every_route() {
    let (s, _, _) = setup("").await;
    let evil = s.client.with_header("origin", "https://evil.example");
    assert_eq!(evil.modern("tools/list", json!({})).await.status, 403);
    let token = s.rsa.sign(&good("alice"));
    let evil_with_token = evil.bearer(&token);
    assert_eq!(
        evil_with_token.modern("tools/list", json!({})).await.status,
        403
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let reply = evil_with_token
            .raw(method.clone(), None, &[("mcp-session-id", "x")])
            .await;
        assert_eq!(reply.status, 403, "{method}");
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn every_token_names_its_caller() {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let yaml = |required: &str| {
        format!(
            "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{}', algorithms: [RS256]{required} }}
",
            jwks.url()
        )
    };
    let without_sub = |extra: Value| {
        let mut c = claims("ignored");
        for k in ["sub", "client_id"] {
            c.as_object_mut().unwrap().remove(k);
        }
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        key.sign(&c)
    };
    // By default `sub` is required: tokens without it would all be one caller.
    let gw = gateway(&yaml("")).await;
    let client = Client::new(&gw);
    let refused = call(&client.bearer(&without_sub(json!({"client_id": "svc"})))).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("sub"),
        "{:?}",
        refused.headers
    );
    assert_eq!(
        call(&client.bearer(&key.sign(&claims("alice"))))
            .await
            .status,
        200
    );
    gw.shutdown().await;
    // Left out of `required_claims`, a token without `sub` is its client; naming neither, it
    // is refused.
    let gw = gateway(&yaml(", required_claims: []")).await;
    let client = Client::new(&gw);
    let svc = client.bearer(&without_sub(json!({"client_id": "svc"})));
    assert_eq!(call(&svc).await.status, 200);
    let nobody = call(&client.bearer(&without_sub(json!({})))).await;
    assert_eq!(nobody.status, 401);
    // Two clients without `sub` are two principals: one's session is unknown to the other.
    let sid = svc.initialize().await;
    let other = client.bearer(&without_sub(json!({"azp": "other"})));
    assert_eq!(
        other.legacy(&sid, "tools/list", json!({})).await.status,
        404
    );
    assert_eq!(svc.legacy(&sid, "tools/list", json!({})).await.status, 200);
    gw.shutdown().await;
}
