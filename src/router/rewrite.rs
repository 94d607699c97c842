//! Rewriting upstream URIs in results to their client-facing form (DESIGN.md §5.1): only the
//! members that name resources — content blocks of tool results and prompt messages, and the
//! contents of a read — never arbitrary strings or `structuredContent`.

use serde_json::Value;

/// Which URIs of a result point into an upstream's namespace.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rewrite {
    None,
    /// `content[]` blocks of a `CallToolResult`.
    ToolResult,
    /// `messages[].content` of a `GetPromptResult`.
    PromptResult,
    /// `contents[].uri` of a `ReadResourceResult`.
    ReadResult,
    /// A `Task` (`tasks/get`, `tasks/update`, `tasks/cancel`): its `taskId`, and the original
    /// request's result a 2026-07-28 `tasks/get` inlines under `result` (a tool result).
    Task,
    /// `tasks/result`: the payload of the original request (a tool result) and its task ids.
    TaskPayload,
}

impl Rewrite {
    /// Whether results carry task ids to namespace (a tool call may create a task).
    pub(super) fn has_task_ids(self) -> bool {
        matches!(self, Self::ToolResult | Self::Task | Self::TaskPayload)
    }

    pub(super) fn apply(self, result: &mut Value, wire: &dyn Fn(&str) -> String) {
        match self {
            Self::None => {}
            Self::ToolResult | Self::TaskPayload => {
                for block in array_mut(result, "content") {
                    rewrite_block(block, wire);
                }
            }
            Self::Task => {
                if let Some(inlined) = result.get_mut("result") {
                    Self::ToolResult.apply(inlined, wire);
                }
            }
            Self::PromptResult => {
                for message in array_mut(result, "messages") {
                    match message.get_mut("content") {
                        Some(Value::Array(blocks)) => {
                            blocks.iter_mut().for_each(|b| rewrite_block(b, wire));
                        }
                        Some(block) => rewrite_block(block, wire),
                        None => {}
                    }
                }
            }
            Self::ReadResult => {
                for contents in array_mut(result, "contents") {
                    rewrite_uri(contents, wire);
                }
            }
        }
    }
}

fn array_mut<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Rewrites a `resource_link` block's `uri` or an embedded `resource` block's `resource.uri`.
fn rewrite_block(block: &mut Value, wire: &dyn Fn(&str) -> String) {
    match block.get("type").and_then(Value::as_str) {
        Some("resource_link") => rewrite_uri(block, wire),
        Some("resource") => {
            if let Some(resource) = block.get_mut("resource") {
                rewrite_uri(resource, wire);
            }
        }
        _ => {}
    }
}

fn rewrite_uri(obj: &mut Value, wire: &dyn Fn(&str) -> String) {
    if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
        let rewritten = wire(uri);
        obj["uri"] = Value::from(rewritten);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rewrites_uris_in_results() {
        let wire = |u: &str| format!("up+{u}");
        let mut tool = json!({"content": [
            {"type": "text", "text": "file:///not-a-link"},
            {"type": "resource_link", "uri": "file:///a", "name": "a"},
            {"type": "resource", "resource": {"uri": "file:///b", "text": "x"}}
        ], "structuredContent": {"uri": "file:///untouched"}});
        Rewrite::ToolResult.apply(&mut tool, &wire);
        assert_eq!(tool["content"][0]["text"], "file:///not-a-link");
        assert_eq!(tool["content"][1]["uri"], "up+file:///a");
        assert_eq!(tool["content"][2]["resource"]["uri"], "up+file:///b");
        assert_eq!(tool["structuredContent"]["uri"], "file:///untouched");
        let mut read = json!({"contents": [{"uri": "file:///c", "text": "t"}]});
        Rewrite::ReadResult.apply(&mut read, &wire);
        assert_eq!(read["contents"][0]["uri"], "up+file:///c");
        let mut prompt = json!({"messages": [{"role": "user", "content": {"type": "resource", "resource": {"uri": "x:y"}}}]});
        Rewrite::PromptResult.apply(&mut prompt, &wire);
        assert_eq!(
            prompt["messages"][0]["content"]["resource"]["uri"],
            "up+x:y"
        );
        let mut task = json!({"taskId": "t", "status": "completed", "result": {"content": [
            {"type": "resource_link", "uri": "file:///d", "name": "d"}]}});
        Rewrite::Task.apply(&mut task, &wire);
        assert_eq!(task["result"]["content"][0]["uri"], "up+file:///d");
    }
}
