//! The engine's counters as a plain C struct.

/// A snapshot of the engine's counters, filled by `wspush_engine_stats`. Counters only grow,
/// except `connections`, `ids`, `buffered_bytes`, `cluster_connected` and
/// `cluster_subscribed_channels`, which are current values. Each field is the engine metric
/// of the same name (`GET /stats`, `GET /metrics` in the server).
///
/// Layout rule: every field is a `uint64_t`, and new fields are only ever appended at the
/// end, so a field's offset never changes between versions (bindings may read the struct as
/// an array of `uint64_t`, as the Java binding does). `wspush_engine_stats` takes the
/// caller's `sizeof(wspush_stats)`: a program compiled against an older header gets the
/// fields it knows, one compiled against a newer header gets zeros in the fields this
/// library does not have yet.
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
    /// Publishes dropped because `redis_queue_limit` publishes, or `redis_queue_bytes`
    /// bytes, were already waiting.
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
    // The rest of the cluster counters (0.1.0 had only some of them).
    /// Pipelines sent to Redis: round trips for `cluster_published` and presence queries.
    pub cluster_publish_round_trips: u64,
    /// Messages this node published itself, skipped when Redis delivered them back.
    pub cluster_own_skipped: u64,
    /// Messages from Redis not delivered because a worker's queue stayed full.
    pub cluster_delivery_dropped: u64,
    /// Payloads on wspush channels that are not valid envelopes (skipped).
    pub cluster_malformed_envelopes: u64,
    /// Payloads on the compat channel that are not valid `{"KEY","VALUE"}` JSON (skipped).
    pub cluster_malformed_compat: u64,
    /// SUBSCRIBE commands sent to Redis.
    pub cluster_subscribe_commands: u64,
    /// UNSUBSCRIBE commands sent to Redis.
    pub cluster_unsubscribe_commands: u64,
    /// Sockets closed with 1009 for a message over `max_message_size` (also counted in
    /// `protocol_errors`).
    pub messages_too_big: u64,
    /// Messages from Redis larger than `max_outbound_message_size`, dropped.
    pub cluster_oversized_dropped: u64,
    /// Bytes of publishes waiting for Redis, at most `redis_queue_bytes` (a gauge).
    pub cluster_publish_queued_bytes: u64,
    /// Messages appended to an id's history (`history_size` > 0).
    pub history_appended: u64,
    /// Messages replayed from history to resuming sockets.
    pub history_replayed: u64,
    /// Sockets that connected with `?since=EPOCH:OFFSET`.
    pub history_resumes: u64,
    /// Sockets told history could not reach back (`!lost` to `wspush.v1` sockets, close 4410
    /// to others).
    pub history_lost_signals: u64,
    /// Whole histories dropped to stay under `history_max_bytes`.
    pub history_evicted: u64,
    /// Memory held by the histories, as counted against `history_max_bytes` (a gauge).
    pub history_bytes: u64,
    /// Messages appended to an id's history in Redis (history on).
    pub cluster_history_appends: u64,
    /// Appends sent again on a new Redis connection after their pipeline failed (applied at most once).
    pub cluster_history_append_retried: u64,
    /// Retried appends Redis had already applied, not applied again.
    pub cluster_history_append_duplicates: u64,
    /// Reads of an id's history sent to Redis.
    pub cluster_history_reads: u64,
    /// Pipelines of history reads sent to Redis.
    pub cluster_history_read_round_trips: u64,
    /// History reads answered with a failure (Redis unreachable, a failed pipeline, a bad reply).
    pub cluster_history_read_failed: u64,
    /// Positioned messages from Redis dropped because the id's sockets here already had them
    /// (cluster history).
    pub history_duplicates: u64,
    /// Reads of an id's history a worker made to fill a gap or catch up after the
    /// subscription was lost (cluster history).
    pub history_gap_fills: u64,
    /// Times the Sentinels moved the master and the node followed (`redis+sentinel://` only).
    pub cluster_master_switches: u64,
    /// Writes of subscribe and unsubscribe commands to Redis (one round trip each).
    pub cluster_subscribe_round_trips: u64,
    /// Times the Redis Cluster slot map was asked for (redis+cluster:// only).
    pub cluster_slot_map_refreshes: u64,
    /// Times the Redis Cluster slot map changed (resharding, failover, shards added or removed).
    pub cluster_slot_map_changes: u64,
    /// Channels subscribed again on another Redis Cluster master after their slot moved.
    pub cluster_resubscribes: u64,
    /// Redis Cluster masters this node has a subscriber connection to.
    pub cluster_shards: u64,
    /// Of those, the ones up with every subscription confirmed.
    pub cluster_shards_up: u64,
    /// Failed upgrades: the TLS handshake failed (`tls_cert` set: no common version or cipher
    /// suite, a bad record, more than its byte budget, or the client gone).
    pub handshake_tls: u64,
    /// Messages compressed with permessage-deflate: once per message and window in a worker,
    /// however many sockets get it (`compression` on).
    pub messages_deflated: u64,
    /// Sockets closed with 1009 for a compressed message inflating past `max_message_size`
    /// (also in `messages_too_big`).
    pub inflated_too_big: u64,
}

/// The fields of [`wspush_stats`] in their order: each is the [`engine::Metric::key`] of the
/// counter it holds, so the struct is filled by name from [`engine::Stats::metrics`]. A field
/// added to the struct and not here does not compile (the sizes differ); one added here and
/// not to the struct, or out of order, fails `the_fields_are_the_headers_and_javas`.
pub(crate) const FIELDS: [&str; FIELD_COUNT] = [
    "connections",
    "ids",
    "connections_opened",
    "messages_in",
    "bytes_in",
    "messages_out",
    "bytes_out",
    "slow_consumer_disconnects",
    "slow_consumer_drops",
    "idle_timeouts",
    "protocol_errors",
    "queue_full",
    "handshake_bad_request",
    "handshake_bad_version",
    "handshake_bad_path",
    "handshake_too_large",
    "handshake_timeout",
    "handshake_over_capacity",
    "handshake_io",
    "cluster_enabled",
    "cluster_connected",
    "cluster_published",
    "cluster_publish_dropped",
    "cluster_publish_failed",
    "cluster_received",
    "cluster_reconnects",
    "cluster_subscribed_channels",
    "handshake_forbidden_origin",
    "handshake_auth_missing",
    "handshake_auth_malformed",
    "handshake_auth_bad_signature",
    "handshake_auth_expired",
    "handshake_auth_not_yet_valid",
    "handshake_auth_wrong_subject",
    "handshake_auth_wrong_audience",
    "handshake_auth_wrong_issuer",
    "handshake_forbidden",
    "handshake_over_ip_limit",
    "token_expirations",
    "inbound_rate_limited",
    "node_buffer_disconnects",
    "buffered_bytes",
    "cluster_publish_round_trips",
    "cluster_own_skipped",
    "cluster_delivery_dropped",
    "cluster_malformed_envelopes",
    "cluster_malformed_compat",
    "cluster_subscribe_commands",
    "cluster_unsubscribe_commands",
    "messages_too_big",
    "cluster_oversized_dropped",
    "cluster_publish_queued_bytes",
    "history_appended",
    "history_replayed",
    "history_resumes",
    "history_lost_signals",
    "history_evicted",
    "history_bytes",
    "cluster_history_appends",
    "cluster_history_append_retried",
    "cluster_history_append_duplicates",
    "cluster_history_reads",
    "cluster_history_read_round_trips",
    "cluster_history_read_failed",
    "history_duplicates",
    "history_gap_fills",
    "cluster_master_switches",
    "cluster_subscribe_round_trips",
    "cluster_slot_map_refreshes",
    "cluster_slot_map_changes",
    "cluster_resubscribes",
    "cluster_shards",
    "cluster_shards_up",
    "handshake_tls",
    "messages_deflated",
    "inflated_too_big",
];

/// The number of `uint64_t` fields of [`wspush_stats`].
pub(crate) const FIELD_COUNT: usize = 76;

impl From<&engine::Stats> for wspush_stats {
    fn from(stats: &engine::Stats) -> Self {
        let metrics = stats.metrics();
        // A metric that does not apply (the cluster's on a single node) is 0.
        let values: [u64; FIELD_COUNT] = FIELDS.map(|field| {
            metrics
                .iter()
                .find(|metric| metric.key.as_deref() == Some(field))
                .map_or(0, |metric| metric.value)
        });
        // SAFETY: `wspush_stats` is `repr(C)` with `FIELD_COUNT` `u64` fields and nothing else
        // (transmute checks the sizes agree; `the_struct_is_uint64_fields_only` the layout), so
        // it has the layout of `[u64; FIELD_COUNT]`, in `FIELDS` order.
        unsafe { std::mem::transmute::<[u64; FIELD_COUNT], wspush_stats>(values) }
    }
}

impl wspush_stats {
    /// The struct as its `uint64_t` fields, in order.
    pub(crate) fn as_words(&self) -> [u64; FIELD_COUNT] {
        // SAFETY: as in `From`: the same size and layout as `[u64; FIELD_COUNT]`.
        unsafe { std::mem::transmute::<wspush_stats, [u64; FIELD_COUNT]>(*self) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_uint64_fields_only_and_the_old_offsets_hold() {
        assert_eq!(std::mem::size_of::<wspush_stats>(), FIELD_COUNT * 8);
        assert_eq!(std::mem::align_of::<wspush_stats>(), 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, cluster_subscribed_channels), 26 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, handshake_forbidden_origin), 27 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, token_expirations), 38 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, buffered_bytes), 41 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, messages_too_big), 49 * 8);
        assert_eq!(std::mem::offset_of!(wspush_stats, cluster_publish_queued_bytes), 51 * 8);
    }

    /// The header's struct (generated from the Rust one) and Java's record list the fields
    /// of `FIELDS`, in its order.
    #[test]
    fn the_fields_are_the_headers_and_javas() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let header = std::fs::read_to_string(format!("{root}/include/wspush.h")).unwrap();
        let body = header
            .split("typedef struct wspush_stats {")
            .nth(1)
            .unwrap()
            .split("} wspush_stats;")
            .next()
            .unwrap();
        let in_header: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter_map(|line| line.strip_prefix("uint64_t ")?.strip_suffix(';'))
            .collect();
        assert_eq!(in_header, FIELDS);
        let java =
            std::fs::read_to_string(format!("{root}/bindings/java/src/io/wspush/WsPushStats.java")).unwrap();
        let record = java.split("public record WsPushStats(").nth(1).unwrap().split(')').next().unwrap();
        let in_java: Vec<String> = record
            .split(',')
            .map(|component| component.split_whitespace().last().unwrap().to_owned())
            .collect();
        let camel: Vec<String> = FIELDS
            .iter()
            .map(|field| {
                let mut parts = field.split('_');
                let first = parts.next().unwrap().to_owned();
                parts.fold(first, |name, part| name + &part[..1].to_uppercase() + &part[1..])
            })
            .collect();
        assert_eq!(in_java, camel, "WsPushStats's components are wspush_stats's fields");
        assert!(java.contains(&format!("static final int FIELDS = {FIELD_COUNT};")));
    }

    /// Every metric the engine has a flat name for reaches C: the table cannot grow a
    /// counter that C and Java lack.
    #[test]
    fn every_engine_metric_is_a_field() {
        let mut stats = engine::Stats {
            cluster: Some(engine::ClusterStats::default()),
            worker_connections: vec![1, 2],
            ..engine::Stats::default()
        };
        stats.handshake_failures.forbidden = 3;
        for metric in stats.metrics() {
            if let Some(key) = metric.key {
                assert!(FIELDS.contains(&key.as_ref()), "{key} is not in wspush_stats");
            }
        }
        for metric in engine::Stats::catalog() {
            assert!(FIELDS.contains(&metric.key), "{} is not in wspush_stats", metric.key);
        }
    }

    #[test]
    fn each_field_holds_its_metric() {
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
        stats.messages_out = 16;
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
        assert_eq!((out.messages_out, out.cluster_enabled, out.cluster_delivery_dropped), (16, 0, 0));
        stats.cluster = Some(engine::ClusterStats {
            connected: true,
            delivery_dropped: 17,
            oversized_dropped: 18,
            publish_queued_bytes: 19,
            ..Default::default()
        });
        let out = wspush_stats::from(&stats);
        assert_eq!((out.cluster_enabled, out.cluster_connected, out.cluster_delivery_dropped), (1, 1, 17));
        assert_eq!((out.cluster_oversized_dropped, out.cluster_publish_queued_bytes), (18, 19));
    }
}
