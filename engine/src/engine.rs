//! The engine handle: starts the workers and the acceptor, routes commands to them.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Config, ConnectionId, Error, EventHandler, Message, Stats};

/// Whether a socket handed to [`Engine::register`] still needs its WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The host already answered 101; the socket speaks WebSocket frames from now on.
    Done,
    /// The engine reads the upgrade request and answers it (the path is not checked:
    /// the id given to `register` decides).
    Perform,
}

/// A running engine. `Send + Sync`: share it (e.g. in an `Arc`) and call it from any thread.
/// Dropping it shuts it down as [`Engine::shutdown`] does, with a 5 second deadline.
pub struct Engine {
    _todo: (),
}

impl Engine {
    /// Starts the workers and, if [`Config::ws_listen`] is set, the listener.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad setting, [`Error::Io`] if the listener cannot bind.
    pub fn start(config: Config) -> Result<Engine, Error> {
        let _ = config;
        todo!()
    }

    /// The address the listener is bound to, if there is one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        todo!()
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        todo!()
    }

    /// Sets the handler that receives every [`Event`](crate::Event), replacing any earlier one.
    pub fn set_event_handler(&self, handler: impl EventHandler) {
        let _ = handler;
        todo!()
    }

    /// Removes the event handler; events are discarded from now on.
    pub fn clear_event_handler(&self) {
        todo!()
    }

    /// Queues `message` for every socket of `id`. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::QueueFull`] when the id's worker is overloaded,
    /// [`Error::ShutDown`].
    pub fn send(&self, id: &str, message: Message<'_>) -> Result<(), Error> {
        let _ = (id, message);
        todo!()
    }

    /// As [`Engine::send`], then calls `receipt` (on the worker thread) with the number of
    /// sockets the message was queued to.
    ///
    /// # Errors
    ///
    /// As [`Engine::send`]; on error `receipt` is not called.
    pub fn send_with_receipt(
        &self,
        id: &str,
        message: Message<'_>,
        receipt: impl FnOnce(usize) + Send + 'static,
    ) -> Result<(), Error> {
        let _ = (id, message, receipt);
        todo!()
    }

    /// Queues `message` for every socket. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] if any worker's queue is full (the workers that had room still
    /// deliver), [`Error::ShutDown`].
    pub fn broadcast(&self, message: Message<'_>) -> Result<(), Error> {
        let _ = message;
        todo!()
    }

    /// As [`Engine::broadcast`], then calls `receipt` once with the number of sockets the
    /// message was queued to, once every worker has queued it.
    ///
    /// # Errors
    ///
    /// As [`Engine::broadcast`]; on error `receipt` is not called.
    pub fn broadcast_with_receipt(
        &self,
        message: Message<'_>,
        receipt: impl FnOnce(usize) + Send + 'static,
    ) -> Result<(), Error> {
        let _ = (message, receipt);
        todo!()
    }

    /// Queues `message` for one socket (e.g. a reply to the socket a message came from).
    /// A handle whose socket has closed is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`], [`Error::ShutDown`].
    pub fn send_to(&self, conn: ConnectionId, message: Message<'_>) -> Result<(), Error> {
        let _ = (conn, message);
        todo!()
    }

    /// Starts the close handshake on one socket with `code`.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`], [`Error::ShutDown`].
    pub fn close(&self, conn: ConnectionId, code: u16) -> Result<(), Error> {
        let _ = (conn, code);
        todo!()
    }

    /// Hands over a connected socket accepted elsewhere; the engine owns it from now on
    /// (and closes it). With [`Handshake::Perform`] the engine reads and answers the upgrade
    /// request first; with [`Handshake::Done`] the socket is live at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Io`] if the socket cannot be made non-blocking,
    /// [`Error::QueueFull`], [`Error::ShutDown`]. The socket is closed on error.
    pub fn register(&self, stream: TcpStream, id: &str, handshake: Handshake) -> Result<(), Error> {
        let _ = (stream, id, handshake);
        todo!()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }

    /// Stops accepting, sends close 1001 to every socket, flushes until `timeout`, then
    /// closes what is left and joins the threads. Later calls return at once.
    pub fn shutdown(&self, timeout: Duration) {
        let _ = timeout;
        todo!()
    }
}
