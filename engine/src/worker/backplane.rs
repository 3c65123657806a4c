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
}
