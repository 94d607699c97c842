//! Rate limits per MCP call (DESIGN.md §5.10): global, per principal, per role, per upstream,
//! per tool, each a GCRA limiter ([`governor`]).
//!
//! A call is subject to every limit that applies to it. [`RateLimits::admit`] first asks each of
//! them without consuming ([`store`]), and only when all would let the call through consumes one
//! cell from each: a call one limit refuses costs nothing in the others. (Two calls racing
//! between the two passes can still both pass the first and one fail the second after a cell
//! was taken; that costs at most one cell per race and never lets a call exceed a limit.)
//! Nothing queues: a refused call is answered at once with the longest wait among the limits
//! that refused it.
//!
//! Memory stays bounded whatever the number of distinct principals: a key whose state is
//! indistinguishable from a fresh one (its bucket has refilled) carries no information, and
//! [`RateLimits::retain_recent`], run periodically, drops every such key.

pub mod rate;
pub mod shared;
pub mod store;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;

use crate::config::{LimitStore, LimitsConfig, OnStoreError, ToolMatch, UpstreamConfig};
use rate::Rate;
use store::{Probe, Store};

/// Which limit refused a call: the `limit` of the rejection and of
/// `mcpgate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `limits.global`.
    Global,
    /// `limits.per_principal`.
    PerPrincipal,
    /// A held role's `rate_limit` (policy files).
    PerRole,
    /// `upstreams[].rate_limit`.
    PerUpstream,
    /// `upstreams[].tools[…].rate_limit`.
    PerTool,
}

impl LimitKind {
    /// The name used on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::PerPrincipal => "per_principal",
            Self::PerRole => "per_role",
            Self::PerUpstream => "per_upstream",
            Self::PerTool => "per_tool",
        }
    }
}

/// A call refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// The limit with the longest wait among those that refused.
    pub limit: LimitKind,
    /// When the call would next be let through by every limit that refused it.
    pub retry_after: Duration,
}

/// One limit that applies to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied<'r> {
    /// Which limit.
    pub limit: LimitKind,
    /// Its rate.
    pub rate: Rate,
    /// For a role's limit, the role.
    pub role: Option<&'r str>,
}

impl Applied<'_> {
    fn new(limit: LimitKind, rate: Rate) -> Self {
        Self {
            limit,
            rate,
            role: None,
        }
    }
}

/// An [`Applied`] limit as reported (`mcpgate policy explain`): `{ limit, rate, role? }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedLimit {
    /// `global`, `per_principal`, `per_role`, `per_upstream` or `per_tool`.
    pub limit: &'static str,
    /// The rate as written back, e.g. `600/m` or `10/s (burst 3)`.
    pub rate: String,
    /// For a role's limit, the role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl From<Applied<'_>> for AppliedLimit {
    fn from(a: Applied<'_>) -> Self {
        Self {
            limit: a.limit.as_str(),
            rate: a.rate.to_string(),
            role: a.role.map(str::to_string),
        }
    }
}

impl std::fmt::Display for AppliedLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.limit, self.rate)?;
        if let Some(role) = &self.role {
            write!(f, " (role {role:?})")?;
        }
        Ok(())
    }
}

/// What one call is limited as.
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    /// The caller ([`principal_key`]).
    pub principal: u64,
    /// The target's upstream.
    pub upstream: &'a str,
    /// For `tools/call`: the tool, when one of the upstream's `tools:` entries matches it
    /// ([`crate::config::UpstreamTraffic::tool`]).
    pub tool: Option<ToolMatch<'a>>,
}

/// A GCRA limiter over 64-bit keys that can be peeked, and the rate it enforces.
struct Limiter<C: Clock> {
    rate: Rate,
    gcra: governor::RateLimiter<Probe, Store, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock + Clone> Limiter<C> {
    fn new(rate: Rate, clock: &C) -> Self {
        Self {
            rate,
            gcra: governor::RateLimiter::new(rate.quota(), Store::default(), clock.clone()),
        }
    }

    /// `Err(wait)` when `key` has no cell now; consumes one unless `peek`.
    fn check(&self, key: u64, peek: bool, clock: &C) -> Result<(), Duration> {
        self.gcra
            .check_key(&Probe { key, peek })
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

/// One upstream's limiters: the whole upstream's and one per `tools:` entry with a rate.
struct UpstreamLimiters<C: Clock> {
    whole: Option<Arc<Limiter<C>>>,
    /// By `tools:` entry index; `None` where the entry sets no rate.
    tools: Vec<Option<Arc<Limiter<C>>>>,
    /// The `tools:` entries the limiters were made for.
    entries: Vec<crate::config::ToolTraffic>,
}

/// The limits that come from the configuration file (a reload replaces them).
struct Configured<C: Clock> {
    global: Option<Arc<Limiter<C>>>,
    per_principal: Option<Arc<Limiter<C>>>,
    upstreams: HashMap<String, UpstreamLimiters<C>>,
}

/// Every rate limit of the gateway. Generic over the clock so tests can drive time.
pub struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    configured: RwLock<Arc<Configured<C>>>,
    /// One limiter per distinct role rate, keyed by (role, principal): roles come and go
    /// with policy reloads, rates are few.
    per_role: RwLock<HashMap<Rate, Arc<Limiter<C>>>>,
    /// With `store: redis`, the counters every replica shares (the limiters above then only
    /// say which limits apply and at what rate).
    shared: Option<Shared>,
}

/// The shared store and what to do while it cannot be reached.
struct Shared {
    store: shared::SharedStore,
    on_store_error: OnStoreError,
    /// Whether the last check reached the store (outages and recoveries are logged once).
    reachable: std::sync::atomic::AtomicBool,
}

/// How [`RateLimits::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every limit let the call through.
    Admitted,
    /// A limit refused it.
    Limited(RateLimited),
    /// The shared store could not be reached; `refused` when a limit that applies fails closed
    /// (`on_store_error: fail_closed`, or a role's limit from the policy files).
    StoreUnavailable {
        /// Whether the call is refused.
        refused: bool,
    },
}

impl RateLimits<DefaultClock> {
    /// The limits of a configuration, on the real clock.
    pub fn new(limits: &LimitsConfig, upstreams: &[UpstreamConfig]) -> Self {
        Self::with_clock(limits, upstreams, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// The limits of a configuration, on `clock`.
    pub fn with_clock(limits: &LimitsConfig, upstreams: &[UpstreamConfig], clock: C) -> Self {
        let configured = Configured::new(limits, upstreams, None, &clock);
        Self {
            configured: RwLock::new(Arc::new(configured)),
            per_role: RwLock::new(HashMap::new()),
            clock,
            shared: None,
        }
    }

    /// Counts in the store of `limits` (`store: redis`): every replica with the same store and
    /// key prefix shares the counters. A memory store changes nothing.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn with_store(mut self, limits: &LimitsConfig) -> Result<Self, redis::RedisError> {
        if let LimitStore::Redis(redis) = &limits.store {
            self.shared = Some(Shared {
                store: shared::SharedStore::new(redis)?,
                on_store_error: limits.on_store_error,
                reachable: std::sync::atomic::AtomicBool::new(true),
            });
        }
        Ok(self)
    }

    /// Decides a call against every limit that applies to it, in the store in use: in
    /// memory as [`RateLimits::admit`] does, or in the shared store in one round trip (all
    /// limits checked before any is consumed, atomically across replicas).
    pub async fn check<'r>(
        &self,
        call: &CallKey<'_>,
        roles: impl Iterator<Item = (&'r str, Rate)> + Clone,
    ) -> Checked {
        let Some(shared) = &self.shared else {
            return match self.admit(call, roles) {
                Ok(()) => Checked::Admitted,
                Err(limited) => Checked::Limited(limited),
            };
        };
        let mut cells = Vec::new();
        let mut kinds = Vec::new();
        self.each(call, roles, |_, key, applied| {
            cells.push(shared::Cell {
                name: cell_name(call, key, &applied),
                rate: applied.rate,
            });
            kinds.push(applied.limit);
        });
        use std::sync::atomic::Ordering;
        match shared.store.admit(&cells).await {
            Ok(verdict) => {
                if !shared.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("the rate-limit store answers again; limits are shared again");
                }
                match verdict {
                    shared::Verdict::Admitted => Checked::Admitted,
                    shared::Verdict::Refused { index, wait } => Checked::Limited(RateLimited {
                        limit: kinds.get(index).copied().unwrap_or(LimitKind::Global),
                        retry_after: wait,
                    }),
                }
            }
            Err(error) => {
                let refused = shared.on_store_error == OnStoreError::FailClosed
                    || kinds.contains(&LimitKind::PerRole);
                if shared.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(%error, on_store_error = ?shared.on_store_error, "the rate-limit store cannot be reached; role limits refuse calls, the others follow on_store_error (mcpgate_rate_limit_store_errors_total)");
                }
                Checked::StoreUnavailable { refused }
            }
        }
    }

    /// Puts the limits of a reloaded configuration in force. A limiter whose rate (and, per
    /// tool, whose `tools:` entry) is unchanged keeps its state, so a reload never hands out
    /// fresh cells; a new or changed limit starts full. Role limits come from the policy
    /// files and are untouched.
    pub fn reconfigure(&self, limits: &LimitsConfig, upstreams: &[UpstreamConfig]) {
        let mut current = self.configured.write().unwrap_or_else(|p| p.into_inner());
        let next = Configured::new(limits, upstreams, Some(&current), &self.clock);
        *current = Arc::new(next);
    }

    fn configured(&self) -> Arc<Configured<C>> {
        Arc::clone(&self.configured.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Lets a call through when every applicable limit has a cell for it, consuming one from
    /// each; `roles` are the (name, rate) of the caller's held roles that carry a rate limit.
    ///
    /// # Errors
    /// [`RateLimited`] naming the limit that refused (the longest wait among them); nothing
    /// is consumed then.
    pub fn admit<'r>(
        &self,
        call: &CallKey<'_>,
        roles: impl Iterator<Item = (&'r str, Rate)> + Clone,
    ) -> Result<(), RateLimited> {
        let mut refused: Option<RateLimited> = None;
        for peek in [true, false] {
            self.each(call, roles.clone(), |limiter, key, applied| {
                if let Err(wait) = limiter.check(key, peek, &self.clock)
                    && refused.is_none_or(|r| r.retry_after < wait)
                {
                    refused = Some(RateLimited {
                        limit: applied.limit,
                        retry_after: wait,
                    });
                }
            });
            if let Some(refused) = refused {
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Runs `f` on every limiter that applies to `call`, with the key the call has in it.
    fn each<'r>(
        &self,
        call: &CallKey<'_>,
        roles: impl Iterator<Item = (&'r str, Rate)>,
        mut f: impl FnMut(&Limiter<C>, u64, Applied<'r>),
    ) {
        let configured = self.configured();
        if let Some(l) = &configured.global {
            f(l, 0, Applied::new(LimitKind::Global, l.rate));
        }
        if let Some(l) = &configured.per_principal {
            f(
                l,
                call.principal,
                Applied::new(LimitKind::PerPrincipal, l.rate),
            );
        }
        for (role, rate) in roles {
            let limiter = self.role_limiter(rate);
            let applied = Applied {
                role: Some(role),
                ..Applied::new(LimitKind::PerRole, rate)
            };
            f(&limiter, mix(call.principal, role), applied);
        }
        let Some(upstream) = configured.upstreams.get(call.upstream) else {
            return;
        };
        if let Some(l) = &upstream.whole {
            f(l, 0, Applied::new(LimitKind::PerUpstream, l.rate));
        }
        if let Some(tool) = call.tool
            && let Some(Some(l)) = upstream.tools.get(tool.entry)
        {
            f(
                l,
                mix(0, tool.name),
                Applied::new(LimitKind::PerTool, l.rate),
            );
        }
    }

    fn role_limiter(&self, rate: Rate) -> Arc<Limiter<C>> {
        let read = self.per_role.read().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = read.get(&rate) {
            return Arc::clone(l);
        }
        drop(read);
        let mut write = self.per_role.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            write
                .entry(rate)
                .or_insert_with(|| Arc::new(Limiter::new(rate, &self.clock))),
        )
    }

    /// Drops every key whose bucket has refilled (it is then the same as a key never seen) and
    /// gives the memory back. Run it periodically.
    pub fn retain_recent(&self) {
        self.each_limiter(|l| {
            l.gcra.retain_recent();
            l.gcra.shrink_to_fit();
        });
    }

    /// Keys held across all limiters (what [`RateLimits::retain_recent`] bounds).
    pub fn keys(&self) -> usize {
        let mut keys = 0;
        self.each_limiter(|l| keys += l.gcra.len());
        keys
    }

    /// Runs `f` on every limiter.
    fn each_limiter(&self, mut f: impl FnMut(&Limiter<C>)) {
        let configured = self.configured();
        let roles = self.per_role.read().unwrap_or_else(|p| p.into_inner());
        let upstreams = configured
            .upstreams
            .values()
            .flat_map(|u| u.whole.iter().chain(u.tools.iter().flatten()));
        configured
            .global
            .iter()
            .chain(&configured.per_principal)
            .chain(roles.values())
            .chain(upstreams)
            .for_each(|l| f(l));
    }

    /// The limits that apply to `call`, in checking order (for `mcpgate policy explain`).
    pub fn applicable<'r>(
        &self,
        call: &CallKey<'_>,
        roles: impl Iterator<Item = (&'r str, Rate)>,
    ) -> Vec<Applied<'r>> {
        let mut out = Vec::new();
        self.each(call, roles, |_, _, applied| out.push(applied));
        out
    }
}

impl<C: Clock + Clone> Configured<C> {
    /// The limiters of a configuration, reusing those of `previous` whose limit is unchanged.
    fn new(
        limits: &LimitsConfig,
        upstreams: &[UpstreamConfig],
        previous: Option<&Self>,
        clock: &C,
    ) -> Self {
        let make = |rate: Option<Rate>, kept: Option<&Arc<Limiter<C>>>| {
            let rate = rate?;
            Some(match kept {
                Some(l) if l.rate == rate => Arc::clone(l),
                _ => Arc::new(Limiter::new(rate, clock)),
            })
        };
        let upstreams = upstreams
            .iter()
            .map(|u| {
                let before = previous.and_then(|p| p.upstreams.get(u.id.as_str()));
                let entries = &u.traffic.tools;
                let tools = entries
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let kept = before
                            .filter(|b| b.entries.get(i) == Some(t))
                            .and_then(|b| b.tools.get(i)?.as_ref());
                        make(t.rate_limit, kept)
                    })
                    .collect();
                let limiters = UpstreamLimiters {
                    whole: make(u.traffic.rate_limit, before.and_then(|b| b.whole.as_ref())),
                    tools,
                    entries: entries.clone(),
                };
                (u.id.to_string(), limiters)
            })
            .collect();
        Self {
            global: make(limits.global, previous.and_then(|p| p.global.as_ref())),
            per_principal: make(
                limits.per_principal,
                previous.and_then(|p| p.per_principal.as_ref()),
            ),
            upstreams,
        }
    }
}

/// How often [`sweep`] drops refilled keys.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Drops refilled keys every [`SWEEP_INTERVAL`], for as long as it runs.
pub async fn sweep(limits: Arc<RateLimits>) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        limits.retain_recent();
    }
}

/// The limiter key of a principal: the first 64 bits of its digest
/// ([`crate::auth::Principal::digest`], hex SHA-256), already uniformly spread.
pub fn principal_key(digest: &str) -> u64 {
    digest
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// The shared store's name of the cell `applied` takes for `call` (`key` is its in-memory
/// key): stable across replicas and versions (no process-local hashing).
fn cell_name(call: &CallKey<'_>, key: u64, applied: &Applied<'_>) -> String {
    match applied.limit {
        LimitKind::Global => "g".into(),
        LimitKind::PerPrincipal => format!("p:{key:016x}"),
        LimitKind::PerRole => format!(
            "r:{:016x}:{}",
            call.principal,
            applied.role.unwrap_or_default()
        ),
        LimitKind::PerUpstream => format!("u:{}", call.upstream),
        LimitKind::PerTool => match call.tool {
            Some(tool) => format!("t:{}:{}:{}", call.upstream, tool.entry, tool.name),
            None => format!("t:{}", call.upstream),
        },
    }
}

/// A key for `name` within `key` (a role of a principal, a tool of an upstream).
fn mix(key: u64, name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
