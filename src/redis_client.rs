//! How the gateway reaches the shared store (`limits.store: redis`, DESIGN.md §5.12): every
//! part that shares state through Redis (rate limits, revocations, replay logs, MRTR hand-offs,
//! task owners, session events, the background writer) opens its client and connections here,
//! so the URL handling and the connection settings are decided once.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// Longest wait between reconnection attempts after Redis went away.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// A client for the Redis of `redis` (connection details only: nothing is connected yet).
///
/// # Errors
/// When the URL cannot be used.
pub fn client(redis: &RedisConfig) -> redis::RedisResult<redis::Client> {
    redis::Client::open(redis.url.expose())
}

/// A connection through `client` that connects on first use (the gateway starts while Redis is
/// down) and again by itself after a failure (at most [`MAX_RECONNECT_DELAY`] apart);
/// connecting may take `connect`, each command `respond`.
///
/// # Errors
/// When the connection cannot be set up from `client`.
pub fn connection(
    client: &redis::Client,
    connect: Duration,
    respond: Duration,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(respond))
        .set_max_delay(MAX_RECONNECT_DELAY);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}
