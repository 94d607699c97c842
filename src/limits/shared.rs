//! Rate-limit counters shared by every replica, in Redis (`limits.store: redis`, DESIGN.md
//! §5.12). One call is one round trip: a Lua script (GCRA, the same algorithm as the in-memory
//! limiters) checks every limit that applies to the call and, only when all admit it, consumes
//! one cell from each — atomically, on Redis's own clock, so replicas' clocks never matter.
//!
//! Each limiter cell is one key, `{prefix}:{rl}:{limit}:{interval}:{burst}:{key}`, holding the
//! theoretical arrival time (µs) and expiring when its bucket has refilled: idle keys cost
//! nothing. A rate that changes gets new keys (a fresh bucket). The `{rl}` hash tag keeps every
//! key of one call in one Redis Cluster slot.
//!
//! The connection is made lazily and remade after a failure ([`redis::aio::ConnectionManager`]);
//! a check that fails or takes longer than the configured timeout is a [`StoreError`], and
//! [`super::RateLimits`] applies `on_store_error`.

use std::time::Duration;

use super::rate::Rate;
use crate::config::RedisConfig;

/// GCRA over several keys at once. `KEYS[i]` is one limiter cell; `ARGV[2i-1]` its emission
/// interval and `ARGV[2i]` its tolerance (interval × (burst − 1)), both µs. Answers `{0, 0}`
/// when every key admits the call (and consumes a cell from each), else `{i, wait_µs}` for the
/// key with the longest wait (consuming nothing).
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local worst, worst_at = 0, 0
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local wait = tat - tonumber(ARGV[2 * i]) - now
  if wait > worst then worst, worst_at = wait, i end
end
if worst_at > 0 then return {worst_at, worst} end
for i = 1, #KEYS do
  local tat = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return {0, 0}
";

/// Why the store gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Redis refused or the connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// One limiter cell a call needs: which, and at what rate.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The key without prefix: the limit and whom it counts (e.g. `p:1f…` for a principal).
    pub name: String,
    /// The limit's rate.
    pub rate: Rate,
}

/// The store's answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every cell admitted the call; one was consumed from each.
    Admitted,
    /// The cell at `index` (of those asked) has the longest wait; nothing was consumed.
    Refused {
        /// Index into the cells asked.
        index: usize,
        /// Until that cell would admit the call.
        wait: Duration,
    },
}

/// The Redis connection and the GCRA script.
pub struct SharedStore {
    connection: crate::redis_client::Connection,
    script: redis::Script,
    timeout: Duration,
    prefix: String,
}

impl SharedStore {
    /// A store for `config`; connects on first use (the gateway starts while Redis is down).
    ///
    /// # Errors
    /// When the URL cannot be used (checked again here after validation).
    pub fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        let store = crate::redis_client::Store::open(config)?;
        Ok(Self {
            connection: store.connection(Duration::from_secs(2), config.timeout)?,
            script: redis::Script::new(GCRA),
            timeout: config.timeout,
            prefix: format!("{}:{{rl}}", config.key_prefix),
        })
    }

    /// Checks `cells` and consumes one from each when all admit the call.
    ///
    /// # Errors
    /// [`StoreError`] when Redis does not answer in time or refuses.
    pub async fn admit(&self, cells: &[Cell]) -> Result<Verdict, StoreError> {
        if cells.is_empty() {
            return Ok(Verdict::Admitted);
        }
        let mut invocation = self.script.prepare_invoke();
        for cell in cells {
            let interval = interval_micros(&cell.rate);
            let tolerance = interval.saturating_mul(u64::from(cell.rate.burst.get() - 1));
            invocation
                .key(format!(
                    "{}:{}:{}:{}",
                    self.prefix, interval, cell.rate.burst, cell.name
                ))
                .arg(interval)
                .arg(tolerance);
        }
        let mut connection = self.connection.clone();
        let answer: (u64, u64) =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| StoreError::Timeout(self.timeout))??;
        Ok(match answer {
            (0, _) => Verdict::Admitted,
            (i, wait) => Verdict::Refused {
                index: usize::try_from(i - 1).unwrap_or(0),
                wait: Duration::from_micros(wait),
            },
        })
    }
}

/// One cell's worth of time, µs (at least 1).
fn interval_micros(rate: &Rate) -> u64 {
    let micros = rate.period.as_micros() / u128::from(rate.count.get());
    u64::try_from(micros).unwrap_or(u64::MAX).max(1)
}
