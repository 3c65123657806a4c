//! The engine's counters as a plain C struct.

/// A snapshot of the engine's counters, filled by `wspush_engine_stats`. Counters only grow,
/// except `connections`, `ids`, `cluster_connected` and `cluster_subscribed_channels`,
/// which are current values.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct wspush_stats {
    /// Open sockets.
    pub connections: u64,
    /// Distinct ids with at least one open socket.
    pub ids: u64,
    /// Sockets opened since start.
    pub connections_opened: u64,
    /// Complete messages received from clients.
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub bytes_in: u64,
    /// Messages queued to sockets (one per target socket).
    pub messages_out: u64,
    /// Bytes written to sockets (frames, handshakes and control frames included).
    pub bytes_out: u64,
    /// Sockets closed with 1008 for exceeding `max_buffered_bytes`.
    pub slow_consumer_disconnects: u64,
    /// Messages dropped for slow sockets under the `"drop"` policy.
    pub slow_consumer_drops: u64,
    /// Sockets closed because they sent nothing for `idle_timeout_ms`.
    pub idle_timeouts: u64,
    /// Sockets closed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Sends or broadcasts refused with `WSPUSH_STATUS_QUEUE_FULL`.
    pub queue_full: u64,
    /// Refused upgrades: malformed HTTP or missing/invalid WebSocket headers (400).
    pub handshake_bad_request: u64,
    /// Refused upgrades: `Sec-WebSocket-Version` other than 13 (426).
    pub handshake_bad_version: u64,
    /// Refused upgrades: path not under the prefix (404) or an invalid id in it (400).
    pub handshake_bad_path: u64,
    /// Refused upgrades: request head over `max_header_bytes` or `max_headers` (431).
    pub handshake_too_large: u64,
    /// Refused upgrades: not completed within `handshake_timeout_ms`.
    pub handshake_timeout: u64,
    /// Refused upgrades: `max_connections` were open (503).
    pub handshake_over_capacity: u64,
    /// Upgrades that failed because the connection failed or closed first.
    pub handshake_io: u64,
    /// 1 in cluster mode (`"redis"` configured), else 0 and the `cluster_*` fields are 0.
    pub cluster_enabled: u64,
    /// 1 while both Redis connections (publish and subscribe) are up.
    pub cluster_connected: u64,
    /// Publishes Redis accepted.
    pub cluster_published: u64,
    /// Publishes dropped because `redis_queue_limit` were already waiting.
    pub cluster_publish_dropped: u64,
    /// Publishes lost in a pipeline that was in flight when the connection failed.
    pub cluster_publish_failed: u64,
    /// Messages received from Redis.
    pub cluster_received: u64,
    /// Redis connections re-established after the first.
    pub cluster_reconnects: u64,
    /// Redis channels currently subscribed.
    pub cluster_subscribed_channels: u64,
}

impl From<&engine::Stats> for wspush_stats {
    fn from(stats: &engine::Stats) -> Self {
        let hs = &stats.handshake_failures;
        let mut out = wspush_stats {
            connections: stats.connections,
            ids: stats.ids,
            connections_opened: stats.connections_opened,
            messages_in: stats.messages_in,
            bytes_in: stats.bytes_in,
            messages_out: stats.messages_out,
            bytes_out: stats.bytes_out,
            slow_consumer_disconnects: stats.slow_consumer_disconnects,
            slow_consumer_drops: stats.slow_consumer_drops,
            idle_timeouts: stats.idle_timeouts,
            protocol_errors: stats.protocol_errors,
            queue_full: stats.queue_full,
            handshake_bad_request: hs.bad_request,
            handshake_bad_version: hs.bad_version,
            handshake_bad_path: hs.bad_path,
            handshake_too_large: hs.too_large,
            handshake_timeout: hs.timeout,
            handshake_over_capacity: hs.over_capacity,
            handshake_io: hs.io,
            ..wspush_stats::default()
        };
        if let Some(cluster) = &stats.cluster {
            out.cluster_enabled = 1;
            out.cluster_connected = u64::from(cluster.connected);
            out.cluster_published = cluster.published;
            out.cluster_publish_dropped = cluster.publish_dropped;
            out.cluster_publish_failed = cluster.publish_failed;
            out.cluster_received = cluster.received;
            out.cluster_reconnects = cluster.reconnects;
            out.cluster_subscribed_channels = cluster.subscribed_channels;
        }
        out
    }
}
