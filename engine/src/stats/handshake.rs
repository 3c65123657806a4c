//! Refused upgrades by reason: the one list of reasons ([`HandshakeFailures::by_reason`])
//! that every exporter renders.

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

    pub(crate) fn field_mut(&mut self, reason: AuthRejection) -> &mut u64 {
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
    /// `wss://`: the TLS handshake failed (no common version or cipher suite, a bad
    /// record, an alert from the client, more than its byte budget, or the client gone).
    pub tls: u64,
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
            tls,
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
        reasons.extend([
            plain("forbidden", forbidden),
            plain("over_ip_limit", over_ip_limit),
            plain("tls", tls),
        ]);
        reasons
    }

    /// All failures together.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|refused| refused.count).sum()
    }
}

/// The acceptor's refusal counters, one per reason.
#[derive(Debug, Default)]
pub(crate) struct HandshakeCounters {
    pub bad_request: AtomicU64,
    pub bad_version: AtomicU64,
    pub bad_path: AtomicU64,
    pub too_large: AtomicU64,
    pub timeout: AtomicU64,
    pub over_capacity: AtomicU64,
    pub io: AtomicU64,
    pub forbidden_origin: AtomicU64,
    /// Indexed by [`AuthRejection::index`].
    pub auth: [AtomicU64; AuthRejection::ALL.len()],
    pub forbidden: AtomicU64,
    pub over_ip_limit: AtomicU64,
    pub tls: AtomicU64,
}

impl HandshakeCounters {
    pub(crate) fn add_to(&self, hs: &mut HandshakeFailures) {
        let get = |c: &AtomicU64| c.load(Relaxed);
        hs.bad_request += get(&self.bad_request);
        hs.bad_version += get(&self.bad_version);
        hs.bad_path += get(&self.bad_path);
        hs.too_large += get(&self.too_large);
        hs.timeout += get(&self.timeout);
        hs.over_capacity += get(&self.over_capacity);
        hs.io += get(&self.io);
        hs.forbidden_origin += get(&self.forbidden_origin);
        for reason in AuthRejection::ALL {
            *hs.auth.field_mut(reason) += get(&self.auth[reason.index()]);
        }
        hs.forbidden += get(&self.forbidden);
        hs.over_ip_limit += get(&self.over_ip_limit);
        hs.tls += get(&self.tls);
    }
}
