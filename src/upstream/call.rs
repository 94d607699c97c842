//! One request in flight at an upstream, as a stream of what the upstream sends for it.
//!
//! An upstream may answer a request with more than its response: progress and log
//! notifications, and (legacy) its own requests to the client — sampling, elicitation, roots,
//! ping. A [`Call`] yields them in arrival order as [`CallItem`]s and ends with
//! [`CallItem::Final`]. The whole call is bounded by the upstream's timeout. Dropping a `Call`
//! before its final item cancels the request at the upstream (closing its stream, or sending
//! `notifications/cancelled`), so a client that goes away stops the work it started.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Reply, UpstreamError};
use crate::jsonrpc::{self, code};

/// Capacity of a call's item channel; a full channel makes the producer wait (backpressure to
/// the upstream connection).
pub(super) const CALL_CHANNEL: usize = 256;

/// Something an upstream sent while answering one request.
#[derive(Debug)]
pub enum CallItem {
    /// A notification tied to the request (`notifications/progress`, `notifications/message`,
    /// …), the whole JSON-RPC message, verbatim.
    Notification(Value),
    /// A request from the upstream to the client, tied to this call.
    Request(ServerRequest),
    /// The end: the JSON-RPC outcome, or why there is none.
    Final(Result<Reply, UpstreamError>),
}

/// Sends a JSON-RPC response message back to the upstream that asked.
pub(super) trait Respond: Send + Sync {
    /// Delivers `message` (a complete JSON-RPC response).
    fn respond(&self, message: Value) -> BoxFuture<'static, Result<(), UpstreamError>>;
}

/// A request from an upstream to the client (`sampling/createMessage`, `elicitation/create`,
/// `roots/list`, `ping`). Answer it exactly once with [`ServerRequest::respond`]; dropping it
/// unanswered answers the upstream with an error so it never waits forever.
pub struct ServerRequest {
    /// The upstream's id for it.
    pub id: Value,
    /// The method.
    pub method: String,
    /// The params, verbatim.
    pub params: Option<Value>,
    responder: Option<Arc<dyn Respond>>,
}

impl std::fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Delivers the answer to a request the gateway itself asked.
struct LocalResponder {
    answer: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Value>>>,
}

impl Respond for LocalResponder {
    fn respond(&self, message: Value) -> BoxFuture<'static, Result<(), UpstreamError>> {
        let sender = self.answer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(message);
        }
        Box::pin(async { Ok(()) })
    }
}

impl ServerRequest {
    /// A request the gateway itself puts to a client (bridging a modern upstream's
    /// `inputRequests`): the client's whole JSON-RPC response arrives on the receiver.
    pub fn local(
        method: String,
        params: Option<Value>,
    ) -> (Self, tokio::sync::oneshot::Receiver<Value>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let responder = Arc::new(LocalResponder {
            answer: std::sync::Mutex::new(Some(tx)),
        });
        (Self::new(Value::Null, method, params, responder), rx)
    }

    pub(super) fn new(
        id: Value,
        method: String,
        params: Option<Value>,
        responder: Arc<dyn Respond>,
    ) -> Self {
        Self {
            id,
            method,
            params,
            responder: Some(responder),
        }
    }

    /// Sends the client's answer (result or error object, verbatim) to the upstream.
    ///
    /// # Errors
    /// [`UpstreamError`] when the answer could not be delivered.
    pub async fn respond(mut self, outcome: Reply) -> Result<(), UpstreamError> {
        let message = match outcome {
            Ok(result) => jsonrpc::result_response(self.id.clone(), result),
            Err(error) => jsonrpc::error_response(Some(self.id.clone()), error),
        };
        match self.responder.take() {
            Some(r) => r.respond(message).await,
            None => Ok(()),
        }
    }

    /// Answers with a JSON-RPC error without bothering the client.
    pub async fn reject(self, code: i64, message: &str) {
        let error = jsonrpc::error_object(code, message, None);
        if let Err(e) = self.respond(Err(error)).await {
            tracing::debug!(error = %e, "could not reject a server request");
        }
    }
}

impl Drop for ServerRequest {
    fn drop(&mut self) {
        if let Some(responder) = self.responder.take() {
            let message = jsonrpc::error_response(
                Some(self.id.clone()),
                jsonrpc::error_object(
                    code::INTERNAL_ERROR,
                    "the request was abandoned by the gateway",
                    None,
                ),
            );
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = responder.respond(message).await;
                });
            }
        }
    }
}

/// A request in flight. See the module docs.
pub struct Call {
    items: mpsc::Receiver<CallItem>,
    deadline: Instant,
    /// How far a progress notification moves the deadline, and the latest it may move to.
    extension: Option<(std::time::Duration, Instant)>,
    /// An item read ahead ([`Call::fail_early`]), yielded next.
    ahead: Option<CallItem>,
    finished: bool,
    on_cancel: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("deadline", &self.deadline)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// A call fed by `items`, ending by `deadline`; `on_cancel` runs if the call is dropped or
    /// times out before its final item.
    pub(super) fn new(
        items: mpsc::Receiver<CallItem>,
        deadline: Instant,
        on_cancel: Option<Box<dyn FnOnce() + Send>>,
    ) -> Self {
        Self {
            items,
            deadline,
            extension: None,
            ahead: None,
            finished: false,
            on_cancel,
        }
    }

    /// The same call, its deadline moved by each `notifications/progress` to `timeout` from
    /// then, never past `longest` (DESIGN.md §5.10 `max_timeout`).
    pub(super) fn extended_by_progress(
        mut self,
        timeout: std::time::Duration,
        longest: Instant,
    ) -> Self {
        self.extension = Some((timeout, longest));
        self
    }

    /// A call that has already ended with `outcome`.
    pub fn ready(outcome: Result<Reply, UpstreamError>) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(CallItem::Final(outcome));
        Self::new(
            rx,
            Instant::now() + std::time::Duration::from_secs(3600),
            None,
        )
    }

    /// The next item; `None` after the final one. A timeout or a producer that vanished
    /// becomes a final [`UpstreamError`].
    pub async fn next(&mut self) -> Option<CallItem> {
        if let Some(item) = self.ahead.take() {
            return Some(item);
        }
        if self.finished {
            return None;
        }
        let item = match tokio::time::timeout_at(self.deadline, self.items.recv()).await {
            Err(_) => {
                self.cancel();
                CallItem::Final(Err(UpstreamError::Timeout))
            }
            Ok(None) => CallItem::Final(Err(UpstreamError::Closed {
                detail: "the upstream ended the call without a response".into(),
            })),
            Ok(Some(item)) => item,
        };
        if let (CallItem::Notification(n), Some((timeout, longest))) = (&item, self.extension)
            && n.get("method").and_then(Value::as_str) == Some("notifications/progress")
        {
            self.deadline = self.deadline.max((Instant::now() + timeout).min(longest));
        }
        if matches!(item, CallItem::Final(_)) {
            self.finished = true;
            self.on_cancel = None;
        }
        Some(item)
    }

    /// Waits for the first item: when the call ended without an answer before sending anything
    /// (a 5xx, a refused stream), that failure; else the item is kept for [`Call::next`]. Lets
    /// an idempotent request be retried on failures that only its answer reveals.
    ///
    /// # Errors
    /// The [`UpstreamError`] the call ended with.
    pub(super) async fn fail_early(&mut self) -> Result<(), UpstreamError> {
        match self.next().await {
            Some(CallItem::Final(Err(e))) => Err(e),
            item => {
                self.ahead = item;
                Ok(())
            }
        }
    }

    /// Waits for the final outcome, rejecting any server request (for the gateway's own calls,
    /// which have no client to ask) and discarding notifications.
    ///
    /// # Errors
    /// [`UpstreamError`] when no outcome arrived.
    pub async fn finish(mut self) -> Result<Reply, UpstreamError> {
        while let Some(item) = self.next().await {
            match item {
                CallItem::Final(outcome) => return outcome,
                CallItem::Request(request) => {
                    request
                        .reject(
                            code::METHOD_NOT_FOUND,
                            "no client is attached to this request",
                        )
                        .await;
                }
                CallItem::Notification(_) => {}
            }
        }
        Err(UpstreamError::Closed {
            detail: "the call already ended".into(),
        })
    }

    fn cancel(&mut self) {
        if let Some(cancel) = self.on_cancel.take() {
            cancel();
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
        }
    }
}
