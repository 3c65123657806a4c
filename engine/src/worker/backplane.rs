//! The worker's side of a backplane (cluster mode): what it reports about the ids it
//! holds and the messages its clients send. The worker knows no more of the cluster than
//! this trait, so backplanes can change without touching the event loop.

use crate::Message;

/// Told by a worker, on its own thread, what other nodes may need to know. Implementations
/// must not block: they are called from the event loop.
pub(crate) trait Backplane: Send + Sync {
    /// The worker's first socket of `id` opened.
    fn id_opened(&self, id: &str);
    /// The worker's last socket of `id` closed.
    fn id_closed(&self, id: &str);
    /// A client of `id` sent `message`.
    fn inbound(&self, id: &str, message: Message<'_>);
    /// History on: asks for `id`'s history from offset `from` (0: its position only), at
    /// most `count` entries; the answer comes back to the id's worker as a
    /// `Command::HistoryPage` carrying `token`, unless the worker's queue is full then (the
    /// worker asks again when the read times out). False when the read cannot be queued now.
    fn read_history(&self, id: &str, from: u64, count: usize, token: u64) -> bool;
    /// How many times the subscription has been lost so far: a worker that sees this grow
    /// knows its ids may have missed messages until each is confirmed subscribed again.
    fn subscription_losses(&self) -> u64;
    /// Whether the subscriber's connection is up now.
    fn is_subscribed(&self) -> bool;
}
