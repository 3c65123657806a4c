//! Counters: each worker bumps its own (no shared cache line on the hot path), and
//! [`Engine::stats`](crate::Engine::stats) adds them up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::AuthRejection;

/// Upgrades refused for their token (401), by [`AuthRejection`] reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthFailures {
    /// No token.
    pub missing: u64,
    /// Not a well-formed JWT, or `exp` missing or of the wrong type.
    pub malformed: u64,
    /// The signature did not verify (or the token used another algorithm).
    pub bad_signature: u64,
    /// `exp` was past, beyond the leeway.
    pub expired: u64,
    /// `nbf` was in the future, beyond the leeway.
    pub not_yet_valid: u64,
    /// `sub` was missing or not the id in the path.
    pub wrong_subject: u64,
    /// `aud` did not name the configured audience.
    pub wrong_audience: u64,
    /// `iss` was not the configured issuer.
    pub wrong_issuer: u64,
}

impl AuthFailures {
    /// All token failures together.
    pub fn total(&self) -> u64 {
        AuthRejection::ALL.iter().map(|&reason| self.get(reason)).sum()
    }

    /// The count for one reason.
    pub fn get(&self, reason: AuthRejection) -> u64 {
        *self.field(reason)
    }

    fn field(&self, reason: AuthRejection) -> &u64 {
        match reason {
            AuthRejection::Missing => &self.missing,
            AuthRejection::Malformed => &self.malformed,
            AuthRejection::BadSignature => &self.bad_signature,
            AuthRejection::Expired => &self.expired,
            AuthRejection::NotYetValid => &self.not_yet_valid,
            AuthRejection::WrongSubject => &self.wrong_subject,
            AuthRejection::WrongAudience => &self.wrong_audience,
            AuthRejection::WrongIssuer => &self.wrong_issuer,
        }
    }

    fn field_mut(&mut self, reason: AuthRejection) -> &mut u64 {
        match reason {
            AuthRejection::Missing => &mut self.missing,
            AuthRejection::Malformed => &mut self.malformed,
            AuthRejection::BadSignature => &mut self.bad_signature,
            AuthRejection::Expired => &mut self.expired,
            AuthRejection::NotYetValid => &mut self.not_yet_valid,
            AuthRejection::WrongSubject => &mut self.wrong_subject,
            AuthRejection::WrongAudience => &mut self.wrong_audience,
            AuthRejection::WrongIssuer => &mut self.wrong_issuer,
        }
    }
}

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
    /// A browser page from an origin not in `allowed_origins` (403).
    pub forbidden_origin: u64,
    /// A missing or invalid token (401), by reason.
    pub auth: AuthFailures,
    /// The host's authorizer said no, or panicked (403).
    pub forbidden: u64,
    /// The client's address already had `max_connections_per_ip` open (429).
    pub over_ip_limit: u64,
}

/// One refusal reason and its count, as [`HandshakeFailures::by_reason`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCount {
    /// `"auth"` for the token failures (401), empty for the others.
    pub group: &'static str,
    /// The reason, e.g. `bad_request` or (in group `auth`) `expired`.
    pub reason: &'static str,
    /// Upgrades refused for it.
    pub count: u64,
}

impl RefusalCount {
    /// The reason with its group: `bad_request`, `auth_expired`; the `reason` label of
    /// `wspush_handshake_failures_total`.
    pub fn label(&self) -> String {
        if self.group.is_empty() {
            self.reason.to_owned()
        } else {
            format!("{}_{}", self.group, self.reason)
        }
    }
}

impl HandshakeFailures {
    /// Every refusal reason with its count, in a fixed order. Exporters (`/stats`, `/metrics`)
    /// render this one list, so a reason added to the engine reaches all of them.
    pub fn by_reason(&self) -> Vec<RefusalCount> {
        // Destructured without `..`: a reason added to the struct fails to compile here until
        // it is listed.
        let HandshakeFailures {
            bad_request,
            bad_version,
            bad_path,
            too_large,
            timeout,
            over_capacity,
            io,
            forbidden_origin,
            auth,
            forbidden,
            over_ip_limit,
        } = *self;
        let plain = |reason, count| RefusalCount { group: "", reason, count };
        let mut reasons = vec![
            plain("bad_request", bad_request),
            plain("bad_version", bad_version),
            plain("bad_path", bad_path),
            plain("too_large", too_large),
            plain("timeout", timeout),
            plain("over_capacity", over_capacity),
            plain("io", io),
            plain("forbidden_origin", forbidden_origin),
        ];
        reasons.extend(AuthRejection::ALL.iter().map(|&rejection| RefusalCount {
            group: "auth",
            reason: rejection.reason(),
            count: auth.get(rejection),
        }));
        reasons.extend([plain("forbidden", forbidden), plain("over_ip_limit", over_ip_limit)]);
        reasons
    }

    /// All failures together.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|refused| refused.count).sum()
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
    /// Sockets closed with 1008 because the node's queued output was over
    /// `max_node_buffered_bytes` (the ones write-blocked the longest first).
    pub node_buffer_disconnects: u64,
    /// Output queued for sockets across the node, in bytes: a gauge, the sum of what each
    /// worker published at the end of its last pass of its loop (and before answering a
    /// receipt, so a sender that waited for one sees its message counted).
    pub buffered_bytes: u64,
    /// Sockets closed with 1008 for sending over `max_inbound_messages_per_second` or
    /// `max_inbound_bytes_per_second`.
    pub inbound_rate_limited: u64,
    /// Sockets closed because they sent nothing for `idle_timeout`.
    pub idle_timeouts: u64,
    /// Sockets closed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Sends or broadcasts refused because a worker's queue was full.
    pub queue_full: u64,
    /// Refused upgrades, by reason.
    pub handshake_failures: HandshakeFailures,
    /// Sockets closed with 1008 because their token expired.
    pub token_expirations: u64,
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
    pub node_buffer_disconnects: AtomicU64,
    pub inbound_rate_limited: AtomicU64,
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
    pub hs_forbidden_origin: AtomicU64,
    /// Indexed by [`AuthRejection::index`].
    pub hs_auth: [AtomicU64; AuthRejection::ALL.len()],
    pub hs_forbidden: AtomicU64,
    pub hs_over_ip_limit: AtomicU64,
    pub token_expirations: AtomicU64,
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
        stats.node_buffer_disconnects += get(&self.node_buffer_disconnects);
        stats.inbound_rate_limited += get(&self.inbound_rate_limited);
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
        hs.forbidden_origin += get(&self.hs_forbidden_origin);
        for reason in AuthRejection::ALL {
            *hs.auth.field_mut(reason) += get(&self.hs_auth[reason.index()]);
        }
        hs.forbidden += get(&self.hs_forbidden);
        hs.over_ip_limit += get(&self.hs_over_ip_limit);
        stats.token_expirations += get(&self.token_expirations);
    }
}
