//! What the gateway says about itself to clients: merged capabilities and instructions
//! (answers to `initialize` and `server/discover`).

use serde_json::{Map, Value, json};

use crate::catalogue::Snapshot;

/// The gateway's `ServerCapabilities`: `tools` always; `prompts`, `resources` and `completions`
/// when any upstream announced them. Only features the gateway relays are advertised, so
/// `listChanged`, `subscribe` and `logging` are absent until they are relayed.
pub fn capabilities(snapshot: &Snapshot) -> Value {
    let mut caps = Map::new();
    caps.insert("tools".into(), json!({}));
    let announced = |name: &str| {
        snapshot.upstreams.iter().any(|(_, l)| {
            l.info
                .as_ref()
                .is_some_and(|i| i.capabilities.get(name).is_some())
        })
    };
    for name in ["prompts", "resources", "completions"] {
        if announced(name) {
            caps.insert(name.into(), json!({}));
        }
    }
    Value::Object(caps)
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
