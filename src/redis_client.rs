//! How the gateway reaches the shared store (`limits.store: redis`, DESIGN.md §5.12): every
//! part that shares state through Redis (rate limits, revocations, replay logs, MRTR hand-offs,
//! task owners, session events, upstream sessions, the background writer) opens its
//! connections through one [`Store`], so the URL handling, the connection settings and
//! Sentinel failover are decided once.
//!
//! One Redis: a fixed address. Redis Sentinel (`limits.redis.sentinels`): the master is looked
//! up through the Sentinels (redis-rs checks its `ROLE`) on first use, and looked up again after
//! a command fails in a way that says the master is gone or demoted — an I/O error, a refused or
//! dropped connection, a timeout, or `READONLY` (the old master came back as a replica). Commands
//! in flight at that moment fail (callers treat them as store errors); the next ones go to the
//! new master. Redis Cluster is not supported: the replica presence checks use `PUBSUB NUMSUB`,
//! which a cluster answers per node.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, RedisFuture};

use crate::config::RedisConfig;

/// Longest wait between reconnection attempts after Redis went away.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where the shared store is. Cheap to clone; clones share the Sentinel lookups.
#[derive(Clone)]
pub struct Store(Arc<Target>);

enum Target {
    /// One Redis at a fixed address.
    Direct(redis::Client),
    /// The master a set of Sentinels names.
    Sentinel {
        sentinels: Box<tokio::sync::Mutex<SentinelClient>>,
        /// The master last looked up; `None` until the first use and after a failure.
        master: RwLock<Option<redis::Client>>,
        /// The master's database.
        db: i64,
    },
}

impl Store {
    /// The store of `redis` (nothing is connected yet).
    ///
    /// # Errors
    /// When a URL cannot be used.
    pub fn open(redis: &RedisConfig) -> redis::RedisResult<Self> {
        if redis.sentinels.is_empty() {
            return Ok(Self(Arc::new(Target::Direct(redis::Client::open(
                redis.url.expose(),
            )?))));
        }
        Ok(Self(Arc::new(Target::Sentinel {
            sentinels: Box::new(tokio::sync::Mutex::new(sentinel_client(redis)?)),
            master: RwLock::new(None),
            db: redis
                .url
                .expose()
                .into_connection_info()?
                .redis_settings()
                .db(),
        })))
    }

    /// A client for the master: the fixed one, or the one the Sentinels name (looked up now if
    /// not known).
    ///
    /// # Errors
    /// When no Sentinel answers or none knows a master by that name.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match &*self.0 {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel {
                sentinels, master, ..
            } => {
                if let Some(client) = read(master).clone() {
                    return Ok(client);
                }
                let mut sentinels = sentinels.lock().await;
                // Another caller may have looked it up while this one waited.
                if let Some(client) = read(master).clone() {
                    return Ok(client);
                }
                let client = sentinels.async_get_client().await?;
                tracing::info!(
                    master = %client.get_connection_info().addr(),
                    "the Sentinels name the Redis master"
                );
                *master.write().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
                Ok(client)
            }
        }
    }

    /// After `error` on a connection to the master: forgets the master when the error says it
    /// is gone or demoted, so the next use looks it up again. Nothing for one fixed Redis.
    pub fn failed(&self, error: &redis::RedisError) {
        if let Target::Sentinel { master, .. } = &*self.0
            && master_lost(error)
        {
            let forgotten = master.write().unwrap_or_else(|p| p.into_inner()).take();
            if forgotten.is_some() {
                tracing::warn!(%error, "lost the Redis master; asking the Sentinels again");
            }
        }
    }

    /// A pub/sub connection to the master.
    ///
    /// # Errors
    /// When it cannot be opened (the master is forgotten if it is gone).
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let client = self.client().await?;
        client
            .get_async_pubsub()
            .await
            .inspect_err(|e| self.failed(e))
    }

    /// A connection of its own to the master (for blocking reads), with `config`.
    ///
    /// # Errors
    /// When it cannot be opened (the master is forgotten if it is gone).
    pub async fn dedicated(
        &self,
        config: &redis::AsyncConnectionConfig,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = self.client().await?;
        client
            .get_multiplexed_async_connection_with_config(config)
            .await
            .inspect_err(|e| self.failed(e))
    }

    /// A connection that connects on first use (the gateway starts while Redis is down) and
    /// again by itself after a failure (at most [`MAX_RECONNECT_DELAY`] apart); connecting may
    /// take `connect`, each command `respond`. Behind Sentinels it follows the master.
    ///
    /// # Errors
    /// When the connection cannot be set up.
    pub fn connection(
        &self,
        connect: Duration,
        respond: Duration,
    ) -> redis::RedisResult<Connection> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(respond))
            .set_max_delay(MAX_RECONNECT_DELAY);
        Ok(match &*self.0 {
            Target::Direct(client) => Connection::Direct(ConnectionManager::new_lazy_with_config(
                client.clone(),
                config,
            )?),
            Target::Sentinel { db, .. } => Connection::Following(Arc::new(Following {
                store: self.clone(),
                db: *db,
                config,
                current: tokio::sync::Mutex::new(None),
            })),
        })
    }
}

fn read(
    master: &RwLock<Option<redis::Client>>,
) -> std::sync::RwLockReadGuard<'_, Option<redis::Client>> {
    master.read().unwrap_or_else(|p| p.into_inner())
}

/// Whether `error` says the master is unreachable or no longer the master.
fn master_lost(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.code() == Some("READONLY")
}

/// The Sentinel client for `redis`: the master's name is the URL's host; the URL's user,
/// password, database and scheme apply to the master, the first Sentinel URL's credentials to
/// the Sentinels.
fn sentinel_client(redis: &RedisConfig) -> redis::RedisResult<SentinelClient> {
    let invalid =
        |what: &'static str| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, what));
    let master = url::Url::parse(redis.url.expose())
        .map_err(|_| invalid("limits.redis.url is not a URL"))?;
    let name = master
        .host_str()
        .ok_or_else(|| invalid("limits.redis.url names no master"))?;
    let mut nodes = Vec::with_capacity(redis.sentinels.len());
    let mut sentinel_auth = None;
    for node in &redis.sentinels {
        let info = node.expose().into_connection_info()?;
        if sentinel_auth.is_none() && info.redis_settings().password().is_some() {
            sentinel_auth = Some((
                info.redis_settings().username().map(str::to_string),
                info.redis_settings().password().map(str::to_string),
            ));
        }
        nodes.push(info.addr().clone());
    }
    let master_info = redis.url.expose().into_connection_info()?;
    let mut builder = SentinelClientBuilder::new(nodes, name, SentinelServerType::Master)?
        .set_client_to_redis_db(master_info.redis_settings().db());
    if let Some(user) = master_info.redis_settings().username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = master_info.redis_settings().password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if master.scheme() == "rediss" {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
    }
    if let Some((user, password)) = sentinel_auth {
        if let Some(user) = user {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    builder.build()
}

/// A connection to the store's master; see [`Store::connection`]. Cheap to clone: clones share
/// the underlying connection.
#[derive(Clone)]
pub enum Connection {
    /// To one Redis at a fixed address.
    Direct(ConnectionManager),
    /// To whichever node the Sentinels name as master.
    Following(Arc<Following>),
}

/// The state of a [`Connection::Following`].
pub struct Following {
    store: Store,
    db: i64,
    config: ConnectionManagerConfig,
    /// The connection to the master last looked up.
    current: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl Following {
    /// The connection to the current master, made after a lookup if there is none.
    async fn manager(&self) -> redis::RedisResult<ConnectionManager> {
        let mut current = self.current.lock().await;
        if let Some(manager) = &*current {
            return Ok(manager.clone());
        }
        let client = self.store.client().await?;
        let manager = ConnectionManager::new_lazy_with_config(client, self.config.clone())?;
        *current = Some(manager.clone());
        Ok(manager)
    }

    /// After `error`: drops the connection if the master is lost, so the next command
    /// connects to the master the Sentinels name then.
    async fn failed(&self, error: &redis::RedisError) {
        if master_lost(error) {
            self.current.lock().await.take();
            self.store.failed(error);
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Self::Direct(manager) => manager.req_packed_command(cmd),
            Self::Following(following) => async move {
                let mut manager = following.manager().await?;
                let answer = manager.req_packed_command(cmd).await;
                if let Err(error) = &answer {
                    following.failed(error).await;
                }
                answer
            }
            .boxed(),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Direct(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Following(following) => async move {
                let mut manager = following.manager().await?;
                let answer = manager.req_packed_commands(pipeline, offset, count).await;
                if let Err(error) = &answer {
                    following.failed(error).await;
                }
                answer
            }
            .boxed(),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Direct(manager) => manager.get_db(),
            Self::Following(following) => following.db,
        }
    }
}
