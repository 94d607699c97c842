//! How the gateway reaches the shared store (`limits.store: redis`, DESIGN.md §5.12): every
//! part that shares state through Redis (rate limits, revocations, replay logs, MRTR hand-offs,
//! task owners, session events, upstream sessions, the background writer) opens its
//! connections through [`Store`] — one per configured store, shared by all of them — so the URL
//! handling, the connection settings and Sentinel failover are decided once.
//!
//! One Redis: a fixed address. Redis Sentinel (`limits.redis.sentinels`): the master is looked
//! up through the Sentinels (redis-rs checks its `ROLE`) on first use, and looked up again after
//! a command fails in a way that says the master is gone or demoted — an I/O error, a refused or
//! dropped connection, a timeout, `READONLY` (the old master came back as a replica) — or is
//! abandoned by its caller before an answer. When a lookup names another address, every
//! connection is remade to it before its next command, so one part noticing a failover (the
//! pub/sub listeners notice a lost master at once) moves all of them. Commands in flight at the
//! moment fail (callers treat them as store errors). Redis Cluster is not supported: the
//! replica presence checks use `PUBSUB NUMSUB`, which a cluster answers per node.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, RedisFuture};

use crate::config::RedisConfig;

/// Longest wait between reconnection attempts after Redis went away.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where the shared store is. Cheap to clone; clones share the Sentinel lookups, and so do
/// stores opened for the same URLs while one of them lives ([`Store::open`]).
#[derive(Clone)]
pub struct Store(Arc<Target>);

enum Target {
    /// One Redis at a fixed address.
    Direct(redis::Client),
    /// The master a set of Sentinels names.
    Sentinel {
        sentinels: Box<tokio::sync::Mutex<SentinelClient>>,
        master: RwLock<Master>,
        /// The master's database.
        db: i64,
    },
}

/// The master as last looked up.
#[derive(Default)]
struct Master {
    /// `None` until the first use and after a failure.
    client: Option<redis::Client>,
    /// Its address (kept when the client is forgotten).
    addr: String,
    /// How often the Sentinels named another address: a connection made before the last
    /// change goes to a former master and is remade.
    moved: u64,
}

/// The stores open now, by their URLs, so that every part of the gateway follows one master.
static OPEN: std::sync::Mutex<Vec<(String, std::sync::Weak<Target>)>> =
    std::sync::Mutex::new(Vec::new());

impl Store {
    /// The store of `redis` (nothing is connected yet): the one already open for the same URLs,
    /// if any, so that a failover one part of the gateway notices moves every part.
    ///
    /// # Errors
    /// When a URL cannot be used.
    pub fn open(redis: &RedisConfig) -> redis::RedisResult<Self> {
        let mut key = redis.url.expose().to_string();
        for node in &redis.sentinels {
            key.push(' ');
            key.push_str(node.expose());
        }
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, target)| target.strong_count() > 0);
        if let Some(target) = open
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, t)| t.upgrade())
        {
            return Ok(Self(target));
        }
        let target = Arc::new(if redis.sentinels.is_empty() {
            Target::Direct(redis::Client::open(redis.url.expose())?)
        } else {
            Target::Sentinel {
                sentinels: Box::new(tokio::sync::Mutex::new(sentinel_client(redis)?)),
                master: RwLock::new(Master::default()),
                db: redis
                    .url
                    .expose()
                    .into_connection_info()?
                    .redis_settings()
                    .db(),
            }
        });
        open.push((key, Arc::downgrade(&target)));
        Ok(Self(target))
    }

    /// A client for the master: the fixed one, or the one the Sentinels name (looked up now if
    /// not known).
    ///
    /// # Errors
    /// When no Sentinel answers or none knows a master by that name.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        Ok(self.master().await?.1)
    }

    /// How often the master moved (0 for one fixed Redis).
    fn moved(&self) -> u64 {
        match &*self.0 {
            Target::Direct(_) => 0,
            Target::Sentinel { master, .. } => read(master).moved,
        }
    }

    /// [`Store::client`] with how often the master had moved then.
    async fn master(&self) -> redis::RedisResult<(u64, redis::Client)> {
        let (sentinels, master) = match &*self.0 {
            Target::Direct(client) => return Ok((0, client.clone())),
            Target::Sentinel {
                sentinels, master, ..
            } => (sentinels, master),
        };
        let known = |m: &Master| m.client.clone().map(|c| (m.moved, c));
        if let Some(known) = known(&read(master)) {
            return Ok(known);
        }
        let mut sentinels = sentinels.lock().await;
        // Another caller may have looked it up while this one waited.
        if let Some(known) = known(&read(master)) {
            return Ok(known);
        }
        let client = sentinels.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let mut master = master.write().unwrap_or_else(|p| p.into_inner());
        if master.addr != addr {
            tracing::info!(master = %addr, "the Sentinels name the Redis master");
            master.moved += 1;
            master.addr = addr;
        }
        master.client = Some(client.clone());
        Ok((master.moved, client))
    }

    /// After `error` on a connection to the master: forgets the master when the error says it
    /// is gone or demoted, so the next use looks it up again. Nothing for one fixed Redis.
    fn failed(&self, error: &redis::RedisError) {
        if master_lost(error) {
            self.forget_master(error);
        }
    }

    /// Forgets the master (for `why`), so the next use asks the Sentinels again.
    fn forget_master(&self, why: &dyn std::fmt::Display) {
        if let Target::Sentinel { master, .. } = &*self.0 {
            let mut master = master.write().unwrap_or_else(|p| p.into_inner());
            if master.client.take().is_some() {
                tracing::warn!(master = %master.addr, reason = %why,
                    "lost the Redis master; asking the Sentinels again");
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
                current: std::sync::Mutex::default(),
            })),
        })
    }
}

fn read(master: &RwLock<Master>) -> std::sync::RwLockReadGuard<'_, Master> {
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
    current: std::sync::Mutex<Current>,
}

/// The connection to the master last looked up.
#[derive(Default)]
struct Current {
    /// The connection and its generation (counting lookups).
    manager: Option<(u64, ConnectionManager)>,
    generation: u64,
    /// [`Master::moved`] when the connection was made.
    moved: u64,
    /// When a connection was last dropped: at most one per [`FORGET_EVERY`], so a slow master
    /// is not answered with a storm of lookups.
    forgotten_at: Option<tokio::time::Instant>,
}

/// Shortest time between two lookups of the master by one connection.
const FORGET_EVERY: Duration = Duration::from_secs(1);

impl Following {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to the current master and its generation, made after a lookup if there
    /// is none.
    async fn manager(&self) -> redis::RedisResult<(u64, ConnectionManager)> {
        let moved = self.store.moved();
        {
            let current = self.current();
            if let Some(made) = current.manager.clone()
                && current.moved == moved
            {
                return Ok(made);
            }
        }
        // None yet, lost, or to a former master (another part of the gateway saw it move).
        let (moved, client) = self.store.master().await?;
        let mut current = self.current();
        if let Some(made) = current.manager.clone()
            && current.moved == moved
        {
            return Ok(made);
        }
        current.generation += 1;
        current.moved = moved;
        let made = (
            current.generation,
            ConnectionManager::new_lazy_with_config(client, self.config.clone())?,
        );
        current.manager = Some(made.clone());
        Ok(made)
    }

    /// Drops connection `generation` and the master it went to, so the next command
    /// connects to the master the Sentinels name then.
    fn forget(&self, generation: u64, why: &dyn std::fmt::Display) {
        let mut current = self.current();
        let recently = current
            .forgotten_at
            .is_some_and(|at| at.elapsed() < FORGET_EVERY);
        if current.generation != generation || current.manager.is_none() || recently {
            return;
        }
        current.manager = None;
        current.forgotten_at = Some(tokio::time::Instant::now());
        drop(current);
        self.store.forget_master(why);
    }

    /// Sends through the current master's connection with `send`; a failure that says the
    /// master is lost, or a command abandoned before its answer (the caller's timeout ran out:
    /// the master may not answer at all), drops the connection.
    async fn send<'a, T>(
        &'a self,
        send: impl FnOnce(ConnectionManager) -> RedisFuture<'a, T>,
    ) -> redis::RedisResult<T> {
        let (generation, manager) = self.manager().await?;
        let mut pending = Abandoned {
            following: self,
            generation,
            armed: true,
        };
        let answer = send(manager).await;
        pending.armed = false;
        if let Err(error) = &answer
            && master_lost(error)
        {
            self.forget(generation, error);
        }
        answer
    }
}

/// Drops the connection of a command abandoned before its answer.
struct Abandoned<'a> {
    following: &'a Following,
    generation: u64,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.following
                .forget(self.generation, &"a command got no answer in time");
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Self::Direct(manager) => manager.req_packed_command(cmd),
            Self::Following(following) => following
                .send(move |mut manager| {
                    async move { manager.req_packed_command(cmd).await }.boxed()
                })
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
            Self::Following(following) => following
                .send(move |mut manager| {
                    async move { manager.req_packed_commands(pipeline, offset, count).await }
                        .boxed()
                })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(url: &str, sentinels: &[&str]) -> RedisConfig {
        RedisConfig {
            url: Secret::new(url.into()),
            timeout: Duration::from_millis(100),
            key_prefix: "test".into(),
            sentinels: sentinels.iter().map(|s| Secret::new((*s).into())).collect(),
        }
    }

    #[test]
    fn one_store_per_configured_store_while_it_lives() {
        let sentinel = config("redis://:pw@mymaster/2", &["redis://127.0.0.1:26379"]);
        let (a, b) = (
            Store::open(&sentinel).unwrap(),
            Store::open(&sentinel).unwrap(),
        );
        assert!(Arc::ptr_eq(&a.0, &b.0), "the same URLs share one store");
        let other = Store::open(&config(
            "redis://:pw@mymaster/2",
            &["redis://127.0.0.1:26380"],
        ));
        assert!(!Arc::ptr_eq(&a.0, &other.unwrap().0));
        let Target::Sentinel { db, .. } = &*a.0 else {
            panic!("a Sentinel store");
        };
        assert_eq!(*db, 2, "the URL's database applies to the master");
        let weak = Arc::downgrade(&a.0);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "not kept once unused");
    }

    #[test]
    fn a_lost_or_demoted_master_is_told_from_a_refusal() {
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(master_lost(&io));
        let readonly = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(master_lost(&readonly), "{readonly:?} {:?}", readonly.code());
        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(!master_lost(&script));
    }
}
