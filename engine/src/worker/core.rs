//! What a worker's frame handling needs beside the connection at hand ([`Core`]), and
//! what the worker shares with the engine handle ([`WorkerShared`]).

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use mio::Registry;

use super::backplane::Backplane;
use super::budget::{Budget, NodeBuffer};
use super::connection::Lease;
use super::settings::WorkerSettings;
use crate::compression::{FrameCompressor, Inflater};
use crate::event::HandlerSlot;
use crate::ip_limit::{IpLimit, IpSlot};
use crate::stats::Counters;
use crate::Event;

/// How long a closing socket may take to flush and answer our close frame.
pub(super) const CLOSE_GRACE_MS: u64 = 2_000;

/// What a worker shares with the engine handle.
pub(crate) struct WorkerShared {
    pub counters: Arc<Counters>,
    pub handler: Arc<HandlerSlot>,
    /// Open sockets across the engine (for `max_connections`).
    pub open: Arc<AtomicUsize>,
    /// In cluster mode: told when this worker's first socket of an id opens and its last
    /// one closes, and given client messages to publish.
    pub backplane: Option<Arc<dyn Backplane>>,
    /// Open connections per address, given back here when a counted socket closes.
    pub ip_limit: Option<Arc<IpLimit>>,
    /// The node's queued output, every worker's slot.
    pub node: Arc<NodeBuffer>,
}

/// The parts of a worker that frame handling needs beside a connection.
pub(super) struct Core {
    pub worker: usize,
    pub registry: Registry,
    pub shared: WorkerShared,
    pub settings: WorkerSettings,
    /// Connections with output to flush at the end of this iteration.
    pub dirty: Vec<usize>,
    pub epoch: Instant,
    pub now_ms: u64,
    pub ping_frame: Bytes,
    /// This worker's account with the node's output cap.
    pub budget: Budget,
    /// Broadcast targets waiting for the node to make room.
    pub deferred: Vec<usize>,
    /// The close deadlines of closing sockets, as (deadline in the worker's clock,
    /// serial), in order: every close gets `CLOSE_GRACE_MS` from when it starts. Checked
    /// on every pass, so a socket is dropped at its deadline whatever else the worker is
    /// doing (entries of sockets dropped earlier are skipped).
    pub closing: VecDeque<(u64, u64)>,
    /// permessage-deflate, with compression on: the worker's compressor and inflater,
    /// shared by every socket (no socket keeps a context between messages).
    pub compressor: Option<FrameCompressor>,
    pub inflater: Option<Inflater>,
}

impl Core {
    /// The lease of a socket adopted now: its token's expiry in this worker's clock
    /// (rounded up to the second), and its per-address slot.
    pub fn lease(&self, expires_at: Option<SystemTime>, ip_slot: Option<IpSlot>) -> Lease {
        let expires_at_s = expires_at.map_or(0, |at| {
            let left_ms = at.duration_since(SystemTime::now()).map_or(0, |left| left.as_millis() as u64);
            let seconds = (self.now_ms.saturating_add(left_ms)).div_ceil(1000);
            u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
        });
        Lease::new(expires_at_s, IpSlot::to_raw(ip_slot))
    }

    /// Gives back what a socket's admission took: its place under `max_connections` and,
    /// if it has one, its per-address slot.
    pub fn release(&self, lease: Lease) {
        self.shared.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let (Some(limit), Some(slot)) = (&self.shared.ip_limit, IpSlot::from_raw(lease.ip_slot())) {
            limit.release(slot);
        }
    }

    /// Hands an event to the host's handler. A panicking handler is logged and survived:
    /// one bad callback must not take every socket of the worker down with it.
    pub fn emit(&self, event: &Event<'_>) {
        let handler = self.shared.handler.load();
        if let Some(handler) = handler.as_ref() {
            if panic::catch_unwind(AssertUnwindSafe(|| handler.on_event(event))).is_err() {
                tracing::error!(worker = self.worker, "the event handler panicked; event dropped");
            }
        }
    }
}
