//! The audit log end to end (DESIGN.md §5.11): every call yields exactly one record whatever
//! its outcome, each record matches `docs/audit.schema.json`, the chain verifies (with its
//! HMAC key) and breaks at the right line when a file is tampered with, rotation and restarts
//! keep one chain, and no credential or redacted argument reaches the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::idp::{ISSUER, Jwks, RESOURCE, TestKey, claims};
use support::mock_http::{self, MockEra, MockSpec};
use support::{Client, gateway, metrics, sample, sha256_hex};

const POLICY: &str = r#"
roles:
  - name: sre
    subjects:
      - claim: groups
        any_of: [sre]
    allow:
      tools: ["m/*", "m2/*"]
      prompts: ["m/*"]
      resources: ["m/*"]
      completion: ["m/*"]
    deny:
      tools: ["m/garbage"]
"#;

/// 64 hex digits: the chain key.
const KEY_HEX: &str = "8f1e6c2a9d4b7e3f0a5c8d2e6b9f1a4c7e0d3b6a9c2f5e8d1b4a7c0e3f6a9d2b";
const UPSTREAM_SECRET: &str = "upstream-s3cret-value";
const API_KEY: &str = "mk-live-0123456789abcdef";
const REDACTED_VALUE: &str = "hunter2-do-not-log";

struct Setup {
    gw: mcpgate::app::Running,
    alice: Client,
    anonymous: Client,
    token: String,
    dir: tempfile::TempDir,
    _jwks: Jwks,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Setup {
    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("log/audit.jsonl")
    }
}

/// A gateway with JWT auth, one policy file, an API key, and two mock upstreams: `m` (`slow`
/// times out after 300 ms, `link` is limited to 1/m, an upstream secret header) and `m2`
/// (bulkhead of 1, breaker opening on the first failure); audit to a file with a key.
async fn setup(audit_extra: &str) -> Setup {
    setup_at(tempfile::tempdir().unwrap(), audit_extra).await
}

/// [`setup`] in `dir`, where an earlier gateway may have left its audit log.
async fn setup_at(dir: tempfile::TempDir, audit_extra: &str) -> Setup {
    let key = TestKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let (m, _, t1) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let (m2, _, t2) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/org.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("audit.key"), KEY_HEX).unwrap();
    let gw = gateway(&format!(
        "listen: {{ addr: 127.0.0.1:0, public_url: '{RESOURCE}' }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: m
    http: {{ url: 'http://{m}/mcp', headers: {{ X-Upstream-Secret: '{UPSTREAM_SECRET}' }} }}
    tools:
      slow: {{ timeout: 300ms }}
      link: {{ rate_limit: 1/m }}
  - id: m2
    http: {{ url: 'http://{m2}/mcp' }}
    max_concurrency: 1
    circuit_breaker: {{ consecutive_failures: 1, open_for: 60s }}
namespacing: {{ prefix: always }}
auth:
  jwt: {{ issuer: '{ISSUER}', jwks_url: '{jwks}', algorithms: [RS256] }}
  api_keys:
    - {{ name: robot, sha256: '{api_sha}', groups: [sre], scopes: [completion] }}
  method_scopes: {{ completion/complete: [completion] }}
policies: {{ dir: '{dir}/policies' }}
audit:
  path: '{dir}/log/audit.jsonl'
  key_file: '{dir}/audit.key'
  arguments: {{ tools: ['m/echo'], redact_keys: [ssn] }}
{audit_extra}
",
        jwks = jwks.url(),
        api_sha = sha256_hex(API_KEY),
        dir = dir.path().display(),
    ))
    .await;
    let client = Client::new(&gw);
    let mut c = claims("alice");
    c["groups"] = json!(["sre"]);
    let token = key.sign(&c);
    Setup {
        alice: client.bearer(&token),
        anonymous: client,
        token,
        gw,
        dir,
        _jwks: jwks,
        _tasks: vec![t1, t2],
    }
}

async fn call(client: &Client, name: &str, args: Value) -> support::Reply {
    client
        .modern("tools/call", json!({"name": name, "arguments": args}))
        .await
}

/// Every line of the audit files of `path` (rotated ones first), parsed.
fn records(path: &Path) -> Vec<Value> {
    let mut files = mcpgate::audit::sink::rotated(path).unwrap();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn schema_errors(record: &Value) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the audit schema compiles");
    validator
        .iter_errors(record)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// `mcpgate audit verify --json` over `files`: exit code and report.
fn verify(files: &[PathBuf], extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgate"))
        .args(["audit", "verify", "--json"])
        .args(extra)
        .args(files)
        .output()
        .expect("mcpgate runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed {:?} / {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

fn calls(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["event"] == "call").collect()
}

#[tokio::test]
async fn every_outcome_yields_one_record_that_matches_the_schema_and_the_chain_verifies() {
    let s = setup("").await;
    let alice = &s.alice;
    let traced = alice.with_header(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    // ok, with arguments recorded (redacted) for the opted-in tool and a client trace id.
    let r = call(
        &traced,
        "m__echo",
        json!({"message": "hi", "password": REDACTED_VALUE, "ssn": "078-05-1120"}),
    )
    .await;
    assert_eq!(r.result()["content"][0]["text"], "hi");
    assert_eq!(
        call(alice, "m__fail", json!({})).await.result()["isError"],
        true
    );
    assert_eq!(
        call(alice, "m__garbage", json!({})).await.error_code(),
        -32602
    );
    let unknown = format!("m__{}", "n".repeat(5000));
    assert_eq!(call(alice, &unknown, json!({})).await.error_code(), -32602);
    assert_eq!(
        call(alice, "m__slow", json!({"ms": 2000}))
            .await
            .error_code(),
        -32603
    );
    call(alice, "m__link", json!({})).await.result();
    assert_eq!(call(alice, "m__link", json!({})).await.status, 429);
    // The client goes away in the middle of a call: cancelled.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        call(alice, "m2__slow", json!({"ms": 1500})),
    )
    .await;
    assert!(abandoned.is_err(), "the slow call was abandoned");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Bulkhead of one: a second call while one is in flight is refused.
    let slow = tokio::spawn({
        let alice = alice.with_header("x-test", "1");
        async move { call(&alice, "m2__slow", json!({"ms": 600})).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = call(alice, "m2__echo", json!({"message": "x"})).await;
    assert_eq!(refused.body["error"]["data"]["reason"], "overloaded");
    slow.await.unwrap().result();
    // An upstream failure opens m2's breaker (one failure is enough here).
    assert_eq!(
        call(alice, "m2__http500", json!({})).await.error_code(),
        -32603
    );
    let open = call(alice, "m2__echo", json!({"message": "x"})).await;
    assert_eq!(open.body["error"]["data"]["reason"], "circuit_open");
    // Other kinds of call, and a legacy session.
    alice
        .modern(
            "prompts/get",
            json!({"name": "m__greet", "arguments": {"who": "x"}}),
        )
        .await
        .result();
    let listed = alice.modern("resources/list", json!({})).await;
    let uri = listed.result()["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    alice
        .modern("resources/read", json!({"uri": uri}))
        .await
        .result();
    let sid = alice.initialize().await;
    alice
        .legacy(
            &sid,
            "tools/call",
            json!({"name": "m__echo", "arguments": {"message": "legacy"}}),
        )
        .await
        .result();
    // Authentication failures: a bad token, none at all, and an API key that works.
    let forged = Client::new(&s.gw).bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    assert_eq!(call(&forged, "m__echo", json!({})).await.status, 401);
    assert_eq!(call(&s.anonymous, "m__echo", json!({})).await.status, 401);
    let robot = Client::new(&s.gw).bearer(API_KEY);
    call(&robot, "m__echo", json!({"message": "beep"}))
        .await
        .result();
    // completion/complete needs a scope the API key has and alice's token has not.
    let complete = json!({"ref": {"type": "ref/prompt", "name": "m__greet"},
        "argument": {"name": "who", "value": "x"}});
    robot
        .modern("completion/complete", complete.clone())
        .await
        .result();
    assert_eq!(
        alice.modern("completion/complete", complete).await.status,
        403
    );
    let text = metrics(&s.gw).await;
    let path = s.audit_path();
    s.gw.shutdown().await;

    let all = records(&path);
    for record in &all {
        let errors = schema_errors(record);
        assert!(
            errors.is_empty(),
            "{record} breaks the schema:\n{}",
            errors.join("\n")
        );
    }
    assert_eq!(all[0]["event"], "config_loaded");
    assert_eq!(all[1]["event"], "policy_loaded");
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>(), "gapless");
    let calls = calls(&all);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &calls {
        *outcomes.entry(c["outcome"].as_str().unwrap()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("ok", 8),
        ("tool_error", 1),
        ("denied", 1),
        ("invalid", 1),
        ("timeout", 1),
        ("rate_limited", 1),
        ("cancelled", 1),
        ("overloaded", 1),
        ("upstream_error", 1),
        ("circuit_open", 1),
    ]
    .into();
    assert_eq!(outcomes, expected, "one record per call: {calls:#?}");
    // The fields of each kind of record.
    let echo = calls[0];
    assert_eq!(echo["principal"]["sub"], "alice");
    assert_eq!(echo["principal"]["iss"], ISSUER);
    assert_eq!(echo["target"], "m/echo");
    assert_eq!(echo["name"], "m__echo");
    assert_eq!(echo["upstream"], "m");
    assert_eq!(echo["era"], "modern");
    assert_eq!(echo["decision"]["effect"], "allow");
    assert_eq!(echo["decision"]["role"], "sre");
    assert_eq!(echo["decision"]["file"], "org.yaml");
    assert_eq!(echo["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        echo["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(echo["arguments"]["password"], "[REDACTED]");
    assert_eq!(echo["arguments"]["ssn"], "[REDACTED]");
    assert_eq!(echo["arguments"]["message"], "hi");
    let sent = json!({"message": "hi", "password": REDACTED_VALUE, "ssn": "078-05-1120"});
    assert_eq!(
        echo["args_sha256"],
        sha256_hex(&serde_json::to_string(&sent).unwrap())
    );
    let denied = calls.iter().find(|c| c["outcome"] == "denied").unwrap();
    assert_eq!(denied["decision"]["effect"], "deny");
    assert_eq!(denied["decision"]["rule"], "m/garbage");
    assert_eq!(denied["target"], "m/garbage");
    assert_eq!(denied["error_code"], -32602);
    let fail = calls.iter().find(|c| c["outcome"] == "tool_error").unwrap();
    assert!(fail.get("arguments").is_none(), "not opted in: digest only");
    assert!(fail["args_sha256"].is_string());
    let limited = calls
        .iter()
        .find(|c| c["outcome"] == "rate_limited")
        .unwrap();
    assert_eq!(limited["error_code"], -32000);
    let legacy = calls.iter().find(|c| c["era"] == "legacy").unwrap();
    assert_eq!(legacy["session"].as_str().unwrap().len(), 16);
    let timeout = calls.iter().find(|c| c["outcome"] == "timeout").unwrap();
    assert!(timeout["latency_ms"].as_f64().unwrap() >= 290.0);
    let robot = calls
        .iter()
        .find(|c| c["principal"]["api_key"] == "robot")
        .unwrap();
    assert_eq!(robot["outcome"], "ok");
    let failures: Vec<&str> = all
        .iter()
        .filter(|r| r["event"] == "auth_failure")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        ["invalid_token", "missing_credentials", "insufficient_scope"]
    );
    let scope = all
        .iter()
        .find(|r| r["reason"] == "insufficient_scope")
        .unwrap();
    assert_eq!(
        (
            &scope["principal"]["sub"],
            &scope["method"],
            &scope["http_status"]
        ),
        (&json!("alice"), &json!("completion/complete"), &json!(403))
    );
    let completion = calls
        .iter()
        .find(|c| c["method"] == "completion/complete")
        .unwrap();
    assert_eq!(completion["target"], "m/greet");
    assert_eq!(
        completion["args_sha256"],
        sha256_hex(r#"{"name":"who","value":"x"}"#)
    );
    let invalid = calls.iter().find(|c| c["outcome"] == "invalid").unwrap();
    let name = invalid["name"].as_str().unwrap();
    assert!(
        name.len() <= 2048 + 3 && name.ends_with('…'),
        "a client's name is bounded"
    );
    // Metrics agree with the log.
    let series = |outcome: &str| {
        ["m", "m2", ""]
            .iter()
            .map(|u| {
                sample(
                    &text,
                    &format!(
                        "mcpgate_requests_total{{method=\"tools/call\",outcome=\"{outcome}\",upstream=\"{u}\"}}"
                    ),
                )
            })
            .sum::<f64>()
    };
    assert_eq!(series("ok"), 5.0);
    assert_eq!(series("overloaded"), 1.0);
    assert_eq!(series("invalid"), 1.0);
    assert!(sample(&text, "mcpgate_audit_records_total") >= 2.0);
    assert_eq!(sample(&text, "mcpgate_audit_dropped_total"), 0.0);
    // The chain is intact with the key, and not without it.
    let files = vec![path.clone()];
    let key = s_key_file(&path);
    let (code, report) = verify(&files, &["--key-file", key.to_str().unwrap()]);
    assert_eq!((code, &report["intact"]), (0, &json!(true)), "{report}");
    assert_eq!(report["records"], all.len());
    let (code, report) = verify(&files, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["first_break"]["line"], 1);
    // No credential and no redacted value anywhere in the log or the metrics.
    let log = std::fs::read_to_string(&path).unwrap();
    for secret in [
        s.token.as_str(),
        API_KEY,
        UPSTREAM_SECRET,
        REDACTED_VALUE,
        "078-05-1120",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    ] {
        assert!(!log.contains(secret), "the audit log contains {secret}");
        assert!(!text.contains(secret), "the metrics contain {secret}");
    }
}

#[tokio::test]
async fn a_policy_set_that_takes_effect_is_recorded() {
    let s = setup("").await;
    let path = s.audit_path();
    let policy = s.dir.path().join("policies/org.yaml");
    std::fs::write(&policy, POLICY.replace("m/garbage", "m/fail")).unwrap();
    let loaded = || {
        records(&path)
            .into_iter()
            .filter(|r| r["event"] == "policy_loaded")
            .collect::<Vec<_>>()
    };
    support::eventually(10, "the new policy set recorded", || async {
        loaded().len() == 2
    })
    .await;
    let sets = loaded();
    assert_ne!(sets[0]["policy_hash"], sets[1]["policy_hash"]);
    assert_eq!(sets[1]["roles"], json!(["sre"]));
    s.gw.shutdown().await;
}

/// The key file beside the audit directory of `path` (`…/log/audit.jsonl` → `…/audit.key`).
fn s_key_file(path: &Path) -> PathBuf {
    path.parent().unwrap().parent().unwrap().join("audit.key")
}

#[tokio::test]
async fn tampering_reordering_deleting_and_truncating_break_the_chain_at_the_right_line() {
    let s = setup("").await;
    for i in 0..6 {
        call(&s.alice, "m__echo", json!({"message": format!("n{i}")}))
            .await
            .result();
    }
    let path = s.audit_path();
    s.gw.shutdown().await;
    let key = s_key_file(&path);
    let key_args = ["--key-file", key.to_str().unwrap()];
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 8, "config, policy, six calls");
    let case = |name: &str, text: String| {
        let file = path.with_file_name(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let (code, report) = verify(&[file], &key_args);
        assert_eq!(code, 1, "{name}: {report}");
        (
            report["first_break"]["line"].as_u64().unwrap(),
            report["first_break"]["reason"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    // An edited field on line 5.
    let mut edited = lines.clone();
    let tampered = lines[4].replace("\"outcome\":\"ok\"", "\"outcome\":\"denied\"");
    assert_ne!(tampered, lines[4]);
    edited[4] = &tampered;
    let (line, why) = case("edited", join(&edited));
    assert_eq!(line, 5);
    assert!(why.contains("hash does not match"), "{why}");
    // Lines 4 and 5 swapped.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    let (line, why) = case("reordered", join(&swapped));
    assert_eq!(line, 4);
    assert!(why.contains("seq 5 where 4 was expected"), "{why}");
    // Line 6 deleted.
    let mut deleted = lines.clone();
    deleted.remove(5);
    assert_eq!(case("deleted", join(&deleted)).0, 6);
    // Cut in the middle of line 7.
    let cut = original.len() - lines[7].len() - 1 - lines[6].len() / 2;
    let (line, why) = case("truncated", original[..cut].to_string());
    assert_eq!(line, 7);
    assert!(why.contains("middle of a record"), "{why}");
    // The first record removed: the chain does not start at 1 (unless --partial).
    let (line, _) = case("headless", join(&lines[1..]));
    assert_eq!(line, 1);
    let file = path.with_file_name("headless.jsonl");
    let mut partial = key_args.to_vec();
    partial.push("--partial");
    assert_eq!(verify(&[file], &partial).0, 0);
}

#[tokio::test]
async fn rotation_and_restarts_keep_one_chain() {
    let rotate = "  rotate: { max_bytes: 3KiB }";
    let s = setup(rotate).await;
    for i in 0..12 {
        call(
            &s.alice,
            "m__echo",
            json!({"message": format!("first run {i}")}),
        )
        .await
        .result();
    }
    let path = s.audit_path();
    let dir = s.dir;
    s.gw.shutdown().await;
    let first_run = records(&path).len();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "owner and group only");
    }
    assert!(
        mcpgate::audit::sink::rotated(&path).unwrap().len() >= 2,
        "rotated by size"
    );
    // A second process with the same configuration continues the chain.
    let again = setup_at(dir, rotate).await;
    for i in 0..3 {
        call(
            &again.alice,
            "m__echo",
            json!({"message": format!("second run {i}")}),
        )
        .await
        .result();
    }
    again.gw.shutdown().await;
    let all = records(&path);
    assert_eq!(all.len(), first_run + 2 + 3);
    assert_eq!(all[first_run]["event"], "config_loaded");
    assert_eq!(all[first_run]["seq"], first_run + 1);
    let mut files = mcpgate::audit::sink::rotated(&path).unwrap();
    files.push(path.clone());
    files.reverse(); // any order: verify puts them in chain order
    let key = s_key_file(&path);
    let (code, report) = verify(&files, &["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["records"], all.len());
    assert_eq!(report["last_seq"], all.len());
    // A whole rotated file removed from the middle breaks the chain at the next file.
    let removed = files.remove(files.len() - 2);
    let (code, report) = verify(&files, &["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, 1, "without {removed:?}: {report}");
    assert_eq!(report["first_break"]["line"], 1);
    drop(again.dir);
}

/// `mcpgate serve` with its audit log on standard output, read by a collector that takes
/// `per_line` for each line (a slow log shipper).
struct SlowCollector {
    child: std::process::Child,
    url: String,
    admin: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl SlowCollector {
    fn start(upstream: std::net::SocketAddr, audit: &str, per_line: Duration) -> Self {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mcpgate.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: m, http: {{ url: 'http://{upstream}/mcp' }} }}
audit: {{ sink: stdout, {audit} }}
"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcpgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mcpgate starts");
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = std::thread::spawn({
            let lines = std::sync::Arc::clone(&lines);
            move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    std::thread::sleep(per_line);
                    lines.lock().unwrap().push(line.unwrap());
                }
            }
        });
        let (url, admin) = support::process::where_it_listens(child.stderr.take().unwrap());
        Self {
            child,
            url,
            admin,
            lines,
            reader,
            _dir: dir,
        }
    }

    /// Lines the collector has taken so far.
    fn collected(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// SIGTERM; the exit status, and every line the process wrote to stdout.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        (status, lines)
    }
}

/// Fires `n` modern `tools/call`s of `echo` with a message of `size` bytes, `concurrency` at
/// a time; returns the replies.
async fn load(url: &str, n: usize, concurrency: usize, size: usize) -> Vec<support::Reply> {
    use futures::StreamExt as _;
    let client = Client::over(url.to_string(), reqwest::Client::new());
    futures::stream::iter(0..n)
        .map(|i| {
            let client = &client;
            let message = format!("m{i}-{}", "x".repeat(size));
            async move { call(client, "echo", json!({ "message": message })).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// `lines` (the stdout sink's output) are one intact chain with `calls` call records.
fn assert_one_intact_record_per_call(lines: &[String], calls_made: usize) {
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        calls(&records).len(),
        calls_made,
        "one record per call, none lost"
    );
    let (_dir, file) = sealed_file(lines);
    let (code, report) = verify(&[file], &[]);
    assert_eq!(code, 0, "{report}");
}

fn sealed_file(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stdout.jsonl");
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    (dir, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_under_load_applies_backpressure_and_loses_nothing() {
    let (upstream, _, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = SlowCollector::start(upstream, "queue: 4", Duration::from_millis(2));
    let replies = load(&gw.url, 300, 16, 16).await;
    assert!(
        replies.iter().all(|r| r.body.get("result").is_some()),
        "block: every call served"
    );
    let (status, lines) = gw.terminate();
    assert!(status.success(), "exit 0 on SIGTERM: {status}");
    assert_one_intact_record_per_call(&lines, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_record_of_the_calls_that_completed() {
    let (upstream, _, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    // Records of 4 KiB (arguments recorded): the pipe holds a few, the queue the rest.
    let gw = SlowCollector::start(
        upstream,
        "queue: 1000, arguments: { tools: ['m/echo'] }",
        Duration::from_millis(5),
    );
    let replies = load(&gw.url, 200, 16, 4096).await;
    assert!(
        replies.iter().all(|r| r.body.get("result").is_some()),
        "block: every call served"
    );
    // Every call has been answered; the shipper is still behind.
    let before = gw.collected();
    assert!(
        before < 200,
        "records still on their way at SIGTERM ({before})"
    );
    let (status, lines) = gw.terminate();
    assert!(status.success(), "exit 0 on SIGTERM: {status}");
    assert_one_intact_record_per_call(&lines, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_calls_it_cannot_record_and_records_every_call_it_served() {
    let (upstream, _, _task) = mock_http::start(MockSpec::new(MockEra::Modern)).await;
    let gw = SlowCollector::start(
        upstream,
        "queue: 2, when_full: fail_closed",
        Duration::from_millis(25),
    );
    let replies = load(&gw.url, 60, 20, 16).await;
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.body["error"]["data"]["reason"] == "audit_unavailable")
        .collect();
    let served = replies
        .iter()
        .filter(|r| r.body.get("result").is_some())
        .count();
    assert_eq!(served + refused.len(), 60);
    assert!(!refused.is_empty(), "the queue of two filled up");
    assert!(
        refused
            .iter()
            .all(|r| r.status == 503 && r.headers["retry-after"] == "1")
    );
    let text = reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "mcpgate_audit_refused_calls_total"),
        refused.len() as f64
    );
    let (status, lines) = gw.terminate();
    assert!(status.success());
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls(&records).len(), served, "every served call recorded");
}
