//! Client-facing names for upstream entries (DESIGN.md §5.1).
//!
//! Tools and prompts become `{upstream}{separator}{name}`; resources and templates become
//! `{upstream}+{uri}`. Whether the prefix is applied depends on the prefix mode and the number of
//! upstreams. A name longer than [`NAME_BUDGET`] characters is shortened deterministically:
//! truncated, then suffixed with `_` and 8 hex digits of the SHA-256 of the full name, so the
//! alias is the same on every replica and after every restart.

use sha2::{Digest, Sha256};

use crate::config::{NamespacingConfig, PrefixMode, UpstreamId};

/// The longest client-facing tool or prompt name, characters (what Claude and OpenAI accept).
pub const NAME_BUDGET: usize = 64;

/// Hex digits of hash in a shortened name.
const HASH_DIGITS: usize = 8;

/// Separator between upstream id and URI in resource and template URIs.
pub const URI_SEPARATOR: char = '+';

/// Builds and parses client-facing names.
#[derive(Debug, Clone)]
pub struct Namespacer {
    separator: String,
    prefixed: bool,
}

impl Namespacer {
    /// A namespacer for `cfg` in front of `upstream_count` upstreams.
    pub fn new(cfg: &NamespacingConfig, upstream_count: usize) -> Self {
        let prefixed = match cfg.prefix {
            PrefixMode::Always => true,
            PrefixMode::Never => false,
            PrefixMode::Conditional => upstream_count != 1,
        };
        Self {
            separator: cfg.separator.clone(),
            prefixed,
        }
    }

    /// Whether names carry the upstream prefix.
    pub fn is_prefixed(&self) -> bool {
        self.prefixed
    }

    /// The client-facing name of tool or prompt `name` of `upstream`, within [`NAME_BUDGET`].
    /// Returns the name and whether it was shortened.
    pub fn name(&self, upstream: &UpstreamId, name: &str) -> (String, bool) {
        let full = if self.prefixed {
            format!("{upstream}{}{name}", self.separator)
        } else {
            name.to_string()
        };
        shorten(full)
    }

    /// The client-facing URI (or URI template) of `uri` of `upstream`.
    pub fn uri(&self, upstream: &UpstreamId, uri: &str) -> String {
        if self.prefixed {
            format!("{upstream}{URI_SEPARATOR}{uri}")
        } else {
            uri.to_string()
        }
    }

    /// Splits a prefixed client-facing URI into upstream id and upstream URI. `None` when names
    /// are not prefixed or the URI has no prefix.
    pub fn split_uri<'a>(&self, wire: &'a str) -> Option<(&'a str, &'a str)> {
        if !self.prefixed {
            return None;
        }
        let (upstream, uri) = wire.split_once(URI_SEPARATOR)?;
        UpstreamId::parse(upstream).ok().map(|_| (upstream, uri))
    }
}

/// Applies the length budget: `full` itself when short enough, else a stable alias.
fn shorten(full: String) -> (String, bool) {
    if full.chars().count() <= NAME_BUDGET {
        return (full, false);
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash = base16ct::lower::encode_string(&digest[..HASH_DIGITS / 2]);
    let keep: String = full.chars().take(NAME_BUDGET - HASH_DIGITS - 1).collect();
    (format!("{keep}_{hash}"), true)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ns(prefix: PrefixMode, count: usize) -> Namespacer {
        Namespacer::new(
            &NamespacingConfig {
                separator: "__".into(),
                prefix,
            },
            count,
        )
    }

    fn id(s: &str) -> UpstreamId {
        UpstreamId::parse(s).unwrap()
    }

    #[test]
    fn prefix_modes() {
        assert_eq!(ns(PrefixMode::Conditional, 1).name(&id("a"), "t").0, "t");
        assert_eq!(ns(PrefixMode::Conditional, 2).name(&id("a"), "t").0, "a__t");
        assert_eq!(ns(PrefixMode::Always, 1).name(&id("a"), "t").0, "a__t");
        assert_eq!(ns(PrefixMode::Never, 3).name(&id("a"), "t").0, "t");
        assert_eq!(
            ns(PrefixMode::Always, 1).uri(&id("docs"), "file:///x"),
            "docs+file:///x"
        );
        assert_eq!(
            ns(PrefixMode::Never, 2).uri(&id("docs"), "file:///x"),
            "file:///x"
        );
    }

    #[test]
    fn splits_prefixed_uris() {
        let n = ns(PrefixMode::Always, 2);
        assert_eq!(
            n.split_uri("docs+file:///a+b"),
            Some(("docs", "file:///a+b"))
        );
        assert_eq!(n.split_uri("file:///x"), None);
        assert_eq!(n.split_uri("Bad_Id+x"), None);
        assert_eq!(ns(PrefixMode::Never, 2).split_uri("docs+x"), None);
    }

    #[test]
    fn long_names_get_a_stable_alias() {
        let n = ns(PrefixMode::Always, 2);
        let long = "x".repeat(80);
        let (a, shortened) = n.name(&id("github"), &long);
        assert!(shortened);
        assert_eq!(a.chars().count(), NAME_BUDGET);
        assert_eq!(n.name(&id("github"), &long).0, a, "deterministic");
        let (b, _) = n.name(&id("github"), &format!("{long}y"));
        assert_ne!(a, b, "different names get different aliases");
    }

    proptest! {
        #[test]
        fn names_fit_the_budget_and_uris_round_trip(
            up in "[a-z0-9][a-z0-9-]{0,31}",
            name in "[A-Za-z0-9_.-]{1,120}",
            uri in "[a-z]{1,8}://[ -~]{0,60}",
        ) {
            let n = ns(PrefixMode::Always, 2);
            let upstream = id(&up);
            let (wire, shortened) = n.name(&upstream, &name);
            prop_assert!(wire.chars().count() <= NAME_BUDGET);
            prop_assert_eq!(shortened, wire != format!("{up}__{name}"));
            let wire_uri = n.uri(&upstream, &uri);
            prop_assert_eq!(n.split_uri(&wire_uri), Some((up.as_str(), uri.as_str())));
        }
    }
}
