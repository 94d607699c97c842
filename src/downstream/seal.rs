//! Authenticated encryption of small JSON values handed to clients: sealed session ids and
//! MRTR `requestState`. ChaCha20-Poly1305 (RustCrypto) with a random 96-bit nonce per token and
//! the value's purpose as associated data, so a token sealed for one purpose never opens as
//! another. Tokens are URL-safe base64 of `nonce ‖ ciphertext ‖ tag`: visible ASCII.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;

const NONCE_LEN: usize = 12;
/// Longest token accepted for opening, characters.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Seals and opens values under one key. Cloning shares nothing mutable.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// A sealer with `key`, or a fresh random key when `None` (tokens then do not survive a
    /// restart or move between replicas).
    pub fn new(key: Option<[u8; 32]>) -> Self {
        let key = key.unwrap_or_else(|| {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            k
        });
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Seals `value` for `purpose`.
    pub fn seal<T: Serialize>(&self, purpose: &[u8], value: &T) -> String {
        let plaintext = serde_json::to_vec(value).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: purpose,
                },
            )
            .unwrap_or_default();
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// Opens a token sealed for `purpose`; `None` when it is malformed, forged, altered, sealed
    /// under another key or for another purpose.
    pub fn open<T: DeserializeOwned>(&self, purpose: &[u8], token: &str) -> Option<T> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose,
                },
            )
            .ok()?;
        serde_json::from_slice(&plaintext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_do_not_mix() {
        let s = Sealer::new(None);
        let token = s.seal(b"a", &vec![1, 2, 3]);
        assert_eq!(s.open::<Vec<i32>>(b"a", &token), Some(vec![1, 2, 3]));
        assert_eq!(s.open::<Vec<i32>>(b"b", &token), None);
    }
}
