//! The backplane's counters: atomics bumped by the backplane thread and the link, read as
//! a [`ClusterStats`] snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64};

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
    pub(super) publisher_up: AtomicBool,
    pub(super) subscriber_up: AtomicBool,
    pub(super) published: AtomicU64,
    pub(super) publish_round_trips: AtomicU64,
    pub(super) publish_dropped: AtomicU64,
    pub(super) publish_failed: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) own_skipped: AtomicU64,
    pub(super) delivery_dropped: AtomicU64,
    pub(super) malformed_envelopes: AtomicU64,
    pub(super) malformed_compat: AtomicU64,
    pub(super) subscribe_commands: AtomicU64,
    pub(super) unsubscribe_commands: AtomicU64,
    pub(super) subscribed_channels: AtomicU64,
    pub(super) reconnects: AtomicU64,
}
