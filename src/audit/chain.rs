//! The hash chain that makes the audit log tamper-evident (DESIGN.md §5.11).
//!
//! A sealed record is one line: `{"seq":N,"prev":"<hex>",<the record's members>,"hash":"<hex>"}`.
//! `hash` is SHA-256 — HMAC-SHA256 (RFC 2104) with the configured key — over the line's exact
//! bytes without its trailing `,"hash":"…"` member (so they end in `}`): the *canonical bytes*.
//! They include `seq` and `prev`, the previous record's `hash` (64 zeros before the first), so
//! editing, deleting, inserting or reordering a record breaks the chain at that record.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `prev` of the first record of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// The fixed-size tail of a sealed line: `,"hash":"` + 64 hex digits + `"}`.
const HASH_MEMBER_LEN: usize = 9 + 64 + 2;

/// The position of a chain: the last record's `seq` and `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// `seq` of the last record (0 before the first).
    pub seq: u64,
    /// `hash` of the last record ([`GENESIS`] before the first).
    pub hash: [u8; 32],
}

impl Tail {
    /// Before the first record.
    pub const START: Self = Self {
        seq: 0,
        hash: GENESIS,
    };
}

/// Seals records into a chain, one after the other.
pub struct Chain {
    key: Option<[u8; 32]>,
    tail: Tail,
}

impl Chain {
    /// A chain continuing after `tail`, keyed with `key` (HMAC) or not (plain SHA-256).
    pub fn new(key: Option<[u8; 32]>, tail: Tail) -> Self {
        Self { key, tail }
    }

    /// Where the chain stands.
    pub fn tail(&self) -> Tail {
        self.tail
    }

    /// Appends the sealed line (with its `\n`) of `record`, a JSON object, to `out`; the chain
    /// moves on by one.
    pub fn seal(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let seq = self.tail.seq + 1;
        let start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        push_hex(out, &self.tail.hash);
        out.extend_from_slice(b"\"");
        match record {
            [b'{', b'}'] => {}
            [b'{', rest @ ..] => {
                out.push(b',');
                out.extend_from_slice(&rest[..rest.len() - 1]);
            }
            _ => {}
        }
        out.push(b'}');
        let hash = digest(self.key.as_ref(), &out[start..]);
        out.pop();
        out.extend_from_slice(b",\"hash\":\"");
        push_hex(out, &hash);
        out.extend_from_slice(b"\"}\n");
        self.tail = Tail { seq, hash };
    }
}

/// SHA-256, or HMAC-SHA256 with `key`, of `bytes`.
pub fn digest(key: Option<&[u8; 32]>, bytes: &[u8]) -> [u8; 32] {
    match key {
        Some(key) => {
            #[allow(clippy::expect_used)]
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(bytes);
            mac.finalize().into_bytes().into()
        }
        None => Sha256::digest(bytes).into(),
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8; 32]) {
    let mut hex = [0u8; 64];
    if let Ok(text) = base16ct::lower::encode(bytes, &mut hex) {
        out.extend_from_slice(text);
    }
}

/// One sealed line taken apart (not yet checked against a key or its neighbours).
#[derive(Debug)]
pub struct Sealed {
    /// Its `seq`.
    pub seq: u64,
    /// Its `prev`.
    pub prev: [u8; 32],
    /// Its `hash`.
    pub hash: [u8; 32],
    /// Its canonical bytes.
    pub canonical: Vec<u8>,
}

impl Sealed {
    /// Whether `hash` is the digest of the canonical bytes under `key`.
    pub fn hash_matches(&self, key: Option<&[u8; 32]>) -> bool {
        use subtle::ConstantTimeEq as _;
        digest(key, &self.canonical).ct_eq(&self.hash).into()
    }
}

/// Why a line is not a sealed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// No `,"hash":"<64 hex>"}` at its end.
    #[error("not a sealed record: no hash member at its end")]
    NoHash,
    /// Not JSON, or without an integer `seq` and a hex `prev`.
    #[error("not a sealed record: {0}")]
    Malformed(String),
}

/// Takes a sealed line (without its `\n`) apart.
///
/// # Errors
/// [`LineError`] when it is not one.
pub fn open(line: &[u8]) -> Result<Sealed, LineError> {
    if line.len() < HASH_MEMBER_LEN + 2 {
        return Err(LineError::NoHash);
    }
    let (head, member) = line.split_at(line.len() - HASH_MEMBER_LEN);
    let hex = member
        .strip_prefix(b",\"hash\":\"")
        .and_then(|m| m.strip_suffix(b"\"}"))
        .ok_or(LineError::NoHash)?;
    let hash = hex32(hex).ok_or(LineError::NoHash)?;
    let mut canonical = Vec::with_capacity(head.len() + 1);
    canonical.extend_from_slice(head);
    canonical.push(b'}');
    #[derive(Deserialize)]
    struct Position<'a> {
        seq: u64,
        #[serde(borrow)]
        prev: &'a str,
    }
    let position: Position<'_> =
        serde_json::from_slice(&canonical).map_err(|e| LineError::Malformed(e.to_string()))?;
    let prev = hex32(position.prev.as_bytes())
        .ok_or_else(|| LineError::Malformed("`prev` is not 64 hex digits".into()))?;
    Ok(Sealed {
        seq: position.seq,
        prev,
        hash,
        canonical,
    })
}

fn hex32(hex: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    base16ct::lower::decode(hex, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_open_and_chain() {
        let mut chain = Chain::new(None, Tail::START);
        let mut out = Vec::new();
        chain.seal(br#"{"event":"call","n":1}"#, &mut out);
        chain.seal(br#"{"event":"call","n":2}"#, &mut out);
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let first = open(lines[0]).expect("sealed");
        let second = open(lines[1]).expect("sealed");
        assert_eq!((first.seq, first.prev), (1, GENESIS));
        assert_eq!((second.seq, second.prev), (2, first.hash));
        assert!(first.hash_matches(None) && second.hash_matches(None));
        assert!(
            !first.hash_matches(Some(&[7; 32])),
            "another key, another hash"
        );
        assert_eq!(
            chain.tail(),
            Tail {
                seq: 2,
                hash: second.hash
            }
        );
        let text = std::str::from_utf8(lines[0]).expect("utf-8");
        assert!(text.starts_with(r#"{"seq":1,"prev":"0000"#), "{text}");
        let value: serde_json::Value = serde_json::from_str(text).expect("a JSON line");
        assert_eq!(value["n"], 1);
    }

    #[test]
    fn an_edited_byte_breaks_the_hash() {
        let key = [3u8; 32];
        let mut chain = Chain::new(Some(key), Tail::START);
        let mut out = Vec::new();
        chain.seal(br#"{"outcome":"denied"}"#, &mut out);
        out.pop();
        assert!(open(&out).expect("sealed").hash_matches(Some(&key)));
        let edited = String::from_utf8(out)
            .expect("utf-8")
            .replace("denied", "ok");
        assert!(
            !open(edited.as_bytes())
                .expect("sealed")
                .hash_matches(Some(&key))
        );
        assert_eq!(open(b"{\"seq\":1}").err(), Some(LineError::NoHash));
    }
}
