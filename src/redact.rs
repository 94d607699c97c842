//! Keeping secrets out of logs, error details and `mcpgate catalogue`: URLs lose their userinfo
//! and query.
//!
//! Upstream, token endpoint and JWKS URLs come from the configuration, often with `${ENV}`
//! secrets expanded into them (`https://user:pass@host/mcp`, `...?api_key=...`), and HTTP
//! libraries print the full URL in their errors. Every error detail that may hold one goes
//! through [`text`] (the upstream error type does so on construction: [`Detail`]), and URLs
//! that are logged on purpose through [`url()`]. What is kept: scheme, host, port and path — enough
//! to tell which endpoint failed.

use std::fmt;

use url::Url;

/// What replaces a query string.
const QUERY: &str = "?[redacted]";

/// `url` without userinfo and fragment, its query replaced by a marker.
pub fn url(url: &Url) -> String {
    let mut clean = url.clone();
    let had_query = clean.query().is_some();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    let mut out = String::from(clean.as_str());
    if had_query {
        out.push_str(QUERY);
    }
    out
}

/// `text` with every absolute URL in it (`scheme://...`, up to whitespace or a closing
/// delimiter) passed through [`url()`]; the rest is unchanged.
pub fn text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` before `://`.
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | '<' | ','))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..scheme_start]);
        let candidate = &rest[scheme_start..end];
        match Url::parse(candidate) {
            Ok(parsed) if scheme_start < at => out.push_str(&url(&parsed)),
            _ => out.push_str(candidate),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// An error and its sources, `: `-separated, redacted by [`text`].
pub fn error(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    text(&out)
}

/// Text that was redacted when it was made: error details that may quote a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Detail(String);

impl Detail {
    /// The redacted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Detail {
    fn from(s: String) -> Self {
        Self(text(&s))
    }
}

impl From<&str> for Detail {
    fn from(s: &str) -> Self {
        Self(text(s))
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query() {
        let u =
            Url::parse("https://user:s3cret@api.example.com:8443/mcp?api_key=s3cret#frag").unwrap();
        assert_eq!(url(&u), "https://api.example.com:8443/mcp?[redacted]");
        let plain = Url::parse("http://127.0.0.1:3001/mcp").unwrap();
        assert_eq!(url(&plain), "http://127.0.0.1:3001/mcp");
    }

    #[test]
    fn text_redacts_every_url_it_holds() {
        let t = "error sending request for url (https://u:p@h/mcp?token=abc): connect refused; \
                 retry http://x/y?k=v, then 'ftp://a:b@c/d'";
        let r = text(t);
        assert!(
            !r.contains("abc") && !r.contains("u:p") && !r.contains("k=v"),
            "{r}"
        );
        assert!(!r.contains("a:b"), "{r}");
        assert!(
            r.starts_with(
                "error sending request for url (https://h/mcp?[redacted]): connect refused"
            ),
            "{r}"
        );
        assert_eq!(text("no url here"), "no url here");
        assert_eq!(text("not a :// url"), "not a :// url");
    }

    #[tokio::test]
    async fn reqwest_errors_are_redacted() {
        let client = reqwest::Client::new();
        let e = client
            .get("http://user:hunter2@127.0.0.1:9/mcp?key=hunter2")
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("hunter2"),
            "reqwest prints the URL: {e}"
        );
        let r = error(&e);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("127.0.0.1:9/mcp"), "{r}");
    }
}
