//! `GET /metrics`: the engine's counters in the Prometheus text exposition format
//! (version 0.0.4), rendered by hand from a [`Stats`] snapshot.

use std::fmt::Write as _;
use std::time::Duration;

use wspush::{ClusterStats, Stats};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Renders `stats` (and the process's uptime) as Prometheus metrics.
pub fn render(stats: &Stats, uptime: Duration) -> String {
    // Destructured without `..`, so that a counter added to `Stats` fails to compile here
    // until it is exported.
    let Stats {
        connections,
        ids,
        worker_connections,
        connections_opened,
        messages_in,
        bytes_in,
        messages_out,
        bytes_out,
        slow_consumer_disconnects,
        slow_consumer_drops,
        node_buffer_disconnects,
        buffered_bytes,
        inbound_rate_limited,
        idle_timeouts,
        protocol_errors,
        queue_full,
        handshake_failures,
        token_expirations,
        cluster,
    } = stats;

    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let gauge = "gauge";
    let counter = "counter";

    metric("wspush_connections", gauge, "Open WebSocket connections.", &[("", *connections)]);
    metric("wspush_ids", gauge, "Distinct ids with at least one open connection.", &[("", *ids)]);
    let workers: Vec<(String, u64)> =
        worker_connections.iter().enumerate().map(|(i, n)| (format!("{{worker=\"{i}\"}}"), *n)).collect();
    let workers: Vec<(&str, u64)> = workers.iter().map(|(labels, n)| (labels.as_str(), *n)).collect();
    metric("wspush_worker_connections", gauge, "Open WebSocket connections per worker thread.", &workers);
    metric(
        "wspush_connections_opened_total",
        counter,
        "WebSocket connections opened since start.",
        &[("", *connections_opened)],
    );
    metric(
        "wspush_messages_in_total",
        counter,
        "Complete messages received from clients.",
        &[("", *messages_in)],
    );
    metric(
        "wspush_bytes_in_total",
        counter,
        "Payload bytes of the messages received from clients.",
        &[("", *bytes_in)],
    );
    metric(
        "wspush_messages_out_total",
        counter,
        "Messages queued to sockets (one per target socket).",
        &[("", *messages_out)],
    );
    metric(
        "wspush_bytes_out_total",
        counter,
        "Bytes written to sockets (frames, handshakes and control frames).",
        &[("", *bytes_out)],
    );
    metric(
        "wspush_slow_consumer_disconnects_total",
        counter,
        "Sockets closed with 1008 for exceeding max_buffered_bytes.",
        &[("", *slow_consumer_disconnects)],
    );
    metric(
        "wspush_slow_consumer_drops_total",
        counter,
        "Messages dropped for slow sockets under the drop policy.",
        &[("", *slow_consumer_drops)],
    );
    metric(
        "wspush_node_buffer_disconnects_total",
        counter,
        "Sockets closed with 1008 because the node's queued output was over max_node_buffered_bytes.",
        &[("", *node_buffer_disconnects)],
    );
    metric(
        "wspush_buffered_bytes",
        gauge,
        "Output queued for sockets across the node, in bytes.",
        &[("", *buffered_bytes)],
    );
    metric(
        "wspush_inbound_rate_limited_total",
        counter,
        "Sockets closed with 1008 for sending over their inbound message or byte rate.",
        &[("", *inbound_rate_limited)],
    );
    metric(
        "wspush_idle_timeouts_total",
        counter,
        "Sockets closed because they sent nothing for idle_timeout.",
        &[("", *idle_timeouts)],
    );
    metric(
        "wspush_protocol_errors_total",
        counter,
        "Sockets closed for a protocol violation (1002, 1007, 1009).",
        &[("", *protocol_errors)],
    );
    metric(
        "wspush_queue_full_total",
        counter,
        "Sends or broadcasts refused because a worker's queue was full.",
        &[("", *queue_full)],
    );
    let refusals: Vec<(String, u64)> = handshake_failures
        .by_reason()
        .iter()
        .map(|refused| (format!("{{reason=\"{}\"}}", refused.label()), refused.count))
        .collect();
    let refusals: Vec<(&str, u64)> = refusals.iter().map(|(labels, n)| (labels.as_str(), *n)).collect();
    metric("wspush_handshake_failures_total", counter, "Refused WebSocket upgrades, by reason.", &refusals);
    metric(
        "wspush_token_expirations_total",
        counter,
        "Sockets closed with 1008 because their token expired.",
        &[("", *token_expirations)],
    );
    metric("wspush_uptime_seconds", gauge, "Seconds since the server started.", &[("", uptime.as_secs())]);
    let version = format!("{{version=\"{}\"}}", wspush::VERSION);
    metric("wspush_build_info", gauge, "The wspush version, as a label; always 1.", &[(version.as_str(), 1)]);
    if let Some(cluster) = cluster {
        render_cluster(cluster, &mut metric);
    }
    out
}

/// The cluster metrics, in cluster mode only.
fn render_cluster(stats: &ClusterStats, metric: &mut impl FnMut(&str, &str, &str, &[(&str, u64)])) {
    // Without `..`, as above. The node id is in /healthz and /stats, not a label here.
    let ClusterStats {
        node_id: _,
        connected,
        published,
        publish_round_trips,
        publish_dropped,
        publish_failed,
        received,
        own_skipped,
        delivery_dropped,
        malformed_envelopes,
        malformed_compat,
        subscribe_commands,
        unsubscribe_commands,
        subscribed_channels,
        reconnects,
    } = stats;
    let (gauge, counter) = ("gauge", "counter");
    metric(
        "wspush_cluster_connected",
        gauge,
        "1 while both Redis connections (publish and subscribe) are up, else 0.",
        &[("", u64::from(*connected))],
    );
    metric(
        "wspush_cluster_subscribed_channels",
        gauge,
        "Redis channels currently subscribed.",
        &[("", *subscribed_channels)],
    );
    metric("wspush_cluster_published_total", counter, "Publishes Redis accepted.", &[("", *published)]);
    metric(
        "wspush_cluster_publish_round_trips_total",
        counter,
        "Pipelines sent to Redis (publishes and presence queries).",
        &[("", *publish_round_trips)],
    );
    metric(
        "wspush_cluster_publish_dropped_total",
        counter,
        "Publishes dropped because redis_queue_limit were already waiting.",
        &[("", *publish_dropped)],
    );
    metric(
        "wspush_cluster_publish_failed_total",
        counter,
        "Publishes lost in a pipeline that was in flight when the Redis connection failed.",
        &[("", *publish_failed)],
    );
    metric("wspush_cluster_received_total", counter, "Messages received from Redis.", &[("", *received)]);
    metric(
        "wspush_cluster_own_skipped_total",
        counter,
        "Messages this node published itself, skipped on receipt.",
        &[("", *own_skipped)],
    );
    metric(
        "wspush_cluster_delivery_dropped_total",
        counter,
        "Messages from Redis not delivered because a worker's queue stayed full.",
        &[("", *delivery_dropped)],
    );
    metric(
        "wspush_cluster_malformed_total",
        counter,
        "Malformed payloads from Redis, skipped, by format.",
        &[("{format=\"envelope\"}", *malformed_envelopes), ("{format=\"compat\"}", *malformed_compat)],
    );
    metric(
        "wspush_cluster_subscribe_commands_total",
        counter,
        "SUBSCRIBE commands sent to Redis.",
        &[("", *subscribe_commands)],
    );
    metric(
        "wspush_cluster_unsubscribe_commands_total",
        counter,
        "UNSUBSCRIBE commands sent to Redis.",
        &[("", *unsubscribe_commands)],
    );
    metric(
        "wspush_cluster_reconnects_total",
        counter,
        "Redis connections re-established after the first.",
        &[("", *reconnects)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use wspush::{AuthFailures, HandshakeFailures};

    #[test]
    fn renders_every_counter() {
        let stats = Stats {
            connections: 3,
            ids: 2,
            worker_connections: vec![1, 2],
            connections_opened: 10,
            messages_in: 11,
            bytes_in: 12,
            messages_out: 13,
            bytes_out: 14,
            slow_consumer_disconnects: 15,
            slow_consumer_drops: 16,
            node_buffer_disconnects: 62,
            buffered_bytes: 63,
            inbound_rate_limited: 64,
            idle_timeouts: 17,
            protocol_errors: 18,
            queue_full: 19,
            handshake_failures: HandshakeFailures {
                bad_request: 20,
                bad_version: 21,
                bad_path: 22,
                too_large: 23,
                timeout: 24,
                over_capacity: 25,
                io: 26,
                forbidden_origin: 50,
                auth: AuthFailures {
                    missing: 51,
                    malformed: 52,
                    bad_signature: 53,
                    expired: 54,
                    not_yet_valid: 55,
                    wrong_subject: 56,
                    wrong_audience: 57,
                    wrong_issuer: 58,
                },
                forbidden: 59,
                over_ip_limit: 60,
            },
            token_expirations: 61,
            cluster: None,
        };
        let text = render(&stats, Duration::from_secs(42));
        assert!(!text.contains("wspush_cluster_"), "no cluster metrics on a single node");
        let cluster = ClusterStats {
            node_id: "n1".into(),
            connected: true,
            published: 30,
            publish_round_trips: 31,
            publish_dropped: 32,
            publish_failed: 33,
            received: 34,
            own_skipped: 35,
            delivery_dropped: 36,
            malformed_envelopes: 37,
            malformed_compat: 38,
            subscribe_commands: 39,
            unsubscribe_commands: 40,
            subscribed_channels: 41,
            reconnects: 42,
        };
        let text = render(&Stats { cluster: Some(cluster), ..stats }, Duration::from_secs(42));
        for line in [
            "# HELP wspush_connections Open WebSocket connections.",
            "# TYPE wspush_connections gauge",
            "wspush_connections 3",
            "wspush_ids 2",
            "# TYPE wspush_worker_connections gauge",
            "wspush_worker_connections{worker=\"0\"} 1",
            "wspush_worker_connections{worker=\"1\"} 2",
            "# TYPE wspush_connections_opened_total counter",
            "wspush_connections_opened_total 10",
            "wspush_messages_in_total 11",
            "wspush_bytes_in_total 12",
            "wspush_messages_out_total 13",
            "wspush_bytes_out_total 14",
            "wspush_slow_consumer_disconnects_total 15",
            "wspush_slow_consumer_drops_total 16",
            "# TYPE wspush_node_buffer_disconnects_total counter",
            "wspush_node_buffer_disconnects_total 62",
            "# TYPE wspush_buffered_bytes gauge",
            "wspush_buffered_bytes 63",
            "# TYPE wspush_inbound_rate_limited_total counter",
            "wspush_inbound_rate_limited_total 64",
            "wspush_idle_timeouts_total 17",
            "wspush_protocol_errors_total 18",
            "wspush_queue_full_total 19",
            "# TYPE wspush_handshake_failures_total counter",
            "wspush_handshake_failures_total{reason=\"bad_request\"} 20",
            "wspush_handshake_failures_total{reason=\"bad_version\"} 21",
            "wspush_handshake_failures_total{reason=\"bad_path\"} 22",
            "wspush_handshake_failures_total{reason=\"too_large\"} 23",
            "wspush_handshake_failures_total{reason=\"timeout\"} 24",
            "wspush_handshake_failures_total{reason=\"over_capacity\"} 25",
            "wspush_handshake_failures_total{reason=\"io\"} 26",
            "wspush_handshake_failures_total{reason=\"forbidden_origin\"} 50",
            "wspush_handshake_failures_total{reason=\"auth_missing\"} 51",
            "wspush_handshake_failures_total{reason=\"auth_malformed\"} 52",
            "wspush_handshake_failures_total{reason=\"auth_bad_signature\"} 53",
            "wspush_handshake_failures_total{reason=\"auth_expired\"} 54",
            "wspush_handshake_failures_total{reason=\"auth_not_yet_valid\"} 55",
            "wspush_handshake_failures_total{reason=\"auth_wrong_subject\"} 56",
            "wspush_handshake_failures_total{reason=\"auth_wrong_audience\"} 57",
            "wspush_handshake_failures_total{reason=\"auth_wrong_issuer\"} 58",
            "wspush_handshake_failures_total{reason=\"forbidden\"} 59",
            "wspush_handshake_failures_total{reason=\"over_ip_limit\"} 60",
            "# TYPE wspush_token_expirations_total counter",
            "wspush_token_expirations_total 61",
            "wspush_uptime_seconds 42",
            &format!("wspush_build_info{{version=\"{}\"}} 1", wspush::VERSION),
            "# TYPE wspush_cluster_connected gauge",
            "wspush_cluster_connected 1",
            "# TYPE wspush_cluster_subscribed_channels gauge",
            "wspush_cluster_subscribed_channels 41",
            "# TYPE wspush_cluster_published_total counter",
            "wspush_cluster_published_total 30",
            "wspush_cluster_publish_round_trips_total 31",
            "wspush_cluster_publish_dropped_total 32",
            "wspush_cluster_publish_failed_total 33",
            "wspush_cluster_received_total 34",
            "wspush_cluster_own_skipped_total 35",
            "wspush_cluster_delivery_dropped_total 36",
            "# TYPE wspush_cluster_malformed_total counter",
            "wspush_cluster_malformed_total{format=\"envelope\"} 37",
            "wspush_cluster_malformed_total{format=\"compat\"} 38",
            "wspush_cluster_subscribe_commands_total 39",
            "wspush_cluster_unsubscribe_commands_total 40",
            "wspush_cluster_reconnects_total 42",
        ] {
            assert!(text.lines().any(|l| l == line), "missing line {line:?} in\n{text}");
        }
        // Every sample line belongs to a metric announced by HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
        assert!(text.ends_with('\n'));
    }
}
