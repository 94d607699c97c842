//! The JSON Schema of `mcpgate.yaml` (`mcpgate config schema`, kept in
//! `docs/mcpgate.schema.json` for editors): it is what the binary prints, it accepts every file
//! in `examples/`, and it refuses unknown keys and wrong types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("YAML")
}

fn errors(instance: &Value) -> Vec<String> {
    let schema = mcpgate::config::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

#[test]
fn the_checked_in_schema_is_what_the_binary_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgate"))
        .args(["config", "schema"])
        .output()
        .expect("mcpgate runs");
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, mcpgate::config::json_schema());
    let file = std::fs::read_to_string(root().join("docs/mcpgate.schema.json")).unwrap();
    let checked_in: Value = serde_json::from_str(&file).unwrap();
    assert!(
        checked_in == printed,
        "docs/mcpgate.schema.json is stale: mcpgate config schema > docs/mcpgate.schema.json"
    );
}

#[test]
fn every_example_is_valid_and_points_editors_at_the_schema() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../docs/mcpgate.schema.json\n"),
            "{} does not name the schema",
            path.display()
        );
        let problems = errors(&yaml(&text));
        assert!(problems.is_empty(), "{}: {problems:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "examples/*.yaml: {seen}");
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let base =
        "listen: { addr: 127.0.0.1:8080 }\nupstreams: [{ id: time, stdio: { command: t } }]\n";
    assert!(errors(&yaml(base)).is_empty());
    for (bad, why) in [
        (
            "listen: { adress: 127.0.0.1:8080 }\nupstreams: []\n",
            "a misspelt key",
        ),
        (
            &format!("{base}catalogue: {{ page_size: many }}\n"),
            "a string for a number",
        ),
        (
            &format!("{base}shutdown: {{ drain: 5s }}\n"),
            "an unknown shutdown key",
        ),
        ("upstreams: []\n", "no listen section"),
        (
            &format!("{base}limits: {{ global: {{ rate: 10/s }} }}\n"),
            "a rate without its burst",
        ),
    ] {
        assert!(!errors(&yaml(bad)).is_empty(), "{why} must be refused");
    }
}
