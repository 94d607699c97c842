//! Tasks, both generations: 2025-11-25 `basic/utilities/tasks` (`tasks/get`, `tasks/result`,
//! `tasks/cancel`, `tasks/list`) and the 2026-07-28 tasks extension (SEP-2663: flat
//! `CreateTaskResult`, `tasks/get` with the result inlined, `tasks/update`, `tasks/cancel`).
//! Task ids name their upstream and are bound to their creator in every prefix mode
//! ([`super::task_ids`]; task ids are opaque, so this costs clients nothing); the methods
//! naming a task go to its owner, and the legacy `tasks/list` is merged across upstreams.

use serde_json::{Value, json};

use crate::catalogue::Snapshot;
use crate::config::UpstreamId;
use crate::error::{GatewayError, TargetKind};
use crate::upstream::{CallContext, UpstreamError};

use super::task_ids::TaskIds;

/// Most pages read from one upstream's `tasks/list` for one merged `tasks/list`.
pub const MAX_PAGES: usize = 10;
/// Most tasks in one merged `tasks/list`.
pub const MAX_TASKS: usize = 1000;

/// The owning upstream of a client-facing task id in `params.taskId`, which must have been
/// minted for `owner`; rewrites the param to the upstream's own id.
///
/// # Errors
/// [`GatewayError::InvalidParams`] when `taskId` is missing; [`GatewayError::UnknownTarget`]
/// when it names no upstream or was minted for another principal.
pub fn resolve(
    snapshot: &Snapshot,
    params: &mut Value,
    ids: &TaskIds,
    owner: &str,
) -> Result<UpstreamId, GatewayError> {
    let wire = params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| GatewayError::InvalidParams {
            message: "`taskId` must be a string".into(),
            transport: false,
        })?;
    let unknown = || GatewayError::UnknownTarget {
        kind: TargetKind::Task,
        name: wire.to_string(),
    };
    let find = |name: &str| {
        snapshot
            .upstreams
            .iter()
            .find(|(id, _)| id.as_str() == name)
            .map(|(id, _)| id.clone())
    };
    let (upstream, original) = ids.open(wire, owner, find).ok_or_else(unknown)?;
    params["taskId"] = Value::from(original);
    Ok(upstream)
}

/// Whether `method` is a task status notification whose params carry a `taskId`: 2025-11-25
/// `notifications/tasks/status` or the tasks extension's `notifications/tasks`.
pub fn is_status_notification(method: &str) -> bool {
    matches!(method, "notifications/tasks/status" | "notifications/tasks")
}

/// Rewrites the task ids in a result or notification params for `owner`: a top-level `taskId`
/// (`Task`, `GetTaskResult`, the extension's flat `CreateTaskResult` and `DetailedTask`, status
/// notifications), `task.taskId` (2025-11-25 `CreateTaskResult`) and the related-task `_meta`.
pub fn rewrite_ids(value: &mut Value, upstream: &UpstreamId, ids: &TaskIds, owner: &str) {
    let fix = |slot: Option<&mut Value>| {
        if let Some(slot) = slot
            && let Some(id) = slot.as_str()
        {
            *slot = Value::from(ids.wire(upstream, id, owner));
        }
    };
    fix(value.get_mut("taskId"));
    fix(value.get_mut("task").and_then(|t| t.get_mut("taskId")));
    rewrite_related(value, upstream, ids, owner);
}

/// Rewrites only the related-task `_meta` of a message's params (any notification or server
/// request about a task) for `owner`.
pub fn rewrite_related(params: &mut Value, upstream: &UpstreamId, ids: &TaskIds, owner: &str) {
    if let Some(slot) = params
        .get_mut("_meta")
        .and_then(|m| m.get_mut("io.modelcontextprotocol/related-task"))
        .and_then(|t| t.get_mut("taskId"))
        && let Some(id) = slot.as_str()
    {
        *slot = Value::from(ids.wire(upstream, id, owner));
    }
}

/// Whether any upstream announced task support.
pub fn announced(snapshot: &Snapshot) -> bool {
    snapshot.upstreams.iter().any(|(_, l)| {
        l.info
            .as_ref()
            .is_some_and(|i| i.capabilities.get("tasks").is_some())
    })
}

/// `tasks/list` merged across the upstreams that support it, in the caller's context, keeping
/// the tasks recorded as created by `owner` ([`TaskIds::owned`]) and `visible(upstream, task_id)`
/// allows. The upstreams are asked at once, each for at most [`MAX_PAGES`] pages within its
/// timeout; at most [`MAX_TASKS`] are listed. An upstream that fails is left out (and logged):
/// the others' tasks are still listed.
pub async fn list(
    snapshot: &Snapshot,
    upstreams: &crate::upstream::UpstreamSet,
    ctx: &CallContext,
    ids: &TaskIds,
    owner: &str,
    visible: &(dyn Fn(&UpstreamId, &str) -> bool + Sync),
) -> Value {
    let asked = snapshot.upstreams.iter().filter_map(|(id, listing)| {
        let supports = listing
            .info
            .as_ref()
            .is_some_and(|i| i.capabilities.pointer("/tasks/list").is_some());
        let upstream = upstreams.get(id.as_str()).filter(|_| supports)?;
        Some(async move {
            let listed = tokio::time::timeout(upstream.timeout(), list_one(&upstream, ctx))
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
            (id, listed)
        })
    });
    let mut found = Vec::new();
    for (id, listed) in futures::future::join_all(asked).await {
        match listed {
            Ok(tasks) => found.extend(tasks.into_iter().map(|t| (id, t))),
            Err(e) => {
                tracing::warn!(upstream = %id, error = %e, "tasks/list failed; leaving its tasks out")
            }
        }
    }
    let keys: Vec<(&UpstreamId, &str)> = found
        .iter()
        .map(|(id, t)| (*id, t["taskId"].as_str().unwrap_or_default()))
        .collect();
    let owned = ids.owned(&keys, owner).await;
    let mut tasks: Vec<Value> = found
        .into_iter()
        .zip(owned)
        .filter(|((id, t), owned)| *owned && visible(id, t["taskId"].as_str().unwrap_or_default()))
        .map(|((id, mut t), _)| {
            rewrite_ids(&mut t, id, ids, owner);
            t
        })
        .collect();
    tasks.truncate(MAX_TASKS);
    json!({ "tasks": tasks })
}

async fn list_one(
    upstream: &crate::upstream::Upstream,
    ctx: &CallContext,
) -> Result<Vec<Value>, UpstreamError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
        let page = upstream
            .request(ctx, "tasks/list", params)
            .await?
            .map_err(|e| UpstreamError::Protocol {
                detail: format!("tasks/list failed: {e}").into(),
            })?;
        all.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if all.len() < MAX_TASKS => cursor = Some(next.to_string()),
            _ => return Ok(all),
        }
    }
    Ok(all)
}
