//! The backplane's counters, declared once (see [`crate::stats`]): atomics bumped by the
//! backplane task and the link, read as a [`ClusterStats`] snapshot.

use std::sync::atomic::AtomicBool;

use crate::stats::{table::counter_table, Metric, MetricKind};
use crate::Stats;

counter_table! {
    /// Cluster counters ([`Stats::cluster`](crate::Stats::cluster)).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct ClusterStats {
        /// This node's id.
        pub node_id: String,
        /// Both Redis connections (publish and subscribe) are up.
        pub connected: bool,
    }
    #[derive(Debug, Default)]
    pub(crate) struct ClusterCounters {
        /// The publisher's connection is up.
        pub publisher_up: AtomicBool,
        /// The subscriber's connection is up.
        pub subscriber_up: AtomicBool,
    }
    catalog CLUSTER_COUNTERS from cluster_of, keys "cluster_", json "cluster.";
    Counter published, "publishes", "Publishes Redis accepted.";
    Counter publish_round_trips, "pipelines", "Pipelines sent to Redis (publishes and presence queries).";
    Counter publish_dropped, "publishes",
        "Publishes dropped because redis_queue_limit publishes, or redis_queue_bytes bytes, were already waiting.";
    Counter publish_failed, "publishes",
        "Publishes lost in a pipeline that was in flight when the Redis connection failed.";
    Counter received, "messages", "Messages received from Redis.";
    Counter own_skipped, "messages", "Messages this node published itself, skipped on receipt.";
    Counter delivery_dropped, "messages",
        "Messages from Redis not delivered because a worker's queue stayed full (2 s) or, for a broadcast, was full.";
    Counter malformed_envelopes, "payloads", "Malformed payloads from Redis, skipped, by format."
        => "wspush_cluster_malformed_total{format=\"envelope\"}";
    Counter malformed_compat, "payloads", "Malformed payloads from Redis, skipped, by format."
        => "wspush_cluster_malformed_total{format=\"compat\"}";
    Counter subscribe_commands, "commands", "SUBSCRIBE commands sent to Redis.";
    Counter unsubscribe_commands, "commands", "UNSUBSCRIBE commands sent to Redis.";
    Gauge subscribed_channels, "channels", "Redis channels currently subscribed.";
    Counter reconnects, "connections", "Redis connections re-established after the first.";
    Counter master_switches, "failovers",
        "Times the Sentinels moved the master and the node followed (every connection replaced; redis+sentinel:// only).";
    Counter oversized_dropped, "messages",
        "Messages from Redis larger than max_outbound_message_size, dropped (the clients of the id stay open).";
    Gauge publish_queued_bytes, "bytes", "Bytes of publishes waiting for Redis (at most redis_queue_bytes).";
    Counter history_appends, "messages", "Messages appended to an id's history in Redis (history on).";
    Counter history_append_retried, "messages",
        "Appends sent again on a new Redis connection after their pipeline failed (applied at most once).";
    Counter history_append_duplicates, "messages",
        "Retried appends Redis had already applied (its reply was lost), not applied again.";
    Counter history_reads, "reads", "Reads of an id's history sent to Redis.";
    Counter history_read_round_trips, "pipelines", "Pipelines of history reads sent to Redis.";
    Counter history_read_failed, "reads",
        "History reads answered with a failure (Redis unreachable, the pipeline failed, a bad reply).";
    Counter subscribe_round_trips, "writes",
        "Writes of subscribe and unsubscribe commands to Redis, each one round trip however many commands it carries.";
    Counter slot_map_refreshes, "reads",
        "Times the Redis Cluster slot map was asked for (every second, and when a reply said it was stale; redis+cluster:// only).";
    Counter slot_map_changes, "changes", "Times the Redis Cluster slot map changed (resharding, failover, a shard added or removed).";
    Counter resubscribes, "channels",
        "Channels subscribed again on another Redis Cluster master after their slot moved (then caught up from history).";
    Gauge shards, "masters", "Redis Cluster masters this node has a subscriber connection to.";
    Gauge shards_up, "masters", "Of those, the ones whose connection is up with every subscription confirmed.";
}

fn cluster_of(stats: &Stats) -> Option<&ClusterStats> {
    stats.cluster.as_ref()
}

/// The cluster's state, ahead of its counters.
pub(crate) const CLUSTER_STATE: &[Metric] = &[
    Metric {
        key: "cluster_enabled",
        json: "cluster.enabled",
        prometheus: "wspush_cluster_enabled",
        kind: MetricKind::Flag,
        unit: "",
        help: "1 in cluster mode (a Redis backplane is configured); absent (0 in C) on a single node.",
        value: |stats| stats.cluster.is_some().then_some(1),
    },
    Metric {
        key: "cluster_connected",
        json: "cluster.connected",
        prometheus: "wspush_cluster_connected",
        kind: MetricKind::Flag,
        unit: "",
        help: "1 while both Redis connections (publish and subscribe) are up, else 0.",
        value: |stats| cluster_of(stats).map(|cluster| u64::from(cluster.connected)),
    },
];
