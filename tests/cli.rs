//! The `mcpgate` command line: `validate` and `catalogue`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::mock_http::{self, MockEra, MockSpec};

mod support;

fn mcpgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgate"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn validate_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        "listen: { addr: 127.0.0.1:0 }\nupstreams:\n  - { id: time, stdio: { command: mcp-server-time } }\n",
    );
    let (code, stdout, _) = mcpgate(&["validate", "--config", &good]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("valid") && stdout.contains("time"),
        "{stdout}"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "listen: { addr: nowhere }\nupstreams:\n  - { id: Bad, stdio: { command: x } }\n  - { id: web, http: { url: 'ftp://x' }, timeout: soon }\n",
    );
    let (code, _, stderr) = mcpgate(&["validate", "--config", &bad]);
    assert_ne!(code, 0);
    for path in [
        "listen.addr",
        "upstreams[0].id",
        "upstreams[1].http.url",
        "upstreams[1].timeout",
    ] {
        assert!(stderr.contains(path), "{path} missing from:\n{stderr}");
    }

    let typo = write(
        dir.path(),
        "typo.yaml",
        "listen: { addr: 127.0.0.1:0 }\nupstream: []\n",
    );
    let (code, _, stderr) = mcpgate(&["validate", "--config", &typo]);
    assert_ne!(code, 0);
    assert!(stderr.contains("upstream"), "{stderr}");
}

#[tokio::test]
async fn catalogue_prints_names_owners_aliases_and_down_upstreams() {
    let mut spec = MockSpec::new(MockEra::Modern);
    let long = format!("summarise_{}", "x".repeat(70));
    spec.tools = vec![json!({"name": long, "inputSchema": {"type": "object"}})];
    let (addr, _mock, _task) = mock_http::start(spec).await;
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mock_stdio.py");
    let config = write(
        dir.path(),
        "c.yaml",
        &format!(
            "listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - {{ id: pipe, stdio: {{ command: python3, args: ['{}', legacy] }} }}
  - {{ id: web, http: {{ url: 'http://{addr}/mcp' }} }}
  - {{ id: gone, stdio: {{ command: /nonexistent/mcp-server }}, timeout: 2s }}
",
            script.display(),
        ),
    );
    let config2 = config.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        mcpgate(&["catalogue", "--config", &config2, "--json"])
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "an upstream is down: {stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let entries = doc["entries"].as_array().unwrap();
    let echo = entries.iter().find(|e| e["name"] == "pipe__echo").unwrap();
    assert_eq!(
        (echo["upstream"].as_str(), echo["alias"].as_bool()),
        (Some("pipe"), Some(false))
    );
    let aliased = entries.iter().find(|e| e["alias"] == true).unwrap();
    assert_eq!(aliased["upstream_name"], long.as_str());
    assert_eq!(aliased["name"].as_str().unwrap().chars().count(), 64);
    assert_eq!(doc["down"][0]["upstream"], "gone");

    let (_, table, _) =
        tokio::task::spawn_blocking(move || mcpgate(&["catalogue", "--config", &config]))
            .await
            .unwrap();
    assert!(
        table.contains("pipe__echo") && table.contains("(alias)") && table.contains("DOWN gone"),
        "{table}"
    );
}

#[test]
fn policy_check_explain_and_diff_for_security_teams() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["old", "new"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let role = |tools: &str| {
        format!(
            "roles:\n  - name: ops\n    subjects: [{{ claim: groups, equals: ops }}]\n    allow: {{ tools: [{tools}] }}\n    rate_limit: {{ rate: 60/m, burst: 10 }}\n"
        )
    };
    write(
        &dir.path().join("old"),
        "ops.yaml",
        &role("\"pipe/echo\", \"pipe/gone\""),
    );
    write(
        &dir.path().join("new"),
        "ops.yaml",
        &role("\"pipe/echo\", \"pipe/slow\", \"pipe/ask\""),
    );
    let config = write(
        dir.path(),
        "mcpgate.yaml",
        &format!(
            "listen: {{ addr: 127.0.0.1:0 }}\nlimits: {{ per_principal: 600/m }}\nupstreams:\n  - {{ id: pipe, stdio: {}, tools: {{ \"ec*\": {{ rate_limit: 10/m, timeout: 5s }} }} }}\npolicies: {{ dir: old }}\n",
            support::stdio_mock("legacy")
        ),
    );
    let claims = write(
        dir.path(),
        "ops.json",
        r#"{"sub": "olga", "groups": ["ops"]}"#,
    );

    let (code, stdout, stderr) = mcpgate(&["policy", "check", "--config", &config]);
    assert_eq!(
        code, 2,
        "a pattern matching nothing is a warning: {stdout}{stderr}"
    );
    assert!(
        stdout.contains(
            "warning: ops.yaml:4: role \"ops\", allow.tools: \"pipe/gone\" matches nothing"
        ),
        "{stdout}"
    );

    let (code, stdout, _) = mcpgate(&[
        "policy",
        "explain",
        "--config",
        &config,
        "--claims",
        &claims,
        "--target",
        "pipe/echo",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("ALLOW  tools pipe/echo"), "{stdout}");
    assert!(
        stdout.contains("decided by ops.yaml:4  role \"ops\"  allow \"pipe/echo\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "limits     per_principal 600/m, per_role 60/m (burst 10) (role \"ops\"), per_tool 10/m\ntimeout    5s"
        ),
        "{stdout}"
    );
    let (code, stdout, _) = mcpgate(&[
        "policy",
        "explain",
        "--config",
        &config,
        "--claims",
        &claims,
        "--target",
        "pipe/slow",
        "--json",
    ]);
    assert_eq!(code, 3, "denied");
    let explained: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["verdict"]["effect"], "deny");
    assert_eq!(explained["roles"], json!(["ops"]));
    assert_eq!(
        explained["limits"],
        json!([{"limit": "per_principal", "rate": "600/m"},
            {"limit": "per_role", "rate": "60/m (burst 10)", "role": "ops"}])
    );
    assert_eq!(explained["timeout"], "30s");

    let old = dir.path().join("old").display().to_string();
    let new = dir.path().join("new").display().to_string();
    let (code, stdout, stderr) = mcpgate(&[
        "policy", "diff", "--config", &config, "--old", &old, "--new", &new, "--claims", &claims,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "+ tools pipe/ask\n+ tools pipe/slow\n2 gained, 0 lost",
        "{stdout}"
    );
}
