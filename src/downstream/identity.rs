//! What the gateway says about itself to clients: merged capabilities and instructions
//! (answers to `initialize` and `server/discover`), from the upstreams the caller may see.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::catalogue::{ListKind, Snapshot, UpstreamListing};
use crate::config::UpstreamId;
use crate::policy::Grant;
use crate::protocol::{EXTENSION_TASKS, Era};

/// What one caller may learn about the upstreams behind the gateway: only the upstreams it can
/// see at least one entry of (a tool, prompt, resource or template its policy lists). An
/// upstream the caller can see nothing of does not exist for it — its instructions and the
/// capabilities only it brings are left out, as its entries are.
pub struct View<'a> {
    snapshot: &'a Snapshot,
    /// Per entry of `snapshot.upstreams`: whether the caller sees it.
    visible: Vec<bool>,
}

impl<'a> View<'a> {
    /// The view of `snapshot` for the caller holding `grant` (everything without policies).
    pub fn new(snapshot: &'a Snapshot, grant: &Grant) -> Self {
        let count = snapshot.upstreams.len();
        if !grant.has_policies() {
            return Self {
                snapshot,
                visible: vec![true; count],
            };
        }
        let mut visible = vec![false; count];
        let mut seen = 0;
        'lists: for kind in ListKind::ALL {
            for entry in snapshot.entries(kind) {
                let Some(i) = snapshot
                    .upstreams
                    .iter()
                    .position(|(id, _)| *id == entry.upstream)
                else {
                    continue;
                };
                if !visible[i] && grant.lists(kind, entry) {
                    visible[i] = true;
                    seen += 1;
                    if seen == count {
                        break 'lists;
                    }
                }
            }
        }
        Self { snapshot, visible }
    }

    /// The listings of the upstreams the caller sees.
    fn listings(&self) -> impl Iterator<Item = &'a (UpstreamId, Arc<UpstreamListing>)> + '_ {
        self.snapshot
            .upstreams
            .iter()
            .zip(&self.visible)
            .filter(|(_, v)| **v)
            .map(|(u, _)| u)
    }

    /// The gateway's `ServerCapabilities` for a client of `era`: `tools` always; `prompts`,
    /// `resources`, `completions` and `logging` when a visible upstream announced them;
    /// `resources.subscribe` when one supports it. `listChanged` is true: the gateway itself
    /// announces changes of the merged lists (legacy standalone stream, modern
    /// `subscriptions/listen`). Tasks, when a visible upstream supports them: legacy clients
    /// get the 2025-11-25 `tasks` capability, modern clients the extension under `extensions`.
    pub fn capabilities(&self, era: Era) -> Value {
        let announced = |path: &[&str]| {
            self.listings().any(|(_, l)| {
                l.info.as_ref().is_some_and(|i| {
                    path.iter()
                        .try_fold(&i.capabilities, |v, k| v.get(*k))
                        .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
                })
            })
        };
        let mut caps = Map::new();
        let list = |extra: Option<(&str, bool)>| {
            let mut obj = Map::new();
            obj.insert("listChanged".into(), Value::Bool(true));
            if let Some((key, true)) = extra {
                obj.insert(key.into(), Value::Bool(true));
            }
            Value::Object(obj)
        };
        caps.insert("tools".into(), list(None));
        if announced(&["prompts"]) {
            caps.insert("prompts".into(), list(None));
        }
        if announced(&["resources"]) {
            let subscribe = announced(&["resources", "subscribe"]);
            caps.insert("resources".into(), list(Some(("subscribe", subscribe))));
        }
        for name in ["completions", "logging"] {
            if announced(&[name]) {
                caps.insert(name.into(), json!({}));
            }
        }
        let tasks = match era {
            Era::Legacy => tasks_capability(self.listings()).map(|t| ("tasks", t)),
            Era::Modern => extensions(self.listings()).map(|e| ("extensions", e)),
        };
        if let Some((key, value)) = tasks {
            caps.insert(key.into(), value);
        }
        Value::Object(caps)
    }

    /// The visible upstreams' instructions, each under a heading naming its upstream; `None`
    /// when none gave any.
    pub fn instructions(&self) -> Option<String> {
        let parts: Vec<String> = self
            .listings()
            .filter_map(|(id, l)| {
                let text = l.info.as_ref()?.instructions.as_deref()?.trim();
                (!text.is_empty()).then(|| format!("## {id}\n{text}"))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

/// Whether the caller holding `grant` sees anything of `upstream` — what [`View`] decides for
/// every upstream at once, here for one, reading only that upstream's entries.
pub fn sees(snapshot: &Snapshot, grant: &Grant, upstream: &UpstreamId) -> bool {
    let listed = snapshot.upstreams.iter().any(|(id, _)| id == upstream);
    listed
        && (!grant.has_policies()
            || ListKind::ALL.into_iter().any(|kind| {
                snapshot
                    .entries(kind)
                    .iter()
                    .any(|e| e.upstream == *upstream && grant.lists(kind, e))
            }))
}

/// The legacy `tasks` capability: the union of what the upstreams announce (the gateway relays
/// tasks to legacy clients), `None` when no upstream supports tasks.
fn tasks_capability<'l>(
    listings: impl Iterator<Item = &'l (UpstreamId, Arc<UpstreamListing>)>,
) -> Option<Value> {
    let mut merged = Map::new();
    for (_, listing) in listings {
        let tasks = listing
            .info
            .as_ref()
            .and_then(|i| i.capabilities.get("tasks"));
        if let Some(Value::Object(obj)) = tasks {
            for (k, v) in obj {
                merged.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    (!merged.is_empty()).then_some(Value::Object(merged))
}

/// Extensions the gateway relays (it routes their methods and rewrites their ids), the only
/// ones it may advertise: an unknown extension's methods would not reach any upstream.
const RELAYED_EXTENSIONS: &[&str] = &[EXTENSION_TASKS];

/// The modern `capabilities.extensions`: each relayed extension any upstream advertises, with
/// the settings of the first upstream that does; `None` when there are none.
fn extensions<'l>(
    listings: impl Iterator<Item = &'l (UpstreamId, Arc<UpstreamListing>)>,
) -> Option<Value> {
    let mut merged = Map::new();
    for (_, listing) in listings {
        let Some(Value::Object(offered)) = listing
            .info
            .as_ref()
            .and_then(|i| i.capabilities.get("extensions"))
        else {
            continue;
        };
        for name in RELAYED_EXTENSIONS {
            if let Some(settings) = offered.get(*name) {
                merged.entry(*name).or_insert_with(|| settings.clone());
            }
        }
    }
    (!merged.is_empty()).then_some(Value::Object(merged))
}

/// Whether `capabilities` (a `ClientCapabilities` object) declares `extension`.
pub fn declares_extension(capabilities: &Value, extension: &str) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(extension))
        .is_some_and(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::Principal;
    use crate::catalogue::merge::merge;
    use crate::catalogue::namespace::Namespacer;
    use crate::config::{NamespacingConfig, PrefixMode};
    use crate::policy::Mode;
    use crate::policy::compile::compile;

    #[test]
    fn sees_answers_for_one_upstream_what_the_view_answers_for_all() {
        let ids = ["shown", "hidden", "empty"].map(|u| UpstreamId::parse(u).unwrap());
        let listings: Vec<_> = ids
            .iter()
            .map(|id| {
                let tools = if id.as_str() == "empty" {
                    vec![]
                } else {
                    vec![json!({"name": "t", "inputSchema": {"type": "object"}})]
                };
                let listing = UpstreamListing {
                    lists: [tools, vec![], vec![], vec![]],
                    ..UpstreamListing::default()
                };
                (id.clone(), Arc::new(listing))
            })
            .collect();
        let ns = Namespacer::new(
            &NamespacingConfig {
                separator: "__".into(),
                prefix: PrefixMode::Always,
            },
            ids.len(),
        );
        let snapshot = merge(&ns, &listings);
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let policy = "roles:\n  - name: r\n    subjects: [{ claim: sub, equals: ann }]\n    allow: { tools: [\"shown/*\"] }\n";
        let set = Arc::new(compile(&[("p.yaml".into(), policy.into())], &names).unwrap());
        let ann = Principal {
            subject: "ann".into(),
            ..Principal::anonymous()
        };
        let with_policy = Grant::new(set, &ann, Mode::Enforce);
        let empty_set = Grant::new(Arc::new(compile(&[], &names).unwrap()), &ann, Mode::Enforce);
        let no_policies = crate::policy::Access::open().grant(&ann);
        for grant in [&with_policy, &empty_set, &no_policies] {
            let view = View::new(&snapshot, grant);
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(sees(&snapshot, grant, id), view.visible[i], "{id}");
            }
        }
        assert!(sees(&snapshot, &with_policy, &ids[0]));
        assert!(!sees(&snapshot, &with_policy, &ids[1]));
        assert!(
            sees(&snapshot, &no_policies, &ids[2]),
            "without policies, everything"
        );
    }
}
