//! `/metrics` after scripted traffic (DESIGN.md §5.8): counter values and label sets of every
//! family the gateway exports, `promtool check metrics` clean, and bounded labels — no caller
//! id, argument or credential in any label.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use support::idp::RESOURCE;
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, eventually, gateway, metrics, sample, sha256_hex};

const POLICY: &str = r#"
roles:
  - name: callers
    subjects:
      - api_key: alice
      - api_key: bob
    allow:
      tools: ["m/*"]
      prompts: ["m/*"]
      resources: ["m/*"]
    deny:
      tools: ["m/garbage"]
"#;

/// Label names of each metric family in Prometheus text (histogram series folded into their
/// family, `le` left out).
fn label_sets(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let set = families.entry(family.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let key = pair.split_once('=').unwrap().0;
            if key != "le" {
                set.insert(key.to_string());
            }
        }
    }
    families
}

fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup-e2e.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

/// `deploy/grafana/mcpgate.json`: every query names only `families` the gateway exports (a
/// histogram by its `_bucket` series), and every query is PromQL that `promtool check rules`
/// accepts (as a recording rule, with the dashboard's variables given values).
fn check_dashboard(families: &BTreeSet<&str>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/mcpgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 20, "a dashboard with its queries");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("mcpgate_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(
                families.contains(family),
                "the dashboard queries {name}, which is not exported"
            );
            rest = &rest[at + name.len()..];
        }
        let concrete = expr
            .replace("$__rate_interval", "5m")
            .replace("$upstream", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::Value::from(concrete)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (scripts/setup-e2e.sh installs it)");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn scripted_traffic_shows_in_every_family_with_bounded_labels_and_promtool_agrees() {
    let (addr, _mock, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.yaml"), POLICY).unwrap();
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: m
    http: {{ url: 'http://{addr}/mcp' }}
    tools:
      link: {{ rate_limit: 1/m }}
    circuit_breaker: {{}}
namespacing: {{ prefix: always }}
auth:
  api_keys:
    - {{ name: alice, sha256: '{}' }}
    - {{ name: bob, sha256: '{}' }}
policies: {{ dir: '{}' }}
audit: {{ path: '{}/audit.jsonl' }}
",
        sha256_hex("alice-secret-key"),
        sha256_hex("bob-secret-key"),
        dir.path().display(),
        dir.path().display(),
    ))
    .await;
    let client = Client::new(&gw);
    let alice = client.bearer("alice-secret-key");
    let bob = client.bearer("bob-secret-key");
    for i in 0..3 {
        alice
            .modern(
                "tools/call",
                json!({"name": "m__echo", "arguments": {"message": format!("user-arg-{i}")}}),
            )
            .await
            .result();
    }
    bob.modern("tools/call", json!({"name": "m__fail", "arguments": {}}))
        .await
        .result();
    assert_eq!(
        bob.modern("tools/call", json!({"name": "m__garbage", "arguments": {}}))
            .await
            .error_code(),
        -32602
    );
    alice
        .modern("tools/call", json!({"name": "m__link", "arguments": {}}))
        .await
        .result();
    assert_eq!(
        alice
            .modern("tools/call", json!({"name": "m__link", "arguments": {}}))
            .await
            .status,
        429
    );
    assert_eq!(
        client
            .bearer("not-a-key")
            .modern("tools/list", json!({}))
            .await
            .status,
        401
    );
    assert_eq!(client.modern("tools/list", json!({})).await.status, 401);
    // A legacy session with its standalone stream open while the metrics are read.
    let sid = alice.initialize().await;
    alice
        .legacy(
            &sid,
            "prompts/get",
            json!({"name": "m__greet", "arguments": {"who": "x"}}),
        )
        .await
        .result();
    let stream = alice.open_get_stream(&sid).await;
    // Records are written by the audit writer shortly after their call ends: config and policy
    // loads, 8 calls, 2 authentication failures.
    let written = || async { sample(&metrics(&gw).await, "mcpgate_audit_records_total") == 12.0 };
    eventually(5, "every audit record written", written).await;
    let text = metrics(&gw).await;

    let calls = |method: &str, outcome: &str| {
        format!(
            "mcpgate_requests_total{{method=\"{method}\",outcome=\"{outcome}\",upstream=\"m\"}}"
        )
    };
    let expected_values = [
        (calls("tools/call", "ok"), 4.0),
        (calls("tools/call", "tool_error"), 1.0),
        (calls("tools/call", "denied"), 1.0),
        (calls("tools/call", "rate_limited"), 1.0),
        (calls("prompts/get", "ok"), 1.0),
        // Calls that reached the upstream; every call, refused ones too.
        (
            "mcpgate_upstream_request_duration_seconds_count{method=\"tools/call\",upstream=\"m\"}"
                .into(),
            5.0,
        ),
        (
            "mcpgate_request_duration_seconds_count{method=\"tools/call\",upstream=\"m\"}".into(),
            7.0,
        ),
        (
            "mcpgate_auth_rejections_total{reason=\"invalid_token\"}".into(),
            1.0,
        ),
        (
            "mcpgate_auth_rejections_total{reason=\"missing_credentials\"}".into(),
            1.0,
        ),
        (
            "mcpgate_policy_decisions_total{effect=\"deny\"}".into(),
            1.0,
        ),
        ("mcpgate_rate_limited_total{limit=\"per_tool\"}".into(), 1.0),
        (
            "mcpgate_catalogue_entries{kind=\"tools\",upstream=\"m\"}".into(),
            7.0,
        ),
        (
            "mcpgate_catalogue_entries{kind=\"prompts\",upstream=\"m\"}".into(),
            1.0,
        ),
        (
            "mcpgate_catalogue_entries{kind=\"resource_templates\",upstream=\"m\"}".into(),
            1.0,
        ),
        ("mcpgate_sessions{era=\"legacy\"}".into(), 1.0),
        (
            "mcpgate_open_streams{era=\"legacy\",kind=\"standalone\"}".into(),
            1.0,
        ),
        ("mcpgate_upstream_up{upstream=\"m\"}".into(), 1.0),
        ("mcpgate_circuit_state{upstream=\"m\"}".into(), 0.0),
        ("mcpgate_audit_queue_depth".into(), 0.0),
        ("mcpgate_open_connections{listener=\"admin\"}".into(), 1.0),
    ];
    for (series, value) in &expected_values {
        assert_eq!(sample(&text, series), *value, "{series}");
    }
    // Outcomes that never happened are there, at zero.
    for zero in [
        "mcpgate_policy_reloads_total{outcome=\"rejected\"} 0",
        "mcpgate_config_reloads_total{outcome=\"applied\"} 0",
    ] {
        assert!(text.contains(zero), "{zero}");
    }
    // The label set of every family, and nothing else.
    let expected: BTreeMap<&str, &[&str]> = [
        (
            "mcpgate_requests_total",
            &["method", "outcome", "upstream"][..],
        ),
        ("mcpgate_request_duration_seconds", &["method", "upstream"]),
        (
            "mcpgate_upstream_request_duration_seconds",
            &["method", "upstream"],
        ),
        ("mcpgate_upstream_up", &["upstream"]),
        ("mcpgate_auth_rejections_total", &["reason"]),
        ("mcpgate_policy_decisions_total", &["effect"]),
        ("mcpgate_policy_reloads_total", &["outcome"]),
        ("mcpgate_config_reloads_total", &["outcome"]),
        ("mcpgate_mrtr_handoffs_total", &["outcome"]),
        ("mcpgate_open_connections", &["listener"]),
        ("mcpgate_open_streams", &["era", "kind"]),
        ("mcpgate_sessions", &["era"]),
        ("mcpgate_catalogue_entries", &["kind", "upstream"]),
        ("mcpgate_catalogue_conflicts", &[]),
        ("mcpgate_rate_limited_total", &["limit"]),
        ("mcpgate_rate_limit_store_errors_total", &["outcome"]),
        ("mcpgate_circuit_state", &["upstream"]),
        ("mcpgate_circuit_transitions_total", &["to", "upstream"]),
        ("mcpgate_upstream_inflight", &["upstream"]),
        ("mcpgate_audit_records_total", &[]),
        ("mcpgate_audit_queue_depth", &[]),
        ("mcpgate_audit_dropped_total", &[]),
        ("mcpgate_audit_refused_calls_total", &[]),
        ("mcpgate_audit_write_errors_total", &[]),
        ("mcpgate_build_info", &["revision", "version"]),
    ]
    .into();
    let seen = label_sets(&text);
    for (family, labels) in &expected {
        let got = seen
            .get(*family)
            .unwrap_or_else(|| panic!("{family} missing from /metrics:\n{text}"));
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(got, &want, "labels of {family}");
    }
    // Families that appear once something happened to them.
    let later = [
        "mcpgate_bulkhead_rejected_total",
        "mcpgate_timeouts_total",
        "mcpgate_retries_total",
        "mcpgate_catalogue_refresh_failures_total",
    ];
    for family in seen.keys() {
        assert!(
            expected.contains_key(family.as_str()) || later.contains(&family.as_str()),
            "unexpected family {family}"
        );
    }
    let families: BTreeSet<&str> = expected.keys().copied().chain(later).collect();
    check_dashboard(&families);
    // Bounded labels: no caller, argument or credential anywhere.
    for leaked in ["alice", "bob", "user-arg", "secret-key", "not-a-key", &sid] {
        assert!(!text.contains(leaked), "/metrics contains {leaked}");
    }
    promtool_check(&text);
    drop(stream);
    gw.shutdown().await;
}
