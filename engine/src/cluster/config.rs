//! The settings of cluster mode.

use std::path::PathBuf;
use std::time::Duration;

use super::{envelope, redis_url};
use crate::Error;

/// Settings of cluster mode ([`Config::cluster`](crate::Config::cluster)).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Redis server, e.g. `redis://127.0.0.1:6379`; a Sentinel set and the name of its
    /// master, e.g. `redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster` (the node asks
    /// the Sentinels for the master on every connection and follows a failover); or a Redis
    /// Cluster by some of its nodes, e.g. `redis+cluster://10.0.0.1:7000,10.0.0.2:7000`
    /// (sharded pub/sub: each id's channel and history on the shard of its slot).
    pub redis_url: String,
    /// Prefix of every channel wspush uses.
    pub prefix: String,
    /// This node's id in envelopes (1 to 64 bytes). `None`: a random id per start, logged.
    pub node_id: Option<String>,
    /// Also accept the original JSON format `{"KEY": id, "VALUE": text}` on this channel.
    pub compat_channel: Option<String>,
    /// Also publish every text send in the original format on `compat_channel`, for nodes
    /// of the original design in a mixed fleet.
    pub compat_publish: bool,
    /// Most publishes waiting for Redis (e.g. while it is unreachable); more are dropped
    /// and counted.
    pub queue_limit: usize,
    /// Most bytes of publishes waiting for Redis (channel names and payloads); a publish
    /// that would go over is dropped and counted. At least twice the largest message
    /// ([`Config::max_message_size`](crate::Config::max_message_size),
    /// [`Config::max_outbound_message_size`](crate::Config::max_outbound_message_size)).
    pub queue_bytes: usize,
    /// Publish every message clients send as JSON `{"id", "node", "data"}` for backend
    /// services.
    pub publish_inbound: bool,
    /// Where inbound messages go. `None`: `{prefix}inbound`.
    pub inbound_channel: Option<String>,
    /// Messages kept per id in Redis (about: the stream is trimmed with `MAXLEN ~`); 0: no
    /// history, sends are plain live publishes.
    pub history_size: usize,
    /// How long an id's history lives after its last message (whole milliseconds).
    pub history_ttl: Duration,
    /// `rediss://` and `rediss+sentinel://`: a PEM file of the CA certificates to trust for
    /// Redis's (and the Sentinels') certificates, instead of the system's. `None`: the
    /// system's.
    pub tls_ca: Option<PathBuf>,
}

impl ClusterConfig {
    /// Defaults for the Redis server at `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            prefix: "wspush:".into(),
            node_id: None,
            compat_channel: None,
            compat_publish: false,
            queue_limit: 100_000,
            queue_bytes: 64 << 20,
            publish_inbound: true,
            inbound_channel: None,
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            tls_ca: None,
        }
    }

    /// [`ClusterConfig::redis_url`] with its passwords, if it has any, replaced by `***`:
    /// fit for logs.
    pub fn redacted_url(&self) -> String {
        redis_url::redact(&self.redis_url)
    }

    /// Checks every setting, naming the first bad one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |setting: &'static str, reason: String| Err(Error::InvalidConfig { setting, reason });
        let target = match redis_url::parse(&self.redis_url) {
            Ok(target) => target,
            Err(reason) => return bad("redis", reason),
        };
        let tls = match &target {
            redis_url::RedisTarget::Single(url) => url.starts_with("rediss://"),
            redis_url::RedisTarget::Sentinel(sentinel) => sentinel.tls,
            redis_url::RedisTarget::Cluster(cluster) => cluster.tls,
        };
        if self.tls_ca.is_some() && !tls {
            return bad(
                "redis_tls_ca",
                "needs a TLS URL for redis (rediss://, rediss+sentinel:// or rediss+cluster://)".into(),
            );
        }
        if self.prefix.is_empty() {
            return bad("redis_prefix", "must not be empty".into());
        }
        if matches!(target, redis_url::RedisTarget::Cluster(_)) && self.prefix.contains(['{', '}']) {
            return bad(
                "redis_prefix",
                "must not hold `{` or `}` with a Redis Cluster: each id is the hash tag of its names".into(),
            );
        }
        if let Some(node_id) = &self.node_id {
            if node_id.is_empty() || node_id.len() > envelope::MAX_NODE_ID_LEN {
                return bad("node_id", format!("must be 1 to {} bytes", envelope::MAX_NODE_ID_LEN));
            }
        }
        if self.compat_channel.as_deref() == Some("") {
            return bad("compat_channel", "must not be empty".into());
        }
        if self.compat_publish && self.compat_channel.is_none() {
            return bad("compat_publish", "needs compat_channel to publish on".into());
        }
        if self.queue_limit == 0 {
            return bad("redis_queue_limit", "must be at least 1".into());
        }
        if self.queue_bytes == 0 {
            return bad("redis_queue_bytes", "must be at least 1".into());
        }
        if self.inbound_channel.as_deref() == Some("") {
            return bad("inbound_channel", "must not be empty".into());
        }
        if self.history_size > 0 && self.history_ttl.as_millis() == 0 {
            return bad("history_ttl", "must be at least 1 ms".into());
        }
        Ok(())
    }

    /// Whether `redis_url` names a Redis Cluster (sharded pub/sub, ids as hash tags).
    pub(crate) fn is_redis_cluster(&self) -> bool {
        self.redis_url.starts_with("redis+cluster://") || self.redis_url.starts_with("rediss+cluster://")
    }

    /// Whether sends keep a history (and get positions).
    pub fn history(&self) -> bool {
        self.history_size > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_by_name() {
        let setting = |config: ClusterConfig| match config.validate() {
            Err(Error::InvalidConfig { setting, .. }) => setting,
            other => panic!("expected an invalid setting, got {other:?}"),
        };
        assert!(ClusterConfig::new("redis://127.0.0.1:6379").validate().is_ok());
        assert_eq!(setting(ClusterConfig::new("notaurl")), "redis");
        assert_eq!(
            setting(ClusterConfig { node_id: Some("x".repeat(65)), ..ClusterConfig::new("redis://h") }),
            "node_id"
        );
        assert_eq!(
            setting(ClusterConfig { compat_publish: true, ..ClusterConfig::new("redis://h") }),
            "compat_publish"
        );
        assert_eq!(
            setting(ClusterConfig { queue_limit: 0, ..ClusterConfig::new("redis://h") }),
            "redis_queue_limit"
        );
        assert_eq!(
            setting(ClusterConfig { queue_bytes: 0, ..ClusterConfig::new("redis://h") }),
            "redis_queue_bytes"
        );
        let no_ttl = ClusterConfig {
            history_size: 10,
            history_ttl: Duration::ZERO,
            ..ClusterConfig::new("redis://h")
        };
        assert_eq!(setting(no_ttl), "history_ttl");
        assert!(!ClusterConfig::new("redis://h").history(), "history is off by default");
        let braced = ClusterConfig { prefix: "{ws}:".into(), ..ClusterConfig::new("redis+cluster://h:7000") };
        assert_eq!(setting(braced.clone()), "redis_prefix");
        assert!(ClusterConfig { redis_url: "redis://h".into(), ..braced }.validate().is_ok());
    }
}
