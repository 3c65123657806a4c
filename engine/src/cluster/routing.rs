//! From Redis to the workers: every message the subscriber receives is routed here, to the
//! worker that owns its id, or to every worker for a broadcast.
//!
//! The only part of the backplane that knows the workers' API, so a change to that API is
//! made here alone.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::ClusterLink;
use super::resp::Push;
use super::stats::ClusterCounters;
use super::subscription::Subscription;
use super::{compat, envelope};
use crate::frame::{self, OpCode};
use crate::stats::bump;
use crate::worker::{Mailboxes, Pending, Refused};

/// How long the subscriber waits for a full worker queue to take a delivery, and how
/// often it looks.
const MAX_WORKER_WAIT: Duration = Duration::from_secs(2);
const WORKER_WAIT_STEP: Duration = Duration::from_millis(1);

/// The local workers the backplane delivers to.
pub(crate) type Workers = Mailboxes;

/// What the subscriber needs to route messages.
pub(super) struct Router {
    link: Arc<ClusterLink>,
    mailboxes: Mailboxes,
    /// Malformed payload kinds already logged (each is logged once, then only counted).
    logged: HashSet<&'static str>,
    /// A delivery whose worker's queue was full: the worker index, the command, and since
    /// when. While it waits, nothing more is read from Redis.
    waiting: Option<(Pending, Instant)>,
    /// History on: ids whose subscription Redis confirmed, for their workers, in order with
    /// the messages (a worker reads an id's position only once every later message is sure
    /// to reach it).
    confirmed: VecDeque<Box<str>>,
}

/// What a subscriber connection does with the replies that are not messages.
pub(super) trait Replies {
    /// A SUBSCRIBE (`subscribed`) or UNSUBSCRIBE confirmation of `channel`, with the
    /// connection's count after it. Returns whether the channel's id (if it is a user
    /// channel) is now subscribed: with history on, its worker is told, in order with the
    /// messages.
    fn subscription(&mut self, channel: &[u8], subscribed: bool, count: i64) -> bool;
    /// An error reply: `Err` when the connection is unusable.
    fn error(&mut self, error: &[u8]) -> std::io::Result<()>;
}

/// One Redis's subscriber: confirmations set the subscription count, an error is fatal.
pub(super) struct OneRedis<'a>(pub &'a ClusterCounters);

impl Replies for OneRedis<'_> {
    fn subscription(&mut self, _channel: &[u8], subscribed: bool, count: i64) -> bool {
        self.0.subscribed_channels.store(count.max(0) as u64, Relaxed);
        subscribed
    }

    fn error(&mut self, error: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other(format!("Redis refused: {}", String::from_utf8_lossy(error))))
    }
}

/// Routes every reply already received (until a delivery has to wait for its worker):
/// messages to the workers, confirmations and errors to `replies`, a pong into
/// `awaiting_pong`. Returns how many (un)subscribe confirmations it saw.
pub(super) fn route_received(
    conn: &mut Subscription,
    router: &mut Router,
    awaiting_pong: &mut bool,
    replies: &mut impl Replies,
) -> std::io::Result<usize> {
    let mut confirmations = 0;
    loop {
        router.hand_over_confirmed();
        if router.waiting.is_some() {
            break;
        }
        let push = conn.next().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match push {
            None => return Ok(confirmations),
            Some(Push::Message { channel, payload }) => match std::str::from_utf8(channel) {
                Ok(channel) => router.route(channel, payload),
                Err(_) => bump(&router.link.counters.received, 1),
            },
            Some(Push::Subscriptions { channel, subscribed, count }) => {
                confirmations += 1;
                let subscribed = replies.subscription(channel, subscribed, count);
                if subscribed && router.link.history_enabled() {
                    let id = std::str::from_utf8(channel).ok().and_then(|c| router.link.channels.id_of(c));
                    if let Some(id) = id {
                        router.confirmed.push_back(id.into());
                    }
                }
            }
            Some(Push::Pong) => *awaiting_pong = false,
            Some(Push::Ok) => {}
            Some(Push::Error(e)) => replies.error(e)?,
        }
    }
    Ok(confirmations)
}

impl Router {
    pub fn new(link: Arc<ClusterLink>, shards: Workers) -> Self {
        Self { link, mailboxes: shards, logged: HashSet::new(), waiting: None, confirmed: VecDeque::new() }
    }

    /// History on: `id` is subscribed already (it came and went and came back within one
    /// batch of changes, so no SUBSCRIBE was needed): its worker is told, in order with the
    /// messages, as if Redis had confirmed it.
    pub fn confirm_subscribed(&mut self, id: Box<str>) {
        if self.link.history_enabled() {
            self.confirmed.push_back(id);
        }
    }

    /// The subscriber's connection is lost: confirmations of it are void, and every worker
    /// learns that its ids may miss messages until they are confirmed again.
    pub fn connection_lost(&mut self) {
        self.confirmed.clear();
        self.link.subscription_lost();
    }

    /// Hands the confirmed subscriptions to their workers, until one has to wait.
    fn hand_over_confirmed(&mut self) {
        while self.waiting.is_none() {
            let Some(id) = self.confirmed.pop_front() else { return };
            match self.mailboxes.try_confirm_subscribed(&id) {
                Ok(()) => {}
                Err(Refused::Full(pending)) => self.waiting = Some((pending, Instant::now())),
                Err(Refused::ShutDown) => {}
            }
        }
    }

    /// A delivery waits for its worker: until [`Router::wait_for_worker`] hands it over,
    /// nothing more may be read from Redis.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Delivers one message from Redis to the local workers. Never blocks: a delivery to a
    /// full worker queue waits in `waiting` (see [`Router::wait_for_worker`]); a broadcast a
    /// full worker cannot take is dropped for that worker and counted.
    fn route(&mut self, channel: &str, payload: &[u8]) {
        let counters = self.link.counters.clone();
        bump(&counters.received, 1);
        let channels = &self.link.channels;
        if channels.compat.as_deref() == Some(channel) {
            return self.route_compat(payload);
        }
        let id = if channel == channels.all {
            None
        } else if let Some(id) = channels.id_of(channel) {
            Some(id)
        } else {
            return;
        };
        let envelope = match envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => return malformed(&mut self.logged, &counters.malformed_envelopes, "envelope", &e),
        };
        if is_skipped_echo(&envelope, self.link.node_id(), self.link.history_size > 0) {
            bump(&counters.own_skipped, 1);
            return;
        }
        if self.oversized(envelope.message.as_bytes().len()) {
            return;
        }
        let frame = frame::encode_message(envelope.message);
        match (id, envelope.position) {
            (Some(id), Some(position)) if self.link.history_enabled() => {
                let delivered = self.mailboxes.try_deliver_at(id, frame, position);
                self.waiting_if_refused(delivered);
            }
            (Some(id), _) => self.deliver(id, frame),
            (None, _) => {
                let refused = self.mailboxes.broadcast(frame, None).count();
                bump(&self.link.counters.delivery_dropped, refused as u64);
            }
        }
    }

    fn route_compat(&mut self, payload: &[u8]) {
        match compat::decode_in_place(payload) {
            // Published by a wspush node, which also published the envelope we act on.
            Ok(message) if message.origin.is_some() => {}
            Ok(message) if self.oversized(message.value.len()) => {}
            Ok(message) => {
                self.deliver(message.key.as_str(), frame::encode(OpCode::Text, message.value.as_bytes()))
            }
            Err(e) => malformed(&mut self.logged, &self.link.counters.malformed_compat, e.kind(), &e),
        }
    }

    /// Whether a message of `size` bytes is larger than the node pushes: then it is
    /// dropped, counted, and the first one logged. Delivered, it could only get the clients
    /// it was meant for closed as slow consumers.
    fn oversized(&mut self, size: usize) -> bool {
        let max = self.link.largest_message;
        if size <= max {
            return false;
        }
        bump(&self.link.counters.oversized_dropped, 1);
        if self.logged.insert("oversized") {
            tracing::warn!(
                size,
                max,
                "dropped a message from Redis larger than max_outbound_message_size (further ones are only counted)"
            );
        }
        true
    }

    fn deliver(&mut self, id: &str, frame: bytes::Bytes) {
        let delivered = self.mailboxes.try_deliver(id, frame);
        self.waiting_if_refused(delivered);
    }

    fn waiting_if_refused(&mut self, delivered: Result<(), Refused>) {
        match delivered {
            Ok(()) => {}
            Err(Refused::Full(pending)) => self.waiting = Some((pending, Instant::now())),
            Err(Refused::ShutDown) => bump(&self.link.counters.delivery_dropped, 1),
        }
    }

    /// Hands the waiting delivery to its worker as soon as the worker's queue has room,
    /// reading nothing from Redis meanwhile (Redis buffers for us, and TCP pushes back on
    /// it), so a burst is delivered late rather than not at all. A worker that takes nothing
    /// for [`MAX_WORKER_WAIT`] loses the delivery (counted in `delivery_dropped`).
    pub async fn wait_for_worker(&mut self) {
        while let Some((pending, since)) = self.waiting.take() {
            match self.mailboxes.retry(pending) {
                Ok(()) => return,
                Err(Refused::Full(pending)) if since.elapsed() < MAX_WORKER_WAIT => {
                    self.waiting = Some((pending, since));
                    tokio::time::sleep(WORKER_WAIT_STEP).await;
                }
                Err(_) => {
                    bump(&self.link.counters.delivery_dropped, 1);
                    if self.logged.insert("worker_full") {
                        tracing::warn!(
                            "a worker's queue stayed full: dropped a delivery from Redis (counted)"
                        );
                    }
                }
            }
        }
    }
}

/// Whether `envelope` is this node's own publish, already delivered locally. A node
/// delivers its own sends at once and skips their echo; but with history on, a positioned
/// send reaches this node's sockets only through its echo, so every node delivers in one
/// order, with offsets (design §2.2, §3.2).
fn is_skipped_echo(envelope: &envelope::Envelope<'_>, node_id: &str, history: bool) -> bool {
    envelope.origin == node_id && !(history && envelope.position.is_some())
}

/// Counts a malformed payload; logs the first of each kind.
fn malformed(
    logged: &mut HashSet<&'static str>,
    counter: &std::sync::atomic::AtomicU64,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    bump(counter, 1);
    if logged.insert(kind) {
        tracing::warn!(kind, %error, "skipping a malformed payload from Redis (further ones of this kind are only counted)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn own_echoes_are_skipped_unless_positioned_with_history_on() {
        let position = Some("e1:3".parse().unwrap());
        let own = envelope::Envelope { origin: "me", message: Message::Text("x"), position: None };
        let own_positioned = envelope::Envelope { position, ..own };
        let other = envelope::Envelope { origin: "other", ..own_positioned };
        assert!(is_skipped_echo(&own, "me", false), "history off: as before");
        assert!(is_skipped_echo(&own, "me", true), "a v1 echo (broadcast) is skipped");
        assert!(
            !is_skipped_echo(&own_positioned, "me", true),
            "a positioned echo is how local sockets get it"
        );
        assert!(is_skipped_echo(&own_positioned, "me", false));
        assert!(!is_skipped_echo(&other, "me", true));
        assert!(!is_skipped_echo(&envelope::Envelope { position: None, ..other }, "me", false));
    }
}
