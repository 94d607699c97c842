//! Multi round-trip requests (2026-07-28 `basic/patterns/mrtr`) for a modern client in front of
//! a legacy upstream.
//!
//! A legacy upstream asks the client mid-call (`elicitation/create`, `sampling/createMessage`,
//! `roots/list`); a modern client can only be asked by an `InputRequiredResult`. The gateway
//! parks the live upstream call, answers the client with the upstream's requests under
//! `inputRequests` (those it makes concurrently together, in one round: `upstream_request`,
//! `upstream_request_2`, ...), and a `requestState` that is sealed (AEAD), bound to the
//! principal, to the method and target of the original request, and expires. The client's retry carries
//! `inputResponses` and that state: the gateway opens it, hands the answer to the waiting
//! upstream and continues relaying the same call. Any other `requestState` (a modern upstream's
//! own) passes through untouched.
//!
//! Parked calls live in this replica's memory. With a shared store the state also names this
//! replica, and a retry that reaches another replica is handed to this one
//! ([`super::handoff`]); without it, such a retry gets -32602. A retry after the state's
//! lifetime gets -32602 and the upstream call is cancelled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::seal::Sealer;
use super::session::now_secs;
use crate::error::GatewayError;
use crate::jsonrpc::code;
use crate::router::RoutedCall;
use crate::upstream::ServerRequest;

/// Marks a `requestState` minted by this gateway.
const STATE_PREFIX: &str = "mcpgate1.";
/// Associated data of sealed request state.
const PURPOSE: &[u8] = b"mcpgate/request-state/v1";
/// Most calls parked at once on this replica (each holds a live upstream request); beyond it
/// the least recently used is cancelled.
pub const MAX_PARKED: u64 = 10_000;
/// The `inputRequests` key of the first bridged request.
const INPUT_KEY: &str = "upstream_request";

/// The `inputRequests` key of the `i`-th (from 0) request asked together.
fn input_key(i: usize) -> String {
    if i == 0 {
        INPUT_KEY.to_string()
    } else {
        format!("{INPUT_KEY}_{}", i + 1)
    }
}

/// What a sealed `requestState` carries.
#[derive(Debug, Serialize, Deserialize)]
struct RequestState {
    /// The parked call.
    cid: Uuid,
    /// Digest of the principal it belongs to.
    pd: String,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
    /// Method of the original request.
    m: String,
    /// Tool or prompt name, or resource URI, of the original request.
    t: String,
    /// Tag of the replica holding the call, with a shared store ([`super::handoff`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    o: String,
}

/// Where a retry's parked call is.
pub enum Resumed {
    /// Here: the call continues on this request.
    Here(Box<RoutedCall>),
    /// On replica `owner` (its [`super::handoff::Handoff::tag`]), as call `cid`.
    Elsewhere {
        /// The way there.
        handoff: Arc<super::handoff::Handoff>,
        /// The replica's tag.
        owner: String,
        /// The parked call.
        cid: Uuid,
    },
}

/// A call waiting for the client's input.
struct Parked {
    call: RoutedCall,
    /// The upstream's requests, by their `inputRequests` key.
    requests: Vec<(String, ServerRequest)>,
}

type Slot = Arc<Mutex<Option<Parked>>>;

/// Parked calls of this replica.
pub struct Continuations {
    parked: moka::sync::Cache<Uuid, Slot>,
    sealer: Sealer,
    ttl: Duration,
    /// With a shared store: hands retries to the replica holding their call.
    handoff: Option<Arc<super::handoff::Handoff>>,
}

/// Who and what a request is, for binding state to it.
pub struct Binding<'a> {
    /// Principal digest.
    pub principal: &'a str,
    /// Method of the request.
    pub method: &'a str,
    /// Its `params.name` or `params.uri`.
    pub target: &'a str,
}

impl Continuations {
    /// Parked calls expire after `ttl` (their upstream requests are then cancelled).
    pub fn new(sealer: Sealer, ttl: Duration) -> Self {
        Self {
            parked: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(MAX_PARKED)
                .build(),
            sealer,
            ttl,
            handoff: None,
        }
    }

    /// Names this replica in the state of the calls it parks, so that retries reaching other
    /// replicas are handed here through `handoff`.
    #[must_use]
    pub fn with_handoff(mut self, handoff: Arc<super::handoff::Handoff>) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// The hand-off between replicas, with a shared store.
    pub fn handoff(&self) -> Option<&Arc<super::handoff::Handoff>> {
        self.handoff.as_ref()
    }

    /// Whether a method may answer with `InputRequiredResult`.
    pub fn supports(method: &str) -> bool {
        matches!(method, "tools/call" | "prompts/get" | "resources/read")
    }

    /// Parks `call` while the client answers `requests` (the upstream's, asked together);
    /// returns the `InputRequiredResult`. The first request's key is `upstream_request`, the
    /// next ones' `upstream_request_2`, `upstream_request_3`, ...
    pub fn park(
        &self,
        call: RoutedCall,
        requests: Vec<ServerRequest>,
        binding: &Binding<'_>,
    ) -> Value {
        let cid = Uuid::new_v4();
        let keyed: Vec<(String, ServerRequest)> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| (input_key(i), r))
            .collect();
        let inputs: serde_json::Map<String, Value> = keyed
            .iter()
            .map(|(key, r)| {
                let params = r.params.clone().unwrap_or_else(|| json!({}));
                (key.clone(), json!({ "method": r.method, "params": params }))
            })
            .collect();
        let state = RequestState {
            cid,
            pd: binding.principal.to_string(),
            exp: now_secs() + self.ttl.as_secs(),
            m: binding.method.to_string(),
            t: binding.target.to_string(),
            o: self
                .handoff
                .as_ref()
                .map(|h| h.tag().to_string())
                .unwrap_or_default(),
        };
        let token = format!("{STATE_PREFIX}{}", self.sealer.seal(PURPOSE, &state));
        let parked = Parked {
            call,
            requests: keyed,
        };
        self.parked.insert(cid, Arc::new(Mutex::new(Some(parked))));
        json!({
            "resultType": "input_required",
            "inputRequests": inputs,
            "requestState": token,
        })
    }

    /// For a retry carrying this gateway's `requestState`: delivers the client's input to the
    /// waiting upstream and returns the call to continue, or says which replica holds it.
    /// `Ok(None)` when the request carries no state of this gateway's (a first attempt, or a
    /// modern upstream's own state).
    ///
    /// # Errors
    /// [`GatewayError::InvalidParams`] for state that does not open, belongs to another
    /// principal or request, has expired, or whose call is no longer parked (here, or on the
    /// replica it names when there is no shared store).
    pub async fn resume(
        &self,
        params: &Value,
        binding: &Binding<'_>,
    ) -> Result<Option<Resumed>, GatewayError> {
        let Some(token) = params
            .get("requestState")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix(STATE_PREFIX))
        else {
            return Ok(None);
        };
        let invalid = |why: &str| GatewayError::InvalidParams {
            message: format!("Invalid requestState: {why}"),
            transport: false,
        };
        let state: RequestState = self
            .sealer
            .open(PURPOSE, token)
            .ok_or_else(|| invalid("it was not issued by this gateway or was altered"))?;
        if state.pd != binding.principal || state.m != binding.method || state.t != binding.target {
            return Err(invalid("it belongs to another request"));
        }
        if now_secs() > state.exp {
            return Err(invalid("it has expired; send the request again without it"));
        }
        if let Some(handoff) = &self.handoff
            && !state.o.is_empty()
            && state.o != handoff.tag()
            && !self.parked.contains_key(&state.cid)
        {
            return Ok(Some(Resumed::Elsewhere {
                handoff: Arc::clone(handoff),
                owner: state.o,
                cid: state.cid,
            }));
        }
        self.take(state.cid, params)
            .await
            .map(|c| Some(Resumed::Here(Box::new(c))))
    }

    /// Takes parked call `cid`, delivers the client's `inputResponses` from the retry's
    /// `params` to the waiting upstream, and returns the call to continue.
    ///
    /// # Errors
    /// [`GatewayError::InvalidParams`] when the call is no longer parked here.
    pub async fn take(&self, cid: Uuid, params: &Value) -> Result<RoutedCall, GatewayError> {
        let parked = self
            .parked
            .remove(&cid)
            .and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).take())
            .ok_or_else(|| GatewayError::InvalidParams {
                message: "Invalid requestState: the request is no longer waiting; send it again without requestState".into(),
                transport: false,
            })?;
        let Parked { call, requests } = parked;
        let responses = params.get("inputResponses");
        for (key, request) in requests {
            match responses.and_then(|r| r.get(&key)) {
                Some(answer) => {
                    if let Err(e) = request.respond(Ok(answer.clone())).await {
                        tracing::warn!(error = %e, "could not deliver the client's input upstream");
                    }
                }
                None => {
                    request
                        .reject(
                            code::INVALID_PARAMS,
                            "the client sent no answer for this request",
                        )
                        .await;
                }
            }
        }
        Ok(call)
    }
}
