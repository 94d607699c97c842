//! Static API keys for machine clients: only the SHA-256 of each key is configured, and a
//! presented key is compared by digest in constant time against every configured one.

use std::sync::Arc;

use serde_json::Map;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Principal;
use crate::config::ApiKeyConfig;

/// The configured keys, each with the principal it authenticates.
pub struct ApiKeys {
    keys: Vec<([u8; 32], Arc<Principal>)>,
}

impl ApiKeys {
    /// The keys of `config`.
    pub fn new(config: &[ApiKeyConfig]) -> Self {
        let keys = config
            .iter()
            .map(|k| {
                let principal = Principal {
                    subject: format!("api-key:{}", k.name),
                    issuer: Some(API_KEY_ISSUER.into()),
                    client_id: Some(k.name.clone()),
                    scopes: k.scopes.clone(),
                    groups: k.groups.clone(),
                    roles: Vec::new(),
                    api_key: Some(k.name.clone()),
                    mtls_identity: None,
                    claims: Arc::new(Map::new()),
                    token: None,
                };
                (k.sha256, Arc::new(principal))
            })
            .collect();
        Self { keys }
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of `presented`, if it is one of the keys. Every configured digest is
    /// compared, whatever matches, so timing says nothing about which key is close.
    pub fn find(&self, presented: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (key, principal) in &self.keys {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(Arc::clone(principal));
            }
        }
        found
    }
}

/// The `issuer` of principals authenticated by an API key.
pub const API_KEY_ISSUER: &str = "mcpgate:api-key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_key_by_its_digest_only() {
        let sha256: [u8; 32] = Sha256::digest(b"mcpk_secret").into();
        let keys = ApiKeys::new(&[ApiKeyConfig {
            name: "ci".into(),
            sha256,
            scopes: vec!["mcp".into()],
            groups: vec![],
        }]);
        let p = keys.find("mcpk_secret").unwrap();
        assert_eq!(p.subject, "api-key:ci");
        assert_eq!(p.api_key.as_deref(), Some("ci"));
        assert!(keys.find("mcpk_secreT").is_none());
        assert!(keys.find("").is_none());
    }
}
