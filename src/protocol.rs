//! MCP protocol revisions, eras and the names both eras put on the wire.
//!
//! MCP has two eras (DESIGN.md §2): *legacy* revisions negotiate once with `initialize` and keep
//! an `Mcp-Session-Id`; the *modern* revision (2026-07-28) carries version and capabilities in
//! every request's `_meta` and has no session. This module names the revisions and keys; it holds
//! no behaviour beyond version classification.

/// Modern (stateless) revisions mcpgate speaks, newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// Legacy (`initialize` + session) revisions mcpgate speaks over Streamable HTTP, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The newest modern revision: what mcpgate speaks to modern upstreams.
pub const LATEST_MODERN: &str = MODERN_VERSIONS[0];

/// The newest legacy revision: offered when a legacy client asks for one mcpgate does not know.
pub const LATEST_LEGACY: &str = LEGACY_VERSIONS[0];

/// `_meta` key carrying a modern request's protocol version (2026-07-28 `RequestMetaObject`).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying a modern request's client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying a modern request's client implementation info.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying a modern request's desired log level.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key carrying the server implementation info on a modern result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// HTTP header: protocol revision of the request (both eras since 2025-06-18).
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// HTTP header: legacy session id.
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// HTTP header: the JSON-RPC method, mirrored from the body (modern).
pub const HEADER_METHOD: &str = "mcp-method";
/// HTTP header: `params.name` or `params.uri`, mirrored from the body (modern).
pub const HEADER_NAME: &str = "mcp-name";

/// The two eras of MCP (DESIGN.md §2); `legacy` and `modern` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// `initialize` handshake, `Mcp-Session-Id`, revisions up to 2025-11-25.
    Legacy,
    /// Per-request `_meta`, no session, revision 2026-07-28.
    Modern,
}

impl Era {
    /// The era a revision string belongs to, or `None` for a revision mcpgate does not speak.
    pub fn of_version(version: &str) -> Option<Self> {
        if MODERN_VERSIONS.contains(&version) {
            Some(Self::Modern)
        } else if LEGACY_VERSIONS.contains(&version) {
            Some(Self::Legacy)
        } else {
            None
        }
    }

    /// A short label for logs and metrics: `legacy` or `modern`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        }
    }
}

/// Every revision mcpgate speaks, modern first: the `supported` list of
/// `UnsupportedProtocolVersionError` and `supportedVersions` of `server/discover`.
pub fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .chain(LEGACY_VERSIONS)
        .copied()
        .collect()
}

/// The legacy revision to answer an `initialize` asking for `requested` with
/// (2025-11-25 `basic/lifecycle` "Version Negotiation"): the same one if supported, else the
/// newest legacy revision.
pub fn negotiate_legacy(requested: &str) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .copied()
        .find(|v| *v == requested)
        .unwrap_or(LATEST_LEGACY)
}

/// Methods a 2026-07-28 server answers; anything else is -32601 with HTTP 404. The tasks
/// extension's methods are included: they are gated on the extension per request
/// ([`EXTENSION_TASKS`]). Its removed v1 methods (`tasks/result`, `tasks/list`) are not.
pub fn is_modern_method(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "tools/call"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/read"
            | "resources/templates/list"
            | "completion/complete"
            | "subscriptions/listen"
    ) || is_task_method(method)
}

/// The tasks extension's identifier (SEP-2663), the key under `capabilities.extensions` of
/// both sides in protocol version 2026-07-28.
pub const EXTENSION_TASKS: &str = "io.modelcontextprotocol/tasks";

/// The 2026-07-28 tasks-extension methods that address one task by `params.taskId`.
pub fn is_task_method(method: &str) -> bool {
    matches!(method, "tasks/get" | "tasks/update" | "tasks/cancel")
}

/// The body field a modern request mirrors into `Mcp-Name` (2026-07-28 Streamable HTTP,
/// "Standard Headers"; SEP-2663 "Routing Headers" for the tasks methods), if any.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        m if is_task_method(m) => Some("taskId"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_versions() {
        assert_eq!(Era::of_version("2026-07-28"), Some(Era::Modern));
        assert_eq!(Era::of_version("2025-06-18"), Some(Era::Legacy));
        assert_eq!(Era::of_version("1999-01-01"), None);
        assert_eq!(negotiate_legacy("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate_legacy("2024-11-05"), LATEST_LEGACY);
        assert_eq!(all_versions()[0], LATEST_MODERN);
    }
}

/// Encodes a value for `Mcp-Name` / `Mcp-Param-*` (2026-07-28 Streamable HTTP, "Value
/// Encoding"): plain when it is visible ASCII or inner spaces and does not look like the
/// sentinel, else `=?base64?…?=` of its UTF-8 bytes.
pub fn encode_header_value(value: &str) -> String {
    use base64::Engine as _;
    let looks_encoded = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded;
    if plain {
        value.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// Decodes an `Mcp-Name` / `Mcp-Param-*` header value: the sentinel form is base64-decoded to
/// UTF-8, anything else is taken as is.
///
/// # Errors
/// When the sentinel form holds invalid base64 or invalid UTF-8.
pub fn decode_header_value(value: &str) -> Result<String, &'static str> {
    use base64::Engine as _;
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "invalid base64 in header value")?;
            String::from_utf8(bytes).map_err(|_| "base64 header value is not UTF-8")
        }
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod header_value_tests {
    use super::*;

    #[test]
    fn encodes_like_the_spec_table() {
        assert_eq!(encode_header_value("us-west1"), "us-west1");
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            encode_header_value("line1\nline2"),
            "=?base64?bGluZTEKbGluZTI=?="
        );
        assert_eq!(
            encode_header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        for v in ["us-west1", "Hello, 世界", " padded ", "=?base64?literal?="] {
            assert_eq!(decode_header_value(&encode_header_value(v)).unwrap(), v);
        }
        assert!(decode_header_value("=?base64?!!?=").is_err());
    }
}
