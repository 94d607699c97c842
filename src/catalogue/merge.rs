//! Building one merged, namespaced, sorted [`Snapshot`] from every upstream's last good listing.
//! Pure: no I/O, so it is tested directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::namespace::Namespacer;
use super::{Entry, ListKind, Snapshot, UpstreamListing};
use crate::config::UpstreamId;

/// Merges listings (in configuration order) into a snapshot.
///
/// Entries whose client-facing key is claimed by more than one upstream (prefix mode `never`, or
/// an alias collision) are left out and reported in [`Snapshot::conflicts`]: silently routing a
/// name to one of several owners would be shadowing.
pub fn merge(ns: &Namespacer, listings: &[(UpstreamId, Arc<UpstreamListing>)]) -> Snapshot {
    let mut lists: [Vec<Arc<Entry>>; 4] = Default::default();
    let mut conflicts = Vec::new();
    for kind in ListKind::ALL {
        let mut by_key: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (upstream, listing) in listings {
            for raw in &listing.lists[kind.index()] {
                if let Some(entry) = namespaced_entry(ns, kind, upstream, raw) {
                    by_key.entry(entry.key.clone()).or_default().push(entry);
                }
            }
        }
        for (key, mut entries) in by_key {
            if entries.len() == 1 {
                lists[kind.index()].extend(entries.pop().map(Arc::new));
            } else {
                let owners: Vec<String> = entries.iter().map(|e| e.upstream.to_string()).collect();
                tracing::error!(kind = kind.method(), name = %key, upstreams = ?owners,
                    "name offered by several upstreams; serving none of them");
                conflicts.push((kind, key, owners));
            }
        }
    }
    let index = [ListKind::Tools, ListKind::Prompts, ListKind::Resources].map(|kind| {
        lists[kind.index()]
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect::<HashMap<_, _>>()
    });
    Snapshot {
        lists,
        index,
        conflicts,
        upstreams: listings
            .iter()
            .map(|(id, l)| (id.clone(), Arc::clone(l)))
            .collect(),
        namespacer: ns.clone(),
        views: super::views::Views::new(),
    }
}

/// The namespaced entry for one raw upstream list item; `None` (and a warning) when the item
/// lacks its key field.
fn namespaced_entry(
    ns: &Namespacer,
    kind: ListKind,
    upstream: &UpstreamId,
    raw: &Value,
) -> Option<Entry> {
    let field = kind.key_field();
    let Some(original) = raw.get(field).and_then(Value::as_str) else {
        tracing::warn!(upstream = %upstream, kind = kind.method(), "ignoring a list entry without `{field}`");
        return None;
    };
    let param_headers = match kind {
        ListKind::Tools => {
            let schema = raw.get("inputSchema").unwrap_or(&Value::Null);
            match crate::param_headers::annotations(schema) {
                Ok(found) => found,
                Err(why) => {
                    tracing::warn!(upstream = %upstream, tool = original, reason = %why,
                        "leaving out a tool with invalid x-mcp-header annotations");
                    return None;
                }
            }
        }
        _ => Vec::new(),
    };
    let (key, aliased) = match kind {
        ListKind::Tools | ListKind::Prompts => ns.name(upstream, original),
        ListKind::Resources | ListKind::ResourceTemplates => (ns.uri(upstream, original), false),
    };
    let mut value = raw.clone();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(field.into(), Value::from(key.clone()));
    }
    let target = super::canonical_target(kind, upstream, original);
    if target.is_none() {
        tracing::warn!(upstream = %upstream, kind = kind.method(), uri = original,
            "the URI is ambiguous (an encoded separator next to a dot-segment): no policy allows it");
    }
    // Serialized once here: a list page is these bytes joined, not a copy of every value.
    let json = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
    Some(Entry {
        key,
        upstream: upstream.clone(),
        original: original.to_string(),
        aliased,
        value,
        json,
        param_headers,
        target,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{NamespacingConfig, PrefixMode};

    fn listing(tools: Vec<Value>, resources: Vec<Value>) -> Arc<UpstreamListing> {
        Arc::new(UpstreamListing {
            lists: [tools, vec![], resources, vec![]],
            ..UpstreamListing::default()
        })
    }

    fn ns(prefix: PrefixMode, n: usize) -> Namespacer {
        Namespacer::new(
            &NamespacingConfig {
                separator: "__".into(),
                prefix,
            },
            n,
        )
    }

    #[test]
    fn merges_sorted_and_namespaced() {
        let a = UpstreamId::parse("time").unwrap();
        let b = UpstreamId::parse("alpha").unwrap();
        let snap = merge(
            &ns(PrefixMode::Conditional, 2),
            &[
                (
                    a.clone(),
                    listing(
                        vec![json!({"name": "now", "inputSchema": {"type": "object"}})],
                        vec![],
                    ),
                ),
                (
                    b.clone(),
                    listing(
                        vec![json!({"name": "z"})],
                        vec![json!({"uri": "file:///x", "name": "x"})],
                    ),
                ),
            ],
        );
        let tools: Vec<_> = snap.lists[0].iter().map(|e| e.key.as_str()).collect();
        assert_eq!(tools, ["alpha__z", "time__now"]);
        assert_eq!(
            snap.lists[0][1].value["inputSchema"],
            json!({"type": "object"})
        );
        assert_eq!(snap.lists[2][0].value["uri"], "alpha+file:///x");
        assert_eq!(
            snap.tool("time__now").map(|e| e.original.as_str()),
            Some("now")
        );
    }

    #[test]
    fn never_mode_collisions_serve_neither() {
        let a = UpstreamId::parse("a").unwrap();
        let b = UpstreamId::parse("b").unwrap();
        let snap = merge(
            &ns(PrefixMode::Never, 2),
            &[
                (
                    a,
                    listing(
                        vec![json!({"name": "dup"}), json!({"name": "only-a"})],
                        vec![],
                    ),
                ),
                (b, listing(vec![json!({"name": "dup"})], vec![])),
            ],
        );
        assert!(snap.tool("dup").is_none());
        assert!(snap.tool("only-a").is_some());
        assert_eq!(snap.conflicts.len(), 1);
    }
}
