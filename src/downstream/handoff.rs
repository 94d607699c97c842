//! MRTR retries that reach another replica than the one holding their call
//! (`limits.store: redis`, DESIGN.md §5.12).
//!
//! A parked call ([`super::mrtr`]) holds a live upstream request that only the replica that
//! parked it can continue, so its sealed `requestState` names that replica (a random tag per
//! process). A replica receiving a retry for a call parked elsewhere hands the retry to the
//! owner through Redis, so replicas need no address of each other and no network path but to
//! Redis:
//!
//! 1. The receiving replica publishes the retry on the owner's channel `{prefix}:mrtr:{tag}`.
//!    When nobody hears it the owner is gone and the client gets -32602, as for a call no
//!    longer waiting.
//! 2. The owner answers the retry exactly as if it had come to it, and writes the HTTP answer
//!    to a Redis stream `{prefix}:mrtr:reply:{uuid}` named in the message: a head (status and
//!    headers), the body chunks as they come (a JSON body, or an SSE stream with progress and
//!    further requests), then an end mark. While nothing else comes it writes a keep-alive
//!    entry every [`KEEP_ALIVE`].
//! 3. The receiving replica follows that stream and relays it to its client unchanged. Heard
//!    nothing for [`SILENCE`], it presumes the owner lost and ends the answer (before the head:
//!    an error). A client that leaves is announced to the owner, which drops the answer,
//!    cancelling the upstream request as a local disconnect would.
//!
//! The channel doubles as the replica's presence: [`Handoff::is_alive`] tells whether a replica
//! still listens (used by [`super::replay_mirror`] to end a resumed stream whose sender died).
//!
//! Anyone who can write to the Redis can inject retries; Redis is trusted as it is for the
//! rate limits (the receiving replica has already authenticated the client and checked the
//! sealed state against it).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use prometheus::IntCounterVec;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Gateway;
use super::shared_stream::{self, Follower};
use crate::backoff::keep_listening;
use crate::config::RedisConfig;
use crate::error::GatewayError;

/// How often the owner writes a keep-alive entry while its answer is quiet.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How long the receiving replica waits without any entry before it presumes the owner lost.
pub const SILENCE: Duration = Duration::from_secs(15);
/// How long publishing a message may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Body chunks buffered between the reader and the client.
const CHUNKS: usize = 64;

/// A retry handed to the replica where its call is parked.
#[derive(Debug, Serialize, Deserialize)]
pub struct Retry {
    /// The parked call.
    pub cid: Uuid,
    /// The retry's JSON-RPC id.
    pub id: Value,
    /// The retry's params (`inputResponses`, `_meta`).
    pub params: Value,
    /// The client's declared capabilities, as validated by the receiving replica.
    pub capabilities: Value,
    /// Principal digest, method and target the state is bound to (checked by the receiver).
    pub principal: String,
    /// The request method.
    pub method: String,
    /// The request's name or URI.
    pub target: String,
}

/// A message on an owner's channel.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Note {
    /// Answer `retry` into stream `reply`.
    Retry { retry: Box<Retry>, reply: String },
    /// The client of `reply` left.
    Cancel { reply: String },
}

/// The head of an answer: HTTP status and headers.
#[derive(Serialize, Deserialize)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

/// One piece of an answer, as the receiving replica reads it.
enum Piece {
    Head(Head),
    Chunk(Bytes),
}

/// Hands retries to their owners and answers those handed to this replica.
pub struct Handoff {
    store: crate::redis_client::Store,
    connection: crate::redis_client::Connection,
    prefix: String,
    tag: String,
    /// Answers being written here, by reply stream: cancelled when their client leaves.
    answering: Mutex<HashMap<String, CancellationToken>>,
    /// `mcpgate_mrtr_handoffs_total{outcome}`.
    outcomes: IntCounterVec,
}

impl Handoff {
    /// Hand-offs through the Redis of `redis` (connected lazily). Call [`Handoff::serve`] in
    /// the background to answer retries handed to this replica.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    /// Hand-offs are counted in `outcomes` (`mcpgate_mrtr_handoffs_total{outcome}`).
    pub fn new(
        redis: &RedisConfig,
        outcomes: IntCounterVec,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let store = crate::redis_client::Store::open(redis)?;
        let connection = store.connection(PUBLISH_TIMEOUT, PUBLISH_TIMEOUT)?;
        Ok(Arc::new(Self {
            store,
            connection,
            prefix: format!("{}:mrtr", redis.key_prefix),
            tag: format!("{:016x}", rand::random::<u64>()),
            answering: Mutex::default(),
            outcomes,
        }))
    }

    /// This replica's tag, named in the `requestState` of the calls it parks.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether replica `tag` is alive, as far as Redis knows: it listens on its channel (one
    /// `PUBSUB NUMSUB`). `true` when Redis cannot tell, so that a hiccup ends nothing.
    pub async fn is_alive(&self, tag: &str) -> bool {
        let mut connection = self.connection.clone();
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(self.channel(tag));
        let count = numsub.query_async::<(String, u64)>(&mut connection);
        !matches!(
            tokio::time::timeout(PUBLISH_TIMEOUT, count).await,
            Ok(Ok((_, 0)))
        )
    }

    fn channel(&self, owner: &str) -> String {
        format!("{}:{owner}", self.prefix)
    }

    async fn publish(&self, owner: &str, note: &Note) -> redis::RedisResult<u64> {
        let message = serde_json::to_string(note).unwrap_or_default();
        let mut connection = self.connection.clone();
        let publish = connection.publish::<_, _, u64>(self.channel(owner), message);
        tokio::time::timeout(PUBLISH_TIMEOUT, publish)
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "publish timed out").into()))
    }

    /// Hands `retry` to replica `owner` and returns its answer as it comes.
    ///
    /// # Errors
    /// [`GatewayError::InvalidParams`] (-32602, send the request again without state) when
    /// the owner is gone, cannot be reached, or goes silent before its answer begins.
    pub async fn forward(
        self: &Arc<Self>,
        owner: &str,
        retry: Retry,
    ) -> Result<Response, GatewayError> {
        let cid = retry.cid;
        let gone = |outcome: &str, why: &str| {
            self.outcomes.with_label_values(&[outcome]).inc();
            tracing::warn!(call = %cid, owner, why, "an MRTR retry could not be handed to the replica holding its call");
            GatewayError::InvalidParams {
                message: format!(
                    "Invalid requestState: {why}; send the request again without requestState"
                ),
                transport: false,
            }
        };
        let reply = format!("{}:reply:{}", self.prefix, Uuid::new_v4());
        let follower = Follower::connect(&self.store, reply.clone(), "0-0".into())
            .await
            .map_err(|_| gone("store_unavailable", "the shared store cannot be reached"))?;
        let heard = self
            .publish(
                owner,
                &Note::Retry {
                    retry: Box::new(retry),
                    reply: reply.clone(),
                },
            )
            .await
            .map_err(|_| gone("store_unavailable", "the shared store cannot be reached"))?;
        if heard == 0 {
            return Err(gone(
                "owner_gone",
                "the replica holding the request is gone",
            ));
        }
        let (tx, mut rx) = mpsc::channel(CHUNKS);
        tokio::spawn(Arc::clone(self).read(follower, owner.to_string(), reply, tx));
        let Some(Piece::Head(head)) = rx.recv().await else {
            return Err(gone(
                "owner_gone",
                "the replica holding the request stopped answering",
            ));
        };
        let body = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Some(Piece::Chunk(chunk)) => Some((Ok::<_, std::convert::Infallible>(chunk), rx)),
                Some(Piece::Head(_)) | None => None,
            }
        });
        self.outcomes.with_label_values(&["answered"]).inc();
        let mut response = Response::new(Body::from_stream(body));
        *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
        for (name, value) in head.headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        Ok(response)
    }

    /// Reads the owner's answer into `tx` until its end, silence, or the client leaving (then
    /// tells the owner).
    async fn read(
        self: Arc<Self>,
        mut follower: Follower,
        owner: String,
        reply: String,
        tx: mpsc::Sender<Piece>,
    ) {
        let mut quiet = Duration::ZERO;
        let left = loop {
            let entries = match follower.next().await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "reading a handed-off MRTR answer failed; it ends here");
                    break tx.is_closed();
                }
            };
            if entries.is_empty() {
                quiet += shared_stream::BLOCK;
                if quiet >= SILENCE {
                    tracing::warn!(
                        owner,
                        "the replica answering a handed-off MRTR retry went silent"
                    );
                    break false;
                }
            } else {
                quiet = Duration::ZERO;
            }
            let mut done = false;
            for entry in entries {
                let piece = if let Some(head) = entry.get::<Vec<u8>>("h") {
                    serde_json::from_slice(&head).ok().map(Piece::Head)
                } else if let Some(chunk) = entry.get::<Vec<u8>>("b") {
                    Some(Piece::Chunk(Bytes::from(chunk)))
                } else {
                    done = entry.map.contains_key("end");
                    None
                };
                if let Some(piece) = piece
                    && tx.send(piece).await.is_err()
                {
                    done = true;
                    break;
                }
            }
            if done || tx.is_closed() {
                break tx.is_closed();
            }
        };
        if left {
            let _ = self.publish(&owner, &Note::Cancel { reply }).await;
        }
    }

    /// Answers the retries handed to this replica until the future is dropped, subscribing
    /// again (with backoff) whenever the subscription ends. `gateway` answers them.
    pub async fn serve(self: Arc<Self>, gateway: Weak<Gateway>) {
        keep_listening(
            || async {
                self.listen(&gateway).await?;
                Ok::<_, redis::RedisError>(if gateway.strong_count() == 0 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
            "cannot hear MRTR retries handed to this replica; retrying (retries of calls parked here that reach other replicas fail meanwhile)",
        )
        .await;
    }

    /// One subscription to this replica's channel.
    async fn listen(self: &Arc<Self>, gateway: &Weak<Gateway>) -> redis::RedisResult<()> {
        let mut pubsub = self.store.pubsub().await?;
        pubsub.subscribe(self.channel(&self.tag)).await?;
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Ok(note) = serde_json::from_slice::<Note>(message.get_payload_bytes()) else {
                tracing::warn!("ignored a malformed MRTR hand-off message");
                continue;
            };
            match note {
                Note::Retry { retry, reply } => {
                    let Some(gw) = gateway.upgrade() else {
                        return Ok(());
                    };
                    let cancel = CancellationToken::new();
                    self.lock().insert(reply.clone(), cancel.clone());
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        let answer = super::modern::answer_handed_off(&gw, *retry);
                        if let Err(error) = this.write(answer, &reply, &cancel).await {
                            tracing::warn!(%error, "writing a handed-off MRTR answer failed; the upstream request is cancelled");
                        }
                        this.lock().remove(&reply);
                    });
                }
                Note::Cancel { reply } => {
                    if let Some(cancel) = self.lock().remove(&reply) {
                        cancel.cancel();
                    }
                }
            }
        }
        tracing::warn!("the MRTR hand-off channel closed; listening again");
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.answering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `answer` to stream `reply`: keep-alives while it is pending, its head, its body
    /// chunks (keep-alives while the body is quiet), the end mark. Stops (dropping the answer)
    /// when `cancel` fires or a write fails.
    async fn write(
        &self,
        answer: impl Future<Output = Response>,
        reply: &str,
        cancel: &CancellationToken,
    ) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        let mut put = async |field: &str, value: &[u8]| {
            let mut pipe = redis::pipe();
            for command in shared_stream::append(reply, "*", None, &[(field, value)], SILENCE * 2) {
                pipe.add_command(command).ignore();
            }
            pipe.query_async::<()>(&mut connection).await
        };
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.reset();
        let mut answer = std::pin::pin!(answer);
        let response = loop {
            tokio::select! {
                response = &mut answer => break response,
                _ = tick.tick() => put("k", b"").await?,
                () = cancel.cancelled() => return Ok(()),
            }
        };
        let head = Head {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                .collect(),
        };
        put("h", &serde_json::to_vec(&head).unwrap_or_default()).await?;
        let mut body = response.into_body().into_data_stream();
        loop {
            tokio::select! {
                chunk = body.next() => match chunk {
                    Some(Ok(chunk)) => {
                        put("b", &chunk).await?;
                        tick.reset();
                    }
                    Some(Err(_)) | None => break,
                },
                _ = tick.tick() => put("k", b"").await?,
                () = cancel.cancelled() => return Ok(()),
            }
        }
        put("end", b"").await
    }
}
