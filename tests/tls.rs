//! TLS termination with real certificates (rcgen): HTTPS with ALPN h2 and http/1.1, mTLS
//! required and optional, and certificate hot reload that keeps open connections.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpgate::app::Running;
use serde_json::json;
use support::mock_http::{self, MockEra, MockSpec};
use support::pki::{Leaf, TestCa};
use support::{Client, gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_gateway(
    dir: &Path,
    ca: &TestCa,
    mtls: Option<&str>,
) -> (Running, tokio::task::JoinHandle<()>) {
    let (addr, _mock, task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let (cert, key) = ca.server("gateway-1").write(dir, "server");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let client_auth = match mtls {
        Some(mode) => format!(
            ", client_ca_file: '{}', client_auth: {mode}",
            ca_file.display()
        ),
        None => String::new(),
    };
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, tls: {{ cert_file: '{}', key_file: '{}', reload_interval: 50ms{client_auth} }} }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
",
        cert.display(),
        key.display()
    ))
    .await;
    (gw, task)
}

fn https(ca: &TestCa, identity: Option<&Leaf>, http1: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn url(gw: &Running) -> String {
    format!("https://localhost:{}/mcp", gw.mcp_addr.port())
}

#[tokio::test]
async fn serves_https_over_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (gw, _up) = tls_gateway(dir.path(), &ca, None).await;
    for http1 in [false, true] {
        let client = Client::over(url(&gw), https(&ca, None, http1));
        let reply = client.modern("tools/list", json!({})).await;
        assert_eq!(reply.status, 200, "http1 only: {http1}");
        assert!(!reply.result()["tools"].as_array().unwrap().is_empty());
    }
    // ALPN: a client offering h2 gets it.
    let response = https(&ca, None, false)
        .get(format!(
            "https://localhost:{}/.well-known/none",
            gw.mcp_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/mcp", gw.mcp_addr.port()))
        .body("{}")
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_required_rejects_clients_without_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (gw, _up) = tls_gateway(dir.path(), &ca, Some("required")).await;
    let agent = ca.client("agent-7", Some("spiffe://example.test/agent/7"));
    let ok = Client::over(url(&gw), https(&ca, Some(&agent), false));
    assert_eq!(ok.modern("tools/list", json!({})).await.status, 200);

    let anonymous = https(&ca, None, false);
    let refused = anonymous.post(url(&gw)).body("{}").send().await;
    assert!(refused.is_err(), "no certificate: the handshake fails");

    let stranger_ca = TestCa::new("someone else's CA");
    let stranger = stranger_ca.client("mallory", None);
    let refused = https(&ca, Some(&stranger), false)
        .post(url(&gw))
        .body("{}")
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: the handshake fails"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_optional_accepts_clients_with_and_without_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (gw, _up) = tls_gateway(dir.path(), &ca, Some("optional")).await;
    let agent = ca.client("agent-7", None);
    for identity in [None, Some(&agent)] {
        let client = Client::over(url(&gw), https(&ca, identity, false));
        assert_eq!(client.modern("tools/list", json!({})).await.status, 200);
    }
    gw.shutdown().await;
}

/// Opens a TLS connection (HTTP/1.1) and returns it with the certificate the server presented.
async fn connect(
    ca: &TestCa,
    port: u16,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, presented)
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (gw, _up) = tls_gateway(dir.path(), &ca, None).await;
    let port = gw.mcp_addr.port();
    let (mut open, before) = connect(&ca, port).await;

    let renewed = ca.server("gateway-2");
    renewed.write(dir.path(), "server");
    let expected = rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    assert_ne!(before, expected);
    support::eventually(5, "the renewed certificate is served", || async {
        connect(&ca, port).await.1 == expected
    })
    .await;

    // The connection opened before the renewal still works.
    let body = Client::modern_body("tools/list", json!({}), json!({}), None).to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/list\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    open.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), open.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    gw.shutdown().await;
}

#[tokio::test]
async fn without_auth_a_session_belongs_to_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (gw, _up) = tls_gateway(dir.path(), &ca, Some("required")).await;
    let alice = Client::over(url(&gw), https(&ca, Some(&ca.client("alice", None)), false));
    let bob = Client::over(url(&gw), https(&ca, Some(&ca.client("bob", None)), false));
    let sid = alice.initialize().await;
    assert_eq!(
        alice.legacy(&sid, "tools/list", json!({})).await.status,
        200
    );
    let stolen = bob.legacy(&sid, "tools/list", json!({})).await;
    assert_eq!(
        stolen.status, 404,
        "another certificate is another principal, even with no token"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_that_never_finishes_its_handshake_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (addr, _mock, _up) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let (cert, key) = ca.server("gateway-1").write(dir.path(), "server");
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, header_read_timeout: 1s, max_connections: 4, tls: {{ cert_file: '{}', key_file: '{}' }} }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{addr}/mcp' }} }}
",
        cert.display(),
        key.display()
    ))
    .await;
    // Four connections that send a few bytes of a ClientHello and stall: the listener is full.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut tcp = tokio::net::TcpStream::connect(gw.mcp_addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(tcp);
    }
    let started = tokio::time::Instant::now();
    for tcp in &mut stalled {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "the stalled handshake is closed: {read:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    // A client that completes its handshake is served meanwhile and after.
    let client = Client::over(url(&gw), https(&ca, None, false));
    assert_eq!(client.modern("tools/list", json!({})).await.status, 200);
    gw.shutdown().await;
}
