//! JSON-RPC 2.0 envelopes as MCP uses them.
//!
//! This module owns decoding the outer envelope of one message (exactly once per request) and
//! building wire messages. It never looks inside `params` or `result` beyond what routing needs:
//! everything else stays a [`serde_json::Value`] and passes through untouched (DESIGN.md §5.3).
//! It does not decide HTTP status codes; that is [`crate::error`]'s job.

use serde_json::{Map, Value};

/// Standard JSON-RPC and MCP error codes (JSON-RPC 2.0 §5.1; MCP `schema.ts` error types).
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters; MCP also uses it for unknown tools, prompts and resources.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error; mcpgate uses it for gateway-generated upstream failures.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined server error (JSON-RPC 2.0 reserves -32000 to -32099); mcpgate
    /// uses it for requests refused to protect the gateway (backpressure), with `data.reason`.
    pub const SERVER_ERROR: i64 = -32000;
    /// MCP 2026-07-28 `HeaderMismatchError`: HTTP headers disagree with the body or are missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28 `MissingRequiredClientCapabilityError`.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28 `UnsupportedProtocolVersionError`.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// One decoded JSON-RPC message. Ids are kept as raw JSON values (string or number) so they are
/// echoed back byte-for-byte.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: expects exactly one response carrying the same `id`.
    Request {
        /// The request id, a JSON string or number.
        id: Value,
        /// The method name, e.g. `tools/call`.
        method: String,
        /// The params object, if any.
        params: Option<Value>,
    },
    /// A notification: no `id`, no response.
    Notification {
        /// The method name, e.g. `notifications/initialized`.
        method: String,
        /// The params object, if any.
        params: Option<Value>,
    },
    /// A response (success or error) to a request the other side received.
    Response {
        /// The id of the request this answers (`null` for some error responses).
        id: Value,
        /// `Ok(result)` or `Err(error object)`.
        outcome: Result<Value, Value>,
    },
}

/// Why bytes could not be decoded as one JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The bytes are not JSON at all (JSON-RPC -32700).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not a single JSON-RPC 2.0 message (JSON-RPC -32600). `id` is the request id when
    /// one could be recovered, so the error response can carry it.
    #[error("not a JSON-RPC 2.0 message: {reason}")]
    NotJsonRpc {
        /// What is wrong with the envelope.
        reason: &'static str,
        /// The id, if the object had a usable one.
        id: Option<Value>,
    },
}

impl Message {
    /// Decodes one message from raw bytes.
    ///
    /// # Errors
    /// [`DecodeError::NotJson`] for invalid JSON; [`DecodeError::NotJsonRpc`] for JSON batches
    /// (removed from MCP in 2025-06-18), a missing or wrong `jsonrpc` member, a bad `id` type, a
    /// non-object `params`, or an object that is neither request, notification nor response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Decodes one message from an already parsed JSON value. See [`Message::decode`].
    ///
    /// # Errors
    /// As [`Message::decode`], except it never returns [`DecodeError::NotJson`].
    pub fn from_value(value: Value) -> Result<Self, DecodeError> {
        let Value::Object(mut obj) = value else {
            let reason = if value.is_array() {
                "JSON-RPC batches are not supported"
            } else {
                "a message must be a JSON object"
            };
            return Err(DecodeError::NotJsonRpc { reason, id: None });
        };
        let id = obj.remove("id");
        let id_ok = matches!(id, None | Some(Value::String(_) | Value::Number(_)));
        let usable_id = id.clone().filter(|_| id_ok);
        let fail = |reason| DecodeError::NotJsonRpc {
            reason,
            id: usable_id.clone(),
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(fail("the `jsonrpc` member must be \"2.0\""));
        }
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(fail("`method` must be a string"));
            };
            let params = obj.remove("params");
            if params.as_ref().is_some_and(|p| !p.is_object()) {
                return Err(fail("`params` must be an object"));
            }
            return match id {
                None => Ok(Self::Notification { method, params }),
                Some(id) if id_ok => Ok(Self::Request { id, method, params }),
                Some(_) => Err(fail("`id` must be a string or a number")),
            };
        }
        let outcome = match (obj.remove("result"), obj.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) if error.is_object() => Err(error),
            _ => return Err(fail("neither a request, a notification nor a response")),
        };
        match id {
            Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => {
                Ok(Self::Response { id, outcome })
            }
            _ => Err(fail("a response needs an `id`")),
        }
    }

    /// The method name of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Request { method, .. } | Self::Notification { method, .. } => Some(method),
            Self::Response { .. } => None,
        }
    }
}

/// Builds a success response `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn result_response(id: Value, result: Value) -> Value {
    // Built by hand: `json!` would serialize `result` into a deep copy.
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("id".into(), id);
    obj.insert("result".into(), result);
    Value::Object(obj)
}

/// Builds an error response. `id` is `None` when the request id is unknown; the member is then
/// omitted, as MCP's `JSONRPCErrorResponse` allows.
pub fn error_response(id: Option<Value>, error: Value) -> Value {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    if let Some(id) = id {
        obj.insert("id".into(), id);
    }
    obj.insert("error".into(), error);
    Value::Object(obj)
}

/// Builds a JSON-RPC error object `{"code","message","data"?}`.
pub fn error_object(code: i64, message: impl Into<String>, data: Option<Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("code".into(), Value::from(code));
    obj.insert("message".into(), Value::from(message.into()));
    if let Some(data) = data {
        obj.insert("data".into(), data);
    }
    Value::Object(obj)
}

/// Builds a request `{"jsonrpc":"2.0","id":…,"method":…,"params"?}`.
pub fn request(id: Value, method: &str, params: Option<Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("id".into(), id);
    obj.insert("method".into(), Value::from(method));
    if let Some(params) = params {
        obj.insert("params".into(), params);
    }
    Value::Object(obj)
}

/// Builds a notification `{"jsonrpc":"2.0","method":…,"params"?}`.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("method".into(), Value::from(method));
    if let Some(params) = params {
        obj.insert("params".into(), params);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_each_kind() {
        let req = Message::decode(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#);
        assert_eq!(
            req,
            Ok(Message::Request {
                id: json!(7),
                method: "tools/list".into(),
                params: None
            })
        );
        let note = Message::decode(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(matches!(note, Ok(Message::Notification { .. })));
        let resp = Message::decode(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        assert!(matches!(resp, Ok(Message::Response { outcome: Ok(_), .. })));
        let err =
            Message::decode(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#);
        assert!(matches!(
            err,
            Ok(Message::Response {
                outcome: Err(_),
                ..
            })
        ));
    }

    #[test]
    fn rejects_non_json_and_non_jsonrpc() {
        assert!(matches!(
            Message::decode(b"{nope"),
            Err(DecodeError::NotJson(_))
        ));
        for bad in [
            &br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#[..],
            br#"{"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"42"#,
        ] {
            assert!(
                matches!(Message::decode(bad), Err(DecodeError::NotJsonRpc { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keeps_the_id_of_a_broken_request() {
        let err = Message::decode(br#"{"jsonrpc":"2.0","id":"k","method":5}"#).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NotJsonRpc {
                reason: "`method` must be a string",
                id: Some(json!("k"))
            }
        );
    }
}
