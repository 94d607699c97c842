//! Resource URIs in normal form (RFC 3986 §6.2.2, syntax-based normalization), so that policy
//! decides on the resource a URI identifies, not on how it is spelt.
//!
//! Without it, `file:///public/../secret.md` passes `allow: docs/file:///public/*` and escapes
//! `deny: docs/file:///secret*`, and `file:///%73ecret.md` escapes the deny too. The gateway
//! therefore matches policies against [`normalize`]d URIs and forwards the URI it authorized.
//!
//! What normalization does, in the RFC's order:
//! - case (§6.2.2.1): scheme and host in lowercase, percent-encoding triplets in uppercase;
//! - percent-encoding (§6.2.2.2): octets of unreserved characters (`A-Z a-z 0-9 - . _ ~`)
//!   decoded; every other triplet kept;
//! - path segments (§6.2.2.3): `.` and `..` removed (§5.2.4 `remove_dot_segments`), also
//!   above the root (`/../x` is `/x`).
//!
//! A URI that stays ambiguous after that is refused by [`normalize`]: a path whose segments,
//! once *every* octet is decoded, hold a dot-segment (`..%2Fsecret`), because a server that
//! decodes `%2F` before resolving the path would read a different resource than the one
//! authorized.

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the resource URI is ambiguous: {0}")]
pub struct AmbiguousUri(&'static str);

/// The normal form of `uri` (see the module docs).
///
/// # Errors
/// [`AmbiguousUri`] when a path segment hides a dot-segment behind an encoded separator.
pub fn normalize(uri: &str) -> Result<String, AmbiguousUri> {
    let parts = Parts::split(uri);
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = parts.scheme {
        out.push_str(&scheme.to_ascii_lowercase());
        out.push(':');
    }
    if let Some(authority) = parts.authority {
        out.push_str("//");
        out.push_str(&normalize_authority(authority));
    }
    let path = remove_dot_segments(&percent_normalize(parts.path));
    if hides_dot_segment(&path) {
        return Err(AmbiguousUri(
            "a path segment holds an encoded `/` or `\\` next to `.` or `..`",
        ));
    }
    out.push_str(&path);
    if let Some(query) = parts.query {
        out.push('?');
        out.push_str(&percent_normalize(query));
    }
    if let Some(fragment) = parts.fragment {
        out.push('#');
        out.push_str(&percent_normalize(fragment));
    }
    Ok(out)
}

/// The five components of RFC 3986 Appendix B.
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn split(uri: &'a str) -> Self {
        let (rest, fragment) = match uri.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (uri, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        // A scheme is what precedes the first `:`, if no `/` comes before it.
        let (scheme, rest) = match rest.find([':', '/']) {
            Some(i) if rest.as_bytes()[i] == b':' && i > 0 => (Some(&rest[..i]), &rest[i + 1..]),
            _ => (None, rest),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                (Some(&after[..end]), &after[end..])
            }
            None => (None, rest),
        };
        Self {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

/// Userinfo kept (percent-normalized), host lowercased, port kept.
fn normalize_authority(authority: &str) -> String {
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut out = String::with_capacity(authority.len());
    if let Some(userinfo) = userinfo {
        out.push_str(&percent_normalize(userinfo));
        out.push('@');
    }
    out.push_str(&percent_normalize(host_port).to_ascii_lowercase());
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes triplets of unreserved octets, uppercases the others; malformed `%` kept as is.
fn percent_normalize(text: &str) -> String {
    let out = map_triplets(text, |octet, triplet, out| {
        if is_unreserved(octet) {
            out.push(octet);
        } else {
            out.push(b'%');
            out.extend(triplet[1..].iter().map(u8::to_ascii_uppercase));
        }
    });
    // Only ASCII octets were decoded into the input's bytes, so it is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `text` with every well-formed `%XX` triplet replaced by what `f` writes for its octet (it
/// gets the octet, the three bytes of the triplet and the output); other bytes copied.
fn map_triplets(text: &str, f: impl Fn(u8, &[u8], &mut Vec<u8>)) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            f(hi * 16 + lo, &bytes[i..i + 3], &mut out);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    // Segment-wise form of the RFC's buffer algorithm: the same result for every input.
    let mut trailing_slash = false;
    if absolute {
        input = &input[1..];
    }
    let segments: Vec<&str> = input.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => trailing_slash = last,
            ".." => {
                output.pop();
                trailing_slash = last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&output.join("/"));
    if trailing_slash && !out.is_empty() && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Whether a segment of `path`, with every octet decoded, is or holds a dot-segment.
fn hides_dot_segment(path: &str) -> bool {
    path.split('/').filter(|s| s.contains('%')).any(|segment| {
        let decoded = percent_decode_all(segment);
        decoded
            .split(['/', '\\'])
            .any(|part| part == "." || part == "..")
    })
}

fn percent_decode_all(text: &str) -> String {
    String::from_utf8_lossy(&map_triplets(text, |octet, _, out| out.push(octet))).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalizes_case_encoding_and_dot_segments() {
        let n = |u: &str| normalize(u).unwrap();
        assert_eq!(n("file:///public/../secret.md"), "file:///secret.md");
        assert_eq!(n("file:///public/./a/../b"), "file:///public/b");
        assert_eq!(n("file:///../../etc/passwd"), "file:///etc/passwd");
        assert_eq!(n("file:///%73ecret.md"), "file:///secret.md");
        assert_eq!(n("file:///public/%2E%2E/secret.md"), "file:///secret.md");
        assert_eq!(n("FILE:///a%2fb"), "file:///a%2Fb");
        assert_eq!(
            n("HTTP://User@Example.COM:80/a"),
            "http://User@example.com:80/a"
        );
        assert_eq!(n("mock://doc/1"), "mock://doc/1");
        assert_eq!(
            n("demo://resource/static/text/1"),
            "demo://resource/static/text/1"
        );
        assert_eq!(n("urn:isbn:0451450523"), "urn:isbn:0451450523");
        assert_eq!(n("scheme:public/../secret"), "scheme:secret");
        assert_eq!(n("file:///a/b/.."), "file:///a/");
        assert_eq!(n("file:///a?x=%7e#%7E"), "file:///a?x=~#~");
        assert_eq!(n("file:///tmpl/{path}"), "file:///tmpl/{path}");
        assert_eq!(n("file:///caf%c3%a9"), "file:///caf%C3%A9");
        assert_eq!(n("file:///bad%zz"), "file:///bad%zz");
    }

    #[test]
    fn refuses_dot_segments_behind_encoded_separators() {
        for uri in [
            "file:///public/..%2Fsecret.md",
            "file:///public/..%2fsecret.md",
            "file:///public/%2E%2E%5Csecret.md",
            "file:///public/x%2F..%2F..%2Fsecret",
        ] {
            assert!(normalize(uri).is_err(), "{uri}");
        }
        assert!(normalize("github://repo/a%2Fb").is_ok());
    }

    proptest! {
        /// Normal forms are fixed points, and never keep a dot-segment.
        #[test]
        fn idempotent_and_dot_free(path in "(/|[a-z]{1,3}|\\.|\\.\\.|%2[eE]|%41){0,12}") {
            let uri = format!("file:///{path}");
            if let Ok(once) = normalize(&uri) {
                prop_assert_eq!(normalize(&once).unwrap(), once.clone());
                let after_root = &once["file:///".len() - 1..];
                prop_assert!(!after_root.split('/').any(|s| s == "." || s == ".."), "{}", once);
            }
        }
    }
}
