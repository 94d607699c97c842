//! Gateway-owned pagination cursors for merged lists.
//!
//! A cursor names the last entry of the page it ends (key-set pagination over the sorted merged
//! list), so a page boundary stays correct when entries are added or removed between requests.
//! Format: URL-safe base64 of `v1:{list}:{last key}`. Cursors are opaque to clients; anything not
//! issued by this scheme for the same list is rejected (-32602).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ListKind;

/// Encodes the cursor that continues `kind` after `last_key`.
pub fn encode(kind: ListKind, last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{last_key}", kind.method()))
}

/// A cursor this gateway did not issue for the list it was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

/// Decodes a cursor for `kind` into the last key of the previous page.
///
/// # Errors
/// [`InvalidCursor`] when the cursor is not valid base64, not this format, or for another list.
pub fn decode(kind: ListKind, cursor: &str) -> Result<String, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
    let rest = text.strip_prefix("v1:").ok_or(InvalidCursor)?;
    let key = rest
        .strip_prefix(kind.method())
        .and_then(|r| r.strip_prefix(':'))
        .ok_or(InvalidCursor)?;
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_cursors() {
        let c = encode(ListKind::Tools, "time__get_current_time");
        assert_eq!(
            decode(ListKind::Tools, &c).unwrap(),
            "time__get_current_time"
        );
        assert!(
            decode(ListKind::Prompts, &c).is_err(),
            "cursor of another list"
        );
        assert!(decode(ListKind::Tools, "not base64!").is_err());
        assert!(decode(ListKind::Tools, &URL_SAFE_NO_PAD.encode("v2:tools/list:x")).is_err());
    }
}
