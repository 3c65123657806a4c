//! What the engine tells its host: sockets opening, messages arriving, sockets closing.

use crate::Message;

/// A handle to one socket, valid until its [`Event::Close`]. Pass it to
/// [`Engine::send_to`](crate::Engine::send_to) to reply to that socket alone. Handles are
/// never reused within an engine's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    pub(crate) const WORKER_BITS: u32 = 8;

    pub(crate) fn new(worker: usize, serial: u64) -> Self {
        Self(serial << Self::WORKER_BITS | worker as u64)
    }

    pub(crate) fn worker(self) -> usize {
        (self.0 & ((1 << Self::WORKER_BITS) - 1)) as usize
    }

    /// The handle as a number (for logs and foreign callers).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The handle back from [`ConnectionId::as_u64`].
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Something that happened on a socket. Borrowed: copy what you keep.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A socket completed its upgrade and now receives messages for `id`.
    Open {
        /// The socket.
        conn: ConnectionId,
        /// Its id.
        id: &'a str,
    },
    /// A complete message arrived from a client.
    Message {
        /// The socket it came from.
        conn: ConnectionId,
        /// That socket's id.
        id: &'a str,
        /// The message (fragments already reassembled, text already validated).
        message: Message<'a>,
    },
    /// A socket is gone. `code` is the close code the engine sent or received
    /// (1006 when the connection dropped without a close frame).
    Close {
        /// The socket.
        conn: ConnectionId,
        /// Its id.
        id: &'a str,
        /// The close code.
        code: u16,
    },
}

/// Receives [`Event`]s. Called on a worker thread, which owns many other sockets: return
/// quickly and never block (hand work to another thread if it is slow).
pub trait EventHandler: Send + Sync + 'static {
    /// Called for every event, on the worker that owns the socket.
    fn on_event(&self, event: &Event<'_>);
}

impl<F> EventHandler for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// Where the engine keeps the host's handler; swapped without locking the workers.
pub(crate) type HandlerSlot = arc_swap::ArcSwapOption<Box<dyn EventHandler>>;
