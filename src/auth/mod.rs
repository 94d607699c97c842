//! Who is calling. This build has no authentication yet: every caller is the anonymous
//! principal, and the listener warns about it at start. The [`Principal`] type is what later
//! stages (sessions, policy, audit) read, so adding authentication changes only how it is made.

use sha2::{Digest, Sha256};

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Subject (`sub` claim); `anonymous` without authentication.
    pub subject: String,
    /// Issuer (`iss` claim), if any.
    pub issuer: Option<String>,
}

impl Principal {
    /// The caller when no authentication is configured.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            issuer: None,
        }
    }

    /// Hex SHA-256 of issuer and subject: binds a legacy session to its principal without
    /// putting the identity itself in the token.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.issuer.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(self.subject.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
