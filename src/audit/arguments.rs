//! What an audit record keeps of a call's arguments: always their SHA-256, and for tools opted
//! in (`audit.arguments.tools`) the arguments themselves with secrets redacted — object keys by
//! name at any depth, string values by pattern (DESIGN.md §5.11).

use serde_json::Value;

use crate::config::{ArgumentsConfig, normalize_key};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The arguments of a call method's params: `arguments` of `tools/call` and `prompts/get`,
/// `argument` of `completion/complete`.
pub fn of<'a>(method: &str, params: Option<&'a Value>) -> Option<&'a Value> {
    let key = match method {
        "tools/call" | "prompts/get" => "arguments",
        "completion/complete" => "argument",
        _ => return None,
    };
    params?.get(key)
}

/// Lowercase hex SHA-256 of `arguments` as compact JSON, members in the order received.
pub fn digest(arguments: &Value) -> String {
    let bytes = serde_json::to_vec(arguments).unwrap_or_default();
    super::sha256_hex(&bytes)
}

/// A copy of `arguments` with every value under a redacted key, and every part of a string
/// that matches a redaction pattern, replaced by [`REDACTED`].
pub fn redact(arguments: &Value, config: &ArgumentsConfig) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let hidden = config.redact_keys.binary_search(&normalize_key(k)).is_ok();
                    let v = if hidden {
                        Value::from(REDACTED)
                    } else {
                        redact(v, config)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, config)).collect()),
        Value::String(s) => {
            let mut text = std::borrow::Cow::Borrowed(s.as_str());
            for pattern in &config.redact_values {
                if pattern.is_match(&text) {
                    text =
                        std::borrow::Cow::Owned(pattern.replace_all(&text, REDACTED).into_owned());
                }
            }
            Value::from(text.into_owned())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> ArgumentsConfig {
        let yaml = r#"
listen: { addr: "127.0.0.1:0" }
upstreams: [{ id: a, http: { url: "http://127.0.0.1:1/mcp" } }]
audit:
  sink: stdout
  arguments: { tools: ["a/*"], redact_keys: [ssn], redact_values: ["\\d{4}-\\d{4}-\\d{4}-\\d{4}"] }
"#;
        let config = crate::config::Config::from_yaml(
            yaml,
            std::path::Path::new("t.yaml"),
            std::path::Path::new("."),
            &|_| None,
        )
        .expect("valid");
        config.audit.expect("audit").arguments
    }

    #[test]
    fn keys_are_redacted_at_any_depth_and_values_by_pattern() {
        let config = config();
        let args = json!({
            "query": "open tickets",
            "Api-Key": "k-123",
            "nested": [{"password": "hunter2", "note": "card 1234-5678-9012-3456 ok"}],
            "ssn": {"deep": "value"},
            "header": "Bearer abc.def",
            "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "n": 3
        });
        let redacted = redact(&args, &config);
        assert_eq!(
            redacted,
            json!({
                "query": "open tickets",
                "Api-Key": REDACTED,
                "nested": [{"password": REDACTED, "note": format!("card {REDACTED} ok")}],
                "ssn": REDACTED,
                "header": REDACTED,
                "jwt": REDACTED,
                "n": 3
            })
        );
        assert!(config.records("a/search") && !config.records("b/search"));
    }

    #[test]
    fn the_digest_covers_the_arguments_as_sent() {
        let a = digest(&json!({"x": 1, "y": 2}));
        assert_eq!(a.len(), 64);
        assert_ne!(a, digest(&json!({"x": 1, "y": 3})));
        assert_eq!(
            of("tools/call", Some(&json!({"arguments": {"x": 1}}))),
            Some(&json!({"x": 1}))
        );
        assert_eq!(of("resources/read", Some(&json!({"uri": "x"}))), None);
    }
}
