//! Upstreams on the deprecated HTTP+SSE transport of protocol revision 2024-11-05: `GET` opens
//! the event stream, whose first `endpoint` event names the URL to POST messages to; every
//! answer arrives on the event stream. One connection per upstream, multiplexed and reopened by
//! [`super::mux`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use http::HeaderMap;
use tokio::sync::{broadcast, mpsc};
use url::Url;

use super::mux::{Connector, Core, Generation, IoTasks, dispatch};
use super::{UpstreamError, UpstreamEvent};
use crate::config::UpstreamId;

/// How long the server may take to announce its message endpoint.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest event (one message) read from the stream, bytes.
const MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

/// Opens HTTP+SSE connections to one upstream.
pub(super) struct SseConnector {
    pub(super) id: UpstreamId,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) client: reqwest::Client,
}

impl Connector for SseConnector {
    fn connect(
        &self,
        events: broadcast::Sender<UpstreamEvent>,
    ) -> BoxFuture<'static, Result<Generation, UpstreamError>> {
        let (id, url, headers, client) = (
            self.id.clone(),
            self.url.clone(),
            self.headers.clone(),
            self.client.clone(),
        );
        Box::pin(async move { open(id, url, headers, client, events).await })
    }
}

async fn open(
    id: UpstreamId,
    url: Url,
    headers: HeaderMap,
    client: reqwest::Client,
    events: broadcast::Sender<UpstreamEvent>,
) -> Result<Generation, UpstreamError> {
    let unavailable = |detail: String| UpstreamError::Unavailable {
        detail: detail.into(),
    };
    let response = client
        .get(url.clone())
        .headers(headers.clone())
        .header(http::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| unavailable(crate::redact::error(&e)))?;
    if !response.status().is_success() {
        return Err(UpstreamError::HttpStatus {
            status: response.status().as_u16(),
        });
    }
    let mut stream = super::sse_events::events(response, MAX_EVENT_BYTES);
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) if e.event == "endpoint" => return Some(e.data),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| UpstreamError::Protocol {
        detail: "the event stream announced no endpoint".into(),
    })?;
    let post_url = url
        .join(endpoint.trim())
        .map_err(|e| UpstreamError::Protocol {
            detail: format!("bad endpoint {endpoint:?}: {e}").into(),
        })?;
    if post_url.origin() != url.origin() {
        return Err(UpstreamError::Protocol {
            detail: format!("the endpoint {post_url} is on another origin").into(),
        });
    }
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(256);
    let core = Core::new(lines_tx);
    let writer = {
        let id = id.clone();
        let post_url = post_url.clone();
        tokio::spawn(async move {
            while let Some(message) = lines_rx.recv().await {
                let sent = client
                    .post(post_url.clone())
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(message)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(upstream = %id, status = r.status().as_u16(), "upstream refused a message")
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %id, error = %crate::redact::error(&e), "could not post to the upstream")
                    }
                }
            }
        })
    };
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<String>();
    let reader = {
        let core = Arc::clone(&core);
        let id = id.clone();
        tokio::spawn(async move {
            let how = loop {
                match stream.next().await {
                    Some(Ok(event)) if event.data.trim().is_empty() => {}
                    Some(Ok(event)) => dispatch(&id, &core, &events, &event.data).await,
                    Some(Err(e)) => break format!("the event stream failed: {e}"),
                    None => break "the event stream ended".to_string(),
                }
            };
            core.fail_all();
            let _ = ended_tx.send(how);
        })
    };
    let ended = Box::pin(async move {
        ended_rx
            .await
            .unwrap_or_else(|_| "the connection was dropped".into())
    });
    Ok(Generation {
        core,
        io: IoTasks(vec![writer, reader]),
        ended,
        label: crate::redact::url(&post_url),
    })
}
