//! Counters: each worker bumps its own (no shared cache line on the hot path), and
//! [`Engine::stats`](crate::Engine::stats) adds them up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why upgrade requests were refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeFailures {
    /// Malformed HTTP, wrong method, or missing/invalid WebSocket headers (400).
    pub bad_request: u64,
    /// `Sec-WebSocket-Version` other than 13 (426).
    pub bad_version: u64,
    /// The path is not under the prefix (404) or the id in it is invalid (400).
    pub bad_path: u64,
    /// The request head was over the size or header-count limit (431).
    pub too_large: u64,
    /// The client did not finish its request within the handshake timeout.
    pub timeout: u64,
    /// Refused because `max_connections` were open (503).
    pub over_capacity: u64,
    /// The connection failed or closed before the upgrade completed.
    pub io: u64,
}

impl HandshakeFailures {
    /// All failures together.
    pub fn total(&self) -> u64 {
        self.bad_request
            + self.bad_version
            + self.bad_path
            + self.too_large
            + self.timeout
            + self.over_capacity
            + self.io
    }
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open sockets.
    pub connections: u64,
    /// Distinct ids with at least one open socket.
    pub ids: u64,
    /// Open sockets per worker, indexed by worker.
    pub worker_connections: Vec<u64>,
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
    /// Messages dropped for slow sockets under the `drop` policy.
    pub slow_consumer_drops: u64,
    /// Sockets closed because they sent nothing for `idle_timeout`.
    pub idle_timeouts: u64,
    /// Sockets closed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Sends or broadcasts refused because a worker's queue was full.
    pub queue_full: u64,
    /// Refused upgrades, by reason.
    pub handshake_failures: HandshakeFailures,
    /// Cluster counters, in cluster mode.
    pub cluster: Option<crate::ClusterStats>,
}

/// One worker's counters (the acceptor has its own, for handshake failures).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub ids: AtomicU64,
    pub connections_opened: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumer_disconnects: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub queue_full: AtomicU64,
    pub hs_bad_request: AtomicU64,
    pub hs_bad_version: AtomicU64,
    pub hs_bad_path: AtomicU64,
    pub hs_too_large: AtomicU64,
    pub hs_timeout: AtomicU64,
    pub hs_over_capacity: AtomicU64,
    pub hs_io: AtomicU64,
}

/// Adds `n` to a counter that only its owner thread writes.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        let get = |c: &AtomicU64| c.load(Relaxed);
        stats.connections += get(&self.connections);
        stats.ids += get(&self.ids);
        stats.connections_opened += get(&self.connections_opened);
        stats.messages_in += get(&self.messages_in);
        stats.bytes_in += get(&self.bytes_in);
        stats.messages_out += get(&self.messages_out);
        stats.bytes_out += get(&self.bytes_out);
        stats.slow_consumer_disconnects += get(&self.slow_consumer_disconnects);
        stats.slow_consumer_drops += get(&self.slow_consumer_drops);
        stats.idle_timeouts += get(&self.idle_timeouts);
        stats.protocol_errors += get(&self.protocol_errors);
        stats.queue_full += get(&self.queue_full);
        let hs = &mut stats.handshake_failures;
        hs.bad_request += get(&self.hs_bad_request);
        hs.bad_version += get(&self.hs_bad_version);
        hs.bad_path += get(&self.hs_bad_path);
        hs.too_large += get(&self.hs_too_large);
        hs.timeout += get(&self.hs_timeout);
        hs.over_capacity += get(&self.hs_over_capacity);
        hs.io += get(&self.hs_io);
    }
}
