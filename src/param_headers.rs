//! `Mcp-Param-*` headers: tool parameters mirrored into HTTP headers (2026-07-28 Streamable HTTP,
//! "Custom Headers from Tool Parameters").
//!
//! A tool's `inputSchema` may mark primitive properties with `x-mcp-header: Name`; a client then
//! sends `Mcp-Param-Name: <value>` with every `tools/call`, and a server that reads the body must
//! check that the header equals the argument. mcpgate is both: it checks what modern clients send
//! ([`check`]) and sends the headers to modern HTTP upstreams ([`header_values`]). Tools whose
//! annotations break the rules are invalid and are left out of the catalogue ([`annotations`]).

use http::HeaderMap;
use serde_json::Value;

use crate::protocol::decode_header_value;

/// The header name prefix.
pub const PREFIX: &str = "mcp-param-";
/// Largest integer magnitude allowed in a mirrored value (JavaScript's safe range).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One `x-mcp-header` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The `{Name}` of `Mcp-Param-{Name}`.
    pub name: String,
    /// The chain of `properties` keys from the schema root to the annotated property.
    pub path: Vec<String>,
    /// Whether the property is an integer (compared numerically).
    pub integer: bool,
}

/// Reads and checks every annotation of a tool's `inputSchema`.
///
/// # Errors
/// A message naming the first broken rule: an empty or non-token name, a duplicate name (case
/// insensitive), a non-primitive or `number` property, or an annotation that is not reachable
/// through `properties` keys alone.
pub fn annotations(input_schema: &Value) -> Result<Vec<Annotation>, String> {
    let mut found = Vec::new();
    collect(input_schema, &mut Vec::new(), &mut found)?;
    if count_anywhere(input_schema) != found.len() {
        return Err(
            "x-mcp-header is only allowed on properties reachable through `properties`".into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for a in &found {
        if !seen.insert(a.name.to_ascii_lowercase()) {
            return Err(format!("x-mcp-header {:?} is used twice", a.name));
        }
    }
    Ok(found)
}

fn collect(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<Annotation>,
) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(name) = prop.get("x-mcp-header") {
            let name = name
                .as_str()
                .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
                .ok_or_else(|| format!("x-mcp-header of {key:?} must be a non-empty HTTP token"))?;
            let integer = match prop.get("type").and_then(Value::as_str) {
                Some("integer") => true,
                Some("string" | "boolean") => false,
                _ => {
                    return Err(format!(
                        "x-mcp-header {name:?} must annotate a string, integer or boolean"
                    ));
                }
            };
            out.push(Annotation {
                name: name.to_string(),
                path: path.clone(),
                integer,
            });
        }
        collect(prop, path, out)?;
        path.pop();
    }
    Ok(())
}

fn count_anywhere(value: &Value) -> usize {
    match value {
        Value::Object(map) => {
            usize::from(map.contains_key("x-mcp-header"))
                + map.values().map(count_anywhere).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(count_anywhere).sum(),
        _ => 0,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The value a client must send for each annotation present in `arguments`: strings as they
/// are, integers in decimal, booleans as `true`/`false`. Absent, `null` and non-primitive values
/// produce no header.
pub fn header_values(annotations: &[Annotation], arguments: &Value) -> Vec<(String, String)> {
    annotations
        .iter()
        .filter_map(|a| {
            let value = a.path.iter().try_fold(arguments, |v, k| v.get(k))?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) if n.as_i64().is_some_and(|i| i.abs() <= MAX_SAFE_INTEGER) => {
                    n.to_string()
                }
                _ => return None,
            };
            Some((a.name.clone(), text))
        })
        .collect()
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against its arguments.
///
/// # Errors
/// A message for a missing header, one with invalid characters or bad base64, or one whose
/// value differs from the argument (integers compared numerically).
pub fn check(
    headers: &HeaderMap,
    annotations: &[Annotation],
    arguments: &Value,
) -> Result<(), String> {
    for (name, expected) in header_values(annotations, arguments) {
        let header = format!("{PREFIX}{}", name.to_ascii_lowercase());
        let raw = headers
            .get(&header)
            .ok_or_else(|| format!("Mcp-Param-{name} header is required for this argument"))?
            .to_str()
            .map_err(|_| format!("Mcp-Param-{name} contains invalid characters"))?;
        let got = decode_header_value(raw).map_err(|e| format!("Mcp-Param-{name}: {e}"))?;
        let integer = annotations.iter().any(|a| a.name == name && a.integer);
        let same = if integer {
            matches!((got.trim().parse::<f64>(), expected.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
        } else {
            got == expected
        };
        if !same {
            return Err(format!(
                "Mcp-Param-{name} header value {got:?} does not match body value {expected:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer", "x-mcp-header": "Limit"},
            "opts": {"type": "object", "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry-Run"}}},
            "query": {"type": "string"}
        }})
    }

    #[test]
    fn reads_annotations_along_properties_chains() {
        let a = annotations(&schema()).unwrap();
        let names: Vec<_> = a
            .iter()
            .map(|a| (a.name.as_str(), a.path.join(".")))
            .collect();
        assert!(names.contains(&("Dry-Run", "opts.dry".to_string())));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn rejects_invalid_annotations() {
        for bad in [
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "Bad Name"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}}),
            json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}),
            json!({"oneOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        ] {
            assert!(annotations(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_and_checks_follow_the_encoding_rules() {
        let a = annotations(&schema()).unwrap();
        let args = json!({"region": "日本", "limit": 42, "opts": {"dry": true}, "query": "q"});
        let mut values = header_values(&a, &args);
        values.sort();
        assert_eq!(
            values,
            [
                ("Dry-Run".into(), "true".into()),
                ("Limit".into(), "42".into()),
                ("Region".into(), "日本".into())
            ]
        );
        let mut h = HeaderMap::new();
        h.insert(
            "mcp-param-region",
            HeaderValue::from_static("=?base64?5pel5pys?="),
        );
        h.insert("mcp-param-limit", HeaderValue::from_static("42.0"));
        h.insert("mcp-param-dry-run", HeaderValue::from_static("true"));
        assert_eq!(check(&h, &a, &args), Ok(()));
        h.insert("mcp-param-limit", HeaderValue::from_static("43"));
        assert!(check(&h, &a, &args).unwrap_err().contains("Limit"));
        h.remove("mcp-param-limit");
        assert!(check(&h, &a, &args).unwrap_err().contains("required"));
        assert_eq!(
            check(&HeaderMap::new(), &a, &json!({"query": "only"})),
            Ok(()),
            "absent arguments need no header"
        );
    }
}
