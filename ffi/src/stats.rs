//! The engine's counters as a plain C struct.

/// A snapshot of the engine's counters, filled by `wspush_engine_stats`. Counters only grow,
/// except `connections`, `ids`, `cluster_connected` and `cluster_subscribed_channels`,
/// which are current values.
///
/// Layout rule: every field is a `uint64_t`, and new fields are only ever appended at the
/// end, so a field's offset never changes between versions (bindings may read the struct as
/// an array of `uint64_t`, as the Java binding does). `wspush_engine_stats` writes the whole
/// struct of the library's own version: compile against the header of the libwspush you
/// link (compare `WSPUSH_VERSION_*` with `wspush_version()`).
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
    // The admission checks (SECURITY.md). New fields go after the last one.
    /// Refused upgrades: a browser page from an origin not in `allowed_origins` (403).
    pub handshake_forbidden_origin: u64,
    /// Refused upgrades (401): no token in `Authorization`, the subprotocols or `?token=`.
    pub handshake_auth_missing: u64,
    /// Refused upgrades (401): not a well-formed JWT, no `exp`, or claims of the wrong type.
    pub handshake_auth_malformed: u64,
    /// Refused upgrades (401): the signature does not verify, or another algorithm was used.
    pub handshake_auth_bad_signature: u64,
    /// Refused upgrades (401): `exp` is past, beyond `auth_leeway_ms`.
    pub handshake_auth_expired: u64,
    /// Refused upgrades (401): `nbf` is in the future, beyond `auth_leeway_ms`.
    pub handshake_auth_not_yet_valid: u64,
    /// Refused upgrades (401): `sub` is missing or not the id connected as.
    pub handshake_auth_wrong_subject: u64,
    /// Refused upgrades (401): `aud` does not name `auth_audience` (or is present without it).
    pub handshake_auth_wrong_audience: u64,
    /// Refused upgrades (401): `iss` is not `auth_issuer`.
    pub handshake_auth_wrong_issuer: u64,
    /// Refused upgrades: the authorizer returned false (403).
    pub handshake_forbidden: u64,
    /// Refused upgrades: the client's address had `max_connections_per_ip` open (429).
    pub handshake_over_ip_limit: u64,
    /// Sockets closed with 1008 because their token expired (`auth_close_on_expiry`).
    pub token_expirations: u64,
    /// Sockets closed with 1008 for sending faster than `max_inbound_messages_per_second`
    /// or `max_inbound_bytes_per_second`.
    pub inbound_rate_limited: u64,
    /// Sockets closed with 1008 to keep the node's queued output under
    /// `max_node_buffered_bytes` (the longest-blocked first).
    pub node_buffer_disconnects: u64,
    /// Bytes queued for sockets and not yet written, across the engine (a gauge).
    pub buffered_bytes: u64,
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
            handshake_forbidden_origin: hs.forbidden_origin,
            handshake_auth_missing: hs.auth.missing,
            handshake_auth_malformed: hs.auth.malformed,
            handshake_auth_bad_signature: hs.auth.bad_signature,
            handshake_auth_expired: hs.auth.expired,
            handshake_auth_not_yet_valid: hs.auth.not_yet_valid,
            handshake_auth_wrong_subject: hs.auth.wrong_subject,
            handshake_auth_wrong_audience: hs.auth.wrong_audience,
            handshake_auth_wrong_issuer: hs.auth.wrong_issuer,
            handshake_forbidden: hs.forbidden,
            handshake_over_ip_limit: hs.over_ip_limit,
            token_expirations: stats.token_expirations,
            inbound_rate_limited: stats.inbound_rate_limited,
            node_buffer_disconnects: stats.node_buffer_disconnects,
            buffered_bytes: stats.buffered_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_uint64_fields_only_and_the_old_offsets_hold() {
        assert_eq!(std::mem::size_of::<wspush_stats>(), 42 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, cluster_subscribed_channels), 26 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, handshake_forbidden_origin), 27 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, token_expirations), 38 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, buffered_bytes), 41 * 8);
    }

    #[test]
    fn every_admission_counter_is_copied() {
        let mut stats = engine::Stats::default();
        let hs = &mut stats.handshake_failures;
        hs.forbidden_origin = 1;
        hs.auth = engine::AuthFailures {
            missing: 2,
            malformed: 3,
            bad_signature: 4,
            expired: 5,
            not_yet_valid: 6,
            wrong_subject: 7,
            wrong_audience: 8,
            wrong_issuer: 9,
        };
        hs.forbidden = 10;
        hs.over_ip_limit = 11;
        stats.token_expirations = 12;
        stats.inbound_rate_limited = 13;
        stats.node_buffer_disconnects = 14;
        stats.buffered_bytes = 15;
        let out = wspush_stats::from(&stats);
        let tail = [
            out.handshake_forbidden_origin,
            out.handshake_auth_missing,
            out.handshake_auth_malformed,
            out.handshake_auth_bad_signature,
            out.handshake_auth_expired,
            out.handshake_auth_not_yet_valid,
            out.handshake_auth_wrong_subject,
            out.handshake_auth_wrong_audience,
            out.handshake_auth_wrong_issuer,
            out.handshake_forbidden,
            out.handshake_over_ip_limit,
            out.token_expirations,
            out.inbound_rate_limited,
            out.node_buffer_disconnects,
            out.buffered_bytes,
        ];
        assert_eq!(tail, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    }
}
