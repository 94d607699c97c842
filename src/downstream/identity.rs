//! What the gateway says about itself to clients: merged capabilities and instructions
//! (answers to `initialize` and `server/discover`).

use serde_json::{Map, Value, json};

use crate::catalogue::Snapshot;
use crate::protocol::{EXTENSION_TASKS, Era};

/// The gateway's `ServerCapabilities` for a client of `era`: `tools` always; `prompts`,
/// `resources`, `completions` and `logging` when any upstream announced them;
/// `resources.subscribe` when any upstream supports it. `listChanged` is true: the gateway
/// itself announces changes of the merged lists (legacy standalone stream, modern
/// `subscriptions/listen`). Tasks, when an upstream supports them: legacy clients get the
/// 2025-11-25 `tasks` capability, modern clients the extension under `extensions`.
pub fn capabilities(snapshot: &Snapshot, era: Era) -> Value {
    let announced = |path: &[&str]| {
        snapshot.upstreams.iter().any(|(_, l)| {
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
        Era::Legacy => tasks_capability(snapshot).map(|t| ("tasks", t)),
        Era::Modern => extensions(snapshot).map(|e| ("extensions", e)),
    };
    if let Some((key, value)) = tasks {
        caps.insert(key.into(), value);
    }
    Value::Object(caps)
}

/// The legacy `tasks` capability: the union of what the upstreams announce (the gateway relays
/// tasks to legacy clients), `None` when no upstream supports tasks.
fn tasks_capability(snapshot: &Snapshot) -> Option<Value> {
    let mut merged = Map::new();
    for (_, listing) in &snapshot.upstreams {
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
fn extensions(snapshot: &Snapshot) -> Option<Value> {
    let mut merged = Map::new();
    for (_, listing) in &snapshot.upstreams {
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

/// The upstreams' instructions, each under a heading naming its upstream; `None` when no
/// upstream gave any.
pub fn instructions(snapshot: &Snapshot) -> Option<String> {
    let parts: Vec<String> = snapshot
        .upstreams
        .iter()
        .filter_map(|(id, l)| {
            let text = l.info.as_ref()?.instructions.as_deref()?.trim();
            (!text.is_empty()).then(|| format!("## {id}\n{text}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}
