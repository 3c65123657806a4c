//! Cluster mode: a fleet of nodes that share nothing but Redis.
//!
//! A node SUBSCRIBEs `{prefix}u:{id}` while it holds a socket of `id`, and `{prefix}all`
//! for broadcasts. A send is delivered to local sockets at once and published (as an
//! [`envelope`]) for the other nodes; a node skips envelopes from itself, so every socket
//! gets exactly one copy. Subscriptions are batched (many channels per command), publishes
//! are pipelined (everything pending in one round trip), and both connections reconnect
//! with jittered backoff, resubscribing every held id.
//!
//! Delivery across nodes is at most once: Redis pub/sub keeps nothing for a node that is
//! disconnected, and a pipeline in flight when the connection drops is counted as lost.

mod backplane;
pub mod compat;
pub mod envelope;
pub(crate) mod resp;
mod subscription;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

pub(crate) use backplane::Backplane;

use crate::receipt::Collector;
use crate::stats::bump;
use crate::{worker, Error, Message};

/// Settings of cluster mode ([`Config::cluster`](crate::Config::cluster)).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Redis server, e.g. `redis://127.0.0.1:6379`.
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
    /// Publish every message clients send as JSON `{"id", "node", "data"}` for backend
    /// services.
    pub publish_inbound: bool,
    /// Where inbound messages go. `None`: `{prefix}inbound`.
    pub inbound_channel: Option<String>,
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
            publish_inbound: true,
            inbound_channel: None,
        }
    }

    /// [`ClusterConfig::redis_url`] with its password, if it has one, replaced by `***`:
    /// fit for logs.
    pub fn redacted_url(&self) -> String {
        let url = self.redis_url.as_str();
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
        let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
        let authority = &url[scheme_end..authority_end];
        let Some(at) = authority.rfind('@') else { return url.to_owned() };
        let Some(colon) = authority[..at].find(':') else { return url.to_owned() };
        format!("{}***{}", &url[..scheme_end + colon + 1], &url[scheme_end + at..])
    }

    /// Checks every setting, naming the first bad one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |setting: &'static str, reason: String| Err(Error::InvalidConfig { setting, reason });
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return bad("redis", format!("`{}` is not a Redis URL: {e}", self.redacted_url()));
        }
        if self.prefix.is_empty() {
            return bad("redis_prefix", "must not be empty".into());
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
        if self.inbound_channel.as_deref() == Some("") {
            return bad("inbound_channel", "must not be empty".into());
        }
        Ok(())
    }
}

/// Cluster counters ([`Stats::cluster`](crate::Stats::cluster)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// This node's id.
    pub node_id: String,
    /// Both Redis connections (publish and subscribe) are up.
    pub connected: bool,
    /// Publishes Redis accepted.
    pub published: u64,
    /// Pipelines sent: round trips for `published` (and presence queries).
    pub publish_round_trips: u64,
    /// Publishes dropped because `queue_limit` were already waiting.
    pub publish_dropped: u64,
    /// Publishes in a pipeline that was in flight when the connection failed.
    pub publish_failed: u64,
    /// Messages received from Redis.
    pub received: u64,
    /// Envelopes this node published itself, skipped on receipt.
    pub own_skipped: u64,
    /// Received messages not delivered: a worker's queue stayed full for 2 seconds (the
    /// subscriber stops reading from Redis while it waits), or, for a broadcast, was full.
    pub delivery_dropped: u64,
    /// Payloads on wspush channels that are not valid envelopes.
    pub malformed_envelopes: u64,
    /// Payloads on the compat channel that are not valid `{"KEY","VALUE"}` JSON.
    pub malformed_compat: u64,
    /// SUBSCRIBE commands sent.
    pub subscribe_commands: u64,
    /// UNSUBSCRIBE commands sent.
    pub unsubscribe_commands: u64,
    /// Channels currently subscribed.
    pub subscribed_channels: u64,
    /// Connections (re)established after the first.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ClusterCounters {
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    published: AtomicU64,
    publish_round_trips: AtomicU64,
    publish_dropped: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    own_skipped: AtomicU64,
    delivery_dropped: AtomicU64,
    malformed_envelopes: AtomicU64,
    malformed_compat: AtomicU64,
    subscribe_commands: AtomicU64,
    unsubscribe_commands: AtomicU64,
    subscribed_channels: AtomicU64,
    reconnects: AtomicU64,
}

/// A change in the ids this node holds, from the worker that owns the id.
#[derive(Debug)]
pub(crate) enum Change {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
}

/// Work for the publisher.
pub(crate) enum Outbound {
    Publish { channel: String, payload: Vec<u8>, receipt: Option<Arc<Collector>> },
    CountSubscribers { channel: String, receipt: Arc<Collector> },
}

/// The engine's and the workers' side of the backplane: enqueue publishes, report id
/// changes. Never blocks.
pub(crate) struct ClusterLink {
    node_id: Arc<str>,
    user_prefix: String,
    all_channel: String,
    inbound_channel: Option<String>,
    compat_publish_channel: Option<String>,
    outbound: mpsc::Sender<Outbound>,
    changes: mpsc::UnboundedSender<Change>,
    counters: Arc<ClusterCounters>,
}

/// The receiving ends, handed to the backplane thread.
pub(crate) struct LinkEnds {
    outbound: mpsc::Receiver<Outbound>,
    changes: mpsc::UnboundedReceiver<Change>,
}

impl ClusterLink {
    /// The link and its receiving ends, for a validated `config`.
    pub fn new(config: &ClusterConfig) -> (Arc<Self>, LinkEnds) {
        let node_id: Arc<str> = config.node_id.clone().unwrap_or_else(random_node_id).into();
        let (outbound, outbound_rx) = mpsc::channel(config.queue_limit);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let inbound_channel = config
            .publish_inbound
            .then(|| config.inbound_channel.clone().unwrap_or_else(|| format!("{}inbound", config.prefix)));
        let link = Self {
            node_id,
            user_prefix: format!("{}u:", config.prefix),
            all_channel: format!("{}all", config.prefix),
            inbound_channel,
            compat_publish_channel: config.compat_publish.then(|| config.compat_channel.clone()).flatten(),
            outbound,
            changes,
            counters: Arc::default(),
        };
        (Arc::new(link), LinkEnds { outbound: outbound_rx, changes: changes_rx })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn is_connected(&self) -> bool {
        self.counters.publisher_up.load(Relaxed) && self.counters.subscriber_up.load(Relaxed)
    }

    fn user_channel(&self, id: &str) -> String {
        format!("{}{id}", self.user_prefix)
    }

    /// Publishes a send for the other nodes (and, in a mixed fleet, the original format).
    pub fn publish_send(&self, id: &str, message: Message<'_>, receipt: Option<Arc<Collector>>) {
        let payload = envelope::encode(&self.node_id, message);
        let receipt = self.settle_if_disconnected(receipt);
        self.enqueue(Outbound::Publish { channel: self.user_channel(id), payload, receipt });
        if let (Some(channel), Message::Text(text)) = (&self.compat_publish_channel, message) {
            let payload = compat::encode(id, text, &self.node_id);
            self.enqueue(Outbound::Publish { channel: channel.clone(), payload, receipt: None });
        }
    }

    pub fn publish_broadcast(&self, message: Message<'_>, receipt: Option<Arc<Collector>>) {
        let payload = envelope::encode(&self.node_id, message);
        let receipt = self.settle_if_disconnected(receipt);
        self.enqueue(Outbound::Publish { channel: self.all_channel.clone(), payload, receipt });
    }

    /// Publishes a client's message for backend services, if that is switched on.
    pub fn publish_inbound(&self, id: &str, message: Message<'_>) {
        let Some(channel) = &self.inbound_channel else { return };
        let data = match message {
            Message::Text(text) => serde_json::json!({ "id": id, "node": &*self.node_id, "data": text }),
            Message::Binary(data) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(data);
                serde_json::json!({ "id": id, "node": &*self.node_id, "data": encoded, "encoding": "base64" })
            }
        };
        let payload = data.to_string().into_bytes();
        self.enqueue(Outbound::Publish { channel: channel.clone(), payload, receipt: None });
    }

    pub fn count_subscribers(&self, id: &str, receipt: Arc<Collector>) {
        if let Some(receipt) = self.settle_if_disconnected(Some(receipt)) {
            self.enqueue(Outbound::CountSubscribers { channel: self.user_channel(id), receipt });
        }
    }

    pub fn subscribe(&self, id: &str) {
        let _ = self.changes.send(Change::Subscribe(id.into()));
    }

    pub fn unsubscribe(&self, id: &str) {
        let _ = self.changes.send(Change::Unsubscribe(id.into()));
    }

    /// While Redis is unreachable a publish waits in the queue, but its sender should not:
    /// the receipt is settled now, with no node count.
    fn settle_if_disconnected(&self, receipt: Option<Arc<Collector>>) -> Option<Arc<Collector>> {
        match receipt {
            Some(receipt) if !self.counters.publisher_up.load(Relaxed) => {
                receipt.set_receivers(None);
                None
            }
            receipt => receipt,
        }
    }

    fn enqueue(&self, outbound: Outbound) {
        if let Err(refused) = self.outbound.try_send(outbound) {
            bump(&self.counters.publish_dropped, 1);
            let (mpsc::error::TrySendError::Full(outbound) | mpsc::error::TrySendError::Closed(outbound)) =
                refused;
            match outbound {
                Outbound::Publish { receipt: Some(receipt), .. }
                | Outbound::CountSubscribers { receipt, .. } => {
                    receipt.set_receivers(None);
                }
                Outbound::Publish { receipt: None, .. } => {}
            }
        }
    }

    pub fn stats(&self) -> ClusterStats {
        let c = &self.counters;
        ClusterStats {
            node_id: self.node_id.to_string(),
            connected: self.is_connected(),
            published: c.published.load(Relaxed),
            publish_round_trips: c.publish_round_trips.load(Relaxed),
            publish_dropped: c.publish_dropped.load(Relaxed),
            publish_failed: c.publish_failed.load(Relaxed),
            received: c.received.load(Relaxed),
            own_skipped: c.own_skipped.load(Relaxed),
            delivery_dropped: c.delivery_dropped.load(Relaxed),
            malformed_envelopes: c.malformed_envelopes.load(Relaxed),
            malformed_compat: c.malformed_compat.load(Relaxed),
            subscribe_commands: c.subscribe_commands.load(Relaxed),
            unsubscribe_commands: c.unsubscribe_commands.load(Relaxed),
            subscribed_channels: c.subscribed_channels.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
        }
    }
}

impl worker::Backplane for ClusterLink {
    fn id_opened(&self, id: &str) {
        self.subscribe(id);
    }

    fn id_closed(&self, id: &str) {
        self.unsubscribe(id);
    }

    fn inbound(&self, id: &str, message: Message<'_>) {
        self.publish_inbound(id, message);
    }
}

/// A node id unique enough for a fleet: 12 hex digits from the OS-seeded hasher, the
/// process id and the clock.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_logged() {
        let redacted = |url: &str| ClusterConfig::new(url).redacted_url();
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("redis://:s3cret@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
        assert_eq!(redacted("redis://user:p@ss@host"), "redis://user:***@host");
        assert_eq!(redacted("redis://user@host:6379"), "redis://user@host:6379");
        assert_eq!(redacted("unix:///run/redis.sock"), "unix:///run/redis.sock");
        assert_eq!(redacted("notaurl"), "notaurl");
    }

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
    }
}
