//! `GET /metrics`: the engine's counters in the Prometheus text exposition format
//! (version 0.0.4), rendered from the engine's one list of metrics ([`Stats::metrics`]).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use wspush::Stats;

use crate::api_server::ApiCounters;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Renders `stats`, the API server's own counters and the process's uptime as Prometheus
/// metrics.
pub fn render(stats: &Stats, uptime: Duration, api: &ApiCounters) -> String {
    let mut out = String::with_capacity(4096);
    let mut announced: Vec<String> = Vec::new();
    let mut sample = |name: &str, kind: &str, help: &str, value: u64| {
        let family = name.split('{').next().unwrap_or(name);
        // A family's samples need not be adjacent in the list, but HELP and TYPE come once.
        if !announced.iter().any(|known| known == family) {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            announced.push(family.to_owned());
        }
        let _ = writeln!(out, "{name} {value}");
    };
    for metric in stats.metrics() {
        sample(&metric.prometheus, metric.kind.prometheus_type(), metric.help, metric.value);
    }
    sample(
        "wspush_api_connections",
        "gauge",
        "Open HTTP API connections.",
        api.connections.load(Ordering::Relaxed),
    );
    sample(
        "wspush_api_timeouts_total",
        "counter",
        "HTTP API connections closed without a complete request head in time, and pushes answered 408 \
         for a body not sent in time.",
        api.timeouts.load(Ordering::Relaxed),
    );
    sample("wspush_uptime_seconds", "gauge", "Seconds since the server started.", uptime.as_secs());
    let version = format!("wspush_build_info{{version=\"{}\"}}", wspush::VERSION);
    sample(&version, "gauge", "The wspush version, as a label; always 1.", 1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wspush::{AuthFailures, ClusterStats, HandshakeFailures};

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
            messages_too_big: 65,
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
                tls: 66,
            },
            token_expirations: 61,
            history_appended: 70,
            history_replayed: 71,
            history_resumes: 72,
            history_lost_signals: 73,
            history_duplicates: 76,
            history_gap_fills: 77,
            history_evicted: 74,
            history_bytes: 75,
            messages_deflated: 78,
            inflated_too_big: 79,
            cluster: None,
        };
        let api = ApiCounters::default();
        let text = render(&stats, Duration::from_secs(42), &api);
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
            oversized_dropped: 43,
            publish_queued_bytes: 44,
            ..ClusterStats::default()
        };
        api.connections.store(2, Ordering::Relaxed);
        api.timeouts.store(3, Ordering::Relaxed);
        let text = render(&Stats { cluster: Some(cluster), ..stats }, Duration::from_secs(42), &api);
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
            "# TYPE wspush_messages_too_big_total counter",
            "wspush_messages_too_big_total 65",
            "wspush_queue_full_total 19",
            "# TYPE wspush_history_appended_total counter",
            "wspush_history_appended_total 70",
            "wspush_history_replayed_total 71",
            "wspush_history_resumes_total 72",
            "wspush_history_lost_signals_total 73",
            "wspush_history_duplicates_total 76",
            "wspush_history_gap_fills_total 77",
            "wspush_history_evicted_total 74",
            "# TYPE wspush_history_bytes gauge",
            "wspush_history_bytes 75",
            "# TYPE wspush_messages_deflated_total counter",
            "wspush_messages_deflated_total 78",
            "# TYPE wspush_inflated_too_big_total counter",
            "wspush_inflated_too_big_total 79",
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
            "wspush_handshake_failures_total{reason=\"tls\"} 66",
            "# TYPE wspush_token_expirations_total counter",
            "wspush_token_expirations_total 61",
            "# TYPE wspush_api_connections gauge",
            "wspush_api_connections 2",
            "# TYPE wspush_api_timeouts_total counter",
            "wspush_api_timeouts_total 3",
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
            "# TYPE wspush_cluster_oversized_dropped_total counter",
            "wspush_cluster_oversized_dropped_total 43",
            "# TYPE wspush_cluster_publish_queued_bytes gauge",
            "wspush_cluster_publish_queued_bytes 44",
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
