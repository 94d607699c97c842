//! Redis streams as one-way pipes between replicas (`limits.store: redis`, DESIGN.md §5.12):
//! a writer appends entries (`XADD`, the key kept alive by `EXPIRE`), a reader on another
//! replica follows them (`XREAD BLOCK`, on a connection of its own so that blocking holds up
//! nobody else). Used by the shared response-stream logs ([`super::replay_mirror`]) and by the
//! answers of MRTR retries handed to another replica ([`super::handoff`]).

use std::time::Duration;

use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};

/// How long one `XREAD` blocks at most; a reader checks its own client in between.
pub const BLOCK: Duration = Duration::from_secs(5);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries returned by one read at most.
const READ_COUNT: usize = 256;

/// The commands appending `fields` to stream `key` under entry id `id` (`*` lets Redis
/// choose), trimming the stream to about `max_len` entries when given, and setting the key's
/// expiry to `ttl` (at least one second).
pub fn append(
    key: &str,
    id: &str,
    max_len: Option<usize>,
    fields: &[(&str, &[u8])],
    ttl: Duration,
) -> Vec<redis::Cmd> {
    let mut add = redis::cmd("XADD");
    add.arg(key);
    if let Some(max_len) = max_len {
        add.arg("MAXLEN").arg("~").arg(max_len);
    }
    add.arg(id);
    for (field, value) in fields {
        add.arg(*field).arg(*value);
    }
    let mut expire = redis::cmd("EXPIRE");
    expire.arg(key).arg(ttl.as_secs().max(1));
    vec![add, expire]
}

/// Reads one stream from a given entry on.
pub struct Follower {
    connection: redis::aio::MultiplexedConnection,
    key: String,
    last: String,
}

impl Follower {
    /// A reader of stream `key` that starts after entry id `after` (`0-0`: from the start).
    ///
    /// # Errors
    /// When Redis cannot be reached within two seconds.
    pub async fn connect(
        store: &crate::redis_client::Store,
        key: String,
        after: String,
    ) -> redis::RedisResult<Self> {
        // The response timeout must outlast a blocking read.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(BLOCK + CONNECT_TIMEOUT));
        let connection = store.dedicated(&config).await?;
        Ok(Self {
            connection,
            key,
            last: after,
        })
    }

    /// Whether the stream exists.
    ///
    /// # Errors
    /// When Redis fails or does not answer.
    pub async fn exists(&mut self) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(&self.key)
            .query_async(&mut self.connection)
            .await
    }

    /// The entries after the last one returned, waiting up to [`BLOCK`] for some; empty when
    /// none came.
    ///
    /// # Errors
    /// When Redis fails or does not answer.
    pub async fn next(&mut self) -> redis::RedisResult<Vec<StreamId>> {
        self.next_within(BLOCK).await
    }

    /// [`Follower::next`], waiting up to `block` (at most [`BLOCK`]).
    ///
    /// # Errors
    /// When Redis fails or does not answer.
    pub async fn next_within(&mut self, block: Duration) -> redis::RedisResult<Vec<StreamId>> {
        let block = usize::try_from(block.min(BLOCK).as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default().block(block).count(READ_COUNT);
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&options)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last)
            .query_async(&mut self.connection)
            .await?;
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if let Some(last) = entries.last() {
            self.last.clone_from(&last.id);
        }
        Ok(entries)
    }
}
