//! Counters. Each worker bumps its own atomics (no shared cache line on the hot path), and
//! [`Engine::stats`](crate::Engine::stats) adds them up into a [`Stats`] snapshot.
//!
//! Every counter is declared once, in a [`counter_table!`](table) line below (or in
//! `cluster/stats.rs` for the backplane's): that line makes the snapshot field, the atomic,
//! and the counter's row in the catalog ([`Stats::metrics`]) that `GET /stats`,
//! `GET /metrics`, the C `wspush_stats` and Java's `WsPushStats` are rendered from.

mod handshake;
pub(crate) mod table;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) use handshake::HandshakeCounters;
pub use handshake::{AuthFailures, HandshakeFailures, RefusalCount};

/// Adds `n` to a counter that only its owner thread writes.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// What kind of number a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// A current value.
    Gauge,
    /// 1 or 0 (`true` or `false` in JSON).
    Flag,
}

impl MetricKind {
    /// The Prometheus `TYPE`.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge | MetricKind::Flag => "gauge",
        }
    }
}

/// A metric's declaration: a row of the catalog.
#[derive(Clone, Copy)]
pub struct Metric {
    /// Its flat name: the field of the C `wspush_stats` and of Java's `WsPushStats`
    /// (`messages_out`, `cluster_published`).
    pub key: &'static str,
    /// Its place in `GET /stats`, dot-separated (`cluster.published`).
    pub json: &'static str,
    /// Its Prometheus name, with labels where it is one of a family
    /// (`wspush_cluster_malformed_total{format="compat"}`).
    pub prometheus: &'static str,
    /// Counter, gauge or flag.
    pub kind: MetricKind,
    /// What it counts (`messages`, `bytes`, `sockets`).
    pub unit: &'static str,
    /// One sentence for `# HELP` and the docs.
    pub help: &'static str,
    /// Its value in a snapshot, `None` where it does not apply (cluster counters on a single
    /// node).
    pub(crate) value: fn(&Stats) -> Option<u64>,
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metric").field("key", &self.key).field("prometheus", &self.prometheus).finish()
    }
}

/// One metric of a snapshot with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricValue {
    /// The flat name (as [`Metric::key`]); `None` for the per-worker gauges, which have no
    /// fixed name.
    pub key: Option<Cow<'static, str>>,
    /// The place in `GET /stats`; `None` for the per-worker gauges (an array there).
    pub json: Option<Cow<'static, str>>,
    /// The Prometheus name with its labels.
    pub prometheus: Cow<'static, str>,
    /// Counter, gauge or flag.
    pub kind: MetricKind,
    /// What it counts.
    pub unit: &'static str,
    /// One sentence.
    pub help: &'static str,
    /// The value.
    pub value: u64,
}

impl MetricValue {
    fn of(metric: &Metric, value: u64) -> Self {
        MetricValue {
            key: Some(Cow::Borrowed(metric.key)),
            json: Some(Cow::Borrowed(metric.json)),
            prometheus: Cow::Borrowed(metric.prometheus),
            kind: metric.kind,
            unit: metric.unit,
            help: metric.help,
            value,
        }
    }
}

table::counter_table! {
    /// A snapshot of the engine's counters.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Stats {
        /// Open sockets per worker, indexed by worker.
        pub worker_connections: Vec<u64>,
        /// Refused upgrades, by reason.
        pub handshake_failures: HandshakeFailures,
        /// Cluster counters, in cluster mode.
        pub cluster: Option<crate::ClusterStats>,
    }
    /// One worker's counters (the acceptor has its own, for handshake failures).
    #[derive(Debug, Default)]
    pub(crate) struct Counters {
        /// Refusals by reason (bumped by the acceptor only).
        pub handshake: HandshakeCounters,
    }
    catalog WORKER_METRICS from Some, keys "", json "";
    Gauge connections, "sockets", "Open WebSocket connections.";
    Gauge ids, "ids", "Distinct ids with at least one open connection.";
    Counter connections_opened, "sockets", "WebSocket connections opened since start.";
    Counter messages_in, "messages", "Complete messages received from clients.";
    Counter bytes_in, "bytes", "Payload bytes of the messages received from clients.";
    Counter messages_out, "messages", "Messages queued to sockets (one per target socket).";
    Counter bytes_out, "bytes", "Bytes written to sockets (frames, handshakes and control frames).";
    Counter slow_consumer_disconnects, "sockets", "Sockets closed with 1008 for exceeding max_buffered_bytes.";
    Counter slow_consumer_drops, "messages", "Messages dropped for slow sockets under the drop policy.";
    Counter node_buffer_disconnects, "sockets",
        "Sockets closed with 1008 because the node's queued output was over max_node_buffered_bytes.";
    Gauge buffered_bytes, "bytes",
        "Output queued for sockets across the node, in bytes (as each worker last published it).";
    Counter inbound_rate_limited, "sockets",
        "Sockets closed with 1008 for sending over their inbound message or byte rate.";
    Counter idle_timeouts, "sockets", "Sockets closed because they sent nothing for idle_timeout.";
    Counter protocol_errors, "sockets", "Sockets closed for a protocol violation (1002, 1007, 1009).";
    Counter messages_too_big, "sockets",
        "Sockets closed with 1009 for a message over max_message_size (also counted in protocol_errors).";
    Counter queue_full, "commands", "Sends or broadcasts refused because a worker's queue was full.";
    Counter token_expirations, "sockets", "Sockets closed with 1008 because their token expired.";
    Counter history_appended, "messages", "Messages appended to an id's history (history_size > 0).";
    Counter history_replayed, "messages", "Messages replayed from history to resuming sockets.";
    Counter history_resumes, "sockets", "Sockets that connected with ?since=EPOCH:OFFSET.";
    Counter history_lost_signals, "sockets",
        "Sockets told history could not reach back: !lost to wspush.v1 sockets, close 4410 to others.";
    Counter history_duplicates, "messages",
        "Positioned messages from Redis dropped because the id's sockets here already had them (cluster history).";
    Counter history_gap_fills, "reads",
        "Reads of an id's history a worker made to fill a gap in its live messages or catch up after the subscription was lost (cluster history).";
    Counter history_evicted, "histories",
        "Whole histories dropped to keep the node under history_max_bytes.";
    Gauge history_bytes, "bytes", "Memory held by the histories, as counted against history_max_bytes.";
    Counter messages_deflated, "messages",
        "Messages compressed with permessage-deflate: once per message and window in a worker, however many sockets get it.";
    Counter inflated_too_big, "sockets",
        "Sockets closed with 1009 for a compressed message inflating past max_message_size (also in messages_too_big).";
}

impl Counters {
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        self.add_counts_to(stats);
        self.handshake.add_to(&mut stats.handshake_failures);
    }
}

/// The Prometheus family of the refusals, one sample per reason.
const HANDSHAKE_FAILURES: &str = "wspush_handshake_failures_total";
const HANDSHAKE_HELP: &str = "Refused WebSocket upgrades, by reason.";
/// The Prometheus family of the per-worker connection gauges.
const WORKER_CONNECTIONS: &str = "wspush_worker_connections";
const WORKER_CONNECTIONS_HELP: &str = "Open WebSocket connections per worker thread.";

impl Stats {
    /// Every metric with its value, in a fixed order: the worker counters, the refusals by
    /// reason, the per-worker connections, then (in cluster mode) the cluster's. The one
    /// list that `GET /stats`, `GET /metrics`, the C struct and Java render.
    pub fn metrics(&self) -> Vec<MetricValue> {
        let mut values: Vec<MetricValue> = WORKER_METRICS
            .iter()
            .filter_map(|metric| (metric.value)(self).map(|value| MetricValue::of(metric, value)))
            .collect();
        values.extend(self.handshake_failures.by_reason().into_iter().map(|refused| {
            let label = refused.label();
            let json = if refused.group.is_empty() {
                format!("handshake_failures.{}", refused.reason)
            } else {
                format!("handshake_failures.{}.{}", refused.group, refused.reason)
            };
            MetricValue {
                key: Some(Cow::Owned(format!("handshake_{label}"))),
                json: Some(Cow::Owned(json)),
                prometheus: Cow::Owned(format!("{HANDSHAKE_FAILURES}{{reason=\"{label}\"}}")),
                kind: MetricKind::Counter,
                unit: "upgrades",
                help: HANDSHAKE_HELP,
                value: refused.count,
            }
        }));
        values.extend(self.worker_connections.iter().enumerate().map(|(worker, &value)| MetricValue {
            key: None,
            json: None,
            prometheus: Cow::Owned(format!("{WORKER_CONNECTIONS}{{worker=\"{worker}\"}}")),
            kind: MetricKind::Gauge,
            unit: "sockets",
            help: WORKER_CONNECTIONS_HELP,
            value,
        }));
        values.extend(
            crate::cluster::CLUSTER_STATE
                .iter()
                .chain(crate::cluster::CLUSTER_COUNTERS)
                .filter_map(|metric| (metric.value)(self).map(|value| MetricValue::of(metric, value))),
        );
        values
    }

    /// The declared metrics whose value does not depend on the snapshot's shape (every one
    /// but the per-reason refusals and the per-worker gauges), for documentation and tests.
    pub fn catalog() -> impl Iterator<Item = &'static Metric> {
        WORKER_METRICS.iter().chain(crate::cluster::CLUSTER_STATE).chain(crate::cluster::CLUSTER_COUNTERS)
    }
}
