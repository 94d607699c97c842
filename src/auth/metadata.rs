//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate` challenges that
//! point clients at it (RFC 6750 §3, RFC 9728 §5.1; MCP `basic/authorization` "Authorization
//! Server Discovery").

use serde_json::{Value, json};
use url::Url;

use crate::config::AuthConfig;

/// The well-known path prefix of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The gateway's metadata document and where it is published.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    document: Value,
    url: String,
    paths: Vec<String>,
}

impl ResourceMetadata {
    /// The metadata of the resource `config.resource`.
    pub fn new(config: &AuthConfig) -> Self {
        let resource = &config.resource;
        let mut document = json!({
            "resource": resource.as_str(),
            "authorization_servers": config.authorization_servers.iter().map(Url::as_str).collect::<Vec<_>>(),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpgate MCP gateway",
        });
        if !config.scopes_supported.is_empty() {
            document["scopes_supported"] = json!(config.scopes_supported);
        }
        if let Some(jwt) = &config.jwt {
            let algs: Vec<String> = jwt.algorithms.iter().map(|a| format!("{a:?}")).collect();
            document["resource_signing_alg_values_supported"] = json!(algs);
        }
        let path = resource.path().trim_end_matches('/');
        let mut url = resource.clone();
        url.set_path(&format!("{WELL_KNOWN}{path}"));
        url.set_query(None);
        url.set_fragment(None);
        let mut paths = vec![WELL_KNOWN.to_string(), format!("{WELL_KNOWN}{path}")];
        paths.push(format!("{WELL_KNOWN}/mcp"));
        paths.sort();
        paths.dedup();
        Self {
            document,
            url: url.to_string(),
            paths,
        }
    }

    /// The JSON document.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The metadata URL announced in challenges: the path-inserted form of RFC 9728 §3.1.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Local paths the document is served at: the bare well-known path, the path-inserted form
    /// of the public URL's path, and that of `/mcp`.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// A `Bearer` challenge: `resource_metadata`, the `scope` a client should ask for (when
    /// any), and `error`/`error_description` when credentials were presented and refused.
    pub fn challenge(&self, error: Option<(&str, &str)>, scope: &[String]) -> String {
        let mut parts = Vec::new();
        if let Some((code, description)) = error {
            parts.push(format!("error=\"{}\"", quoted(code)));
            parts.push(format!("error_description=\"{}\"", quoted(description)));
        }
        if !scope.is_empty() {
            parts.push(format!("scope=\"{}\"", quoted(&scope.join(" "))));
        }
        parts.push(format!("resource_metadata=\"{}\"", quoted(&self.url)));
        format!("Bearer {}", parts.join(", "))
    }
}

/// Keeps only the characters RFC 6749 §5.2 allows in `error_description` (printable ASCII
/// without `"` and `\`).
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => ' ',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(resource: &str) -> AuthConfig {
        AuthConfig {
            resource: Url::parse(resource).unwrap(),
            jwt: None,
            api_keys: vec![],
            authorization_servers: vec![Url::parse("https://idp.example.com/").unwrap()],
            scopes_supported: vec!["mcp".into()],
            required_scopes: vec![],
            method_scopes: Default::default(),
        }
    }

    #[test]
    fn publishes_the_path_inserted_metadata_url() {
        let m = ResourceMetadata::new(&config("https://mcp.example.com/mcp"));
        assert_eq!(
            m.url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(m.document()["resource"], "https://mcp.example.com/mcp");
        assert_eq!(
            m.document()["authorization_servers"][0],
            "https://idp.example.com/"
        );
        assert!(m.paths().contains(&WELL_KNOWN.to_string()));
        let nested = ResourceMetadata::new(&config("https://x.example.com/team/mcp"));
        assert!(nested.paths().contains(&format!("{WELL_KNOWN}/team/mcp")));
    }

    #[test]
    fn challenges_quote_safely() {
        let m = ResourceMetadata::new(&config("https://mcp.example.com/mcp"));
        assert_eq!(
            m.challenge(None, &["a".into(), "b".into()]),
            "Bearer scope=\"a b\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        let c = m.challenge(Some(("invalid_token", "bad \"kid\"\n")), &[]);
        assert!(c.starts_with("Bearer error=\"invalid_token\", error_description=\"bad  kid  \""));
    }
}
