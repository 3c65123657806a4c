//! The way to the workers: the commands they take, each worker's queue, and the one place
//! that routes an id (or a connection) to its worker.
//!
//! Senders wake a worker's poll through its `mio::Waker` only when the worker may be
//! asleep (`notified`), so a burst of sends costs one wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use mio::Waker;

use super::event_loop::{Worker, CARRIED_COMMANDS};
use super::hosted::{deferred_by_host, deferred_outgrown, HostedTask};
use crate::cluster::ReadFailed;
use crate::extensions::Extensions;
use crate::history::{HistoryRead, Page, Position};
use crate::id::worker_of;
use crate::ip_limit::IpSlot;
use crate::receipt::Collector;
use crate::stats::{bump, Counters};
use crate::transport::Transport;
use crate::{ConnectionId, Error};

/// Work for a worker.
pub(crate) enum Command {
    /// A frame for every socket of `id`.
    Send { id: QueuedId, frame: Bytes, receipt: Option<Arc<Collector>> },
    /// A frame for every socket of this worker.
    Broadcast { frame: Bytes, receipt: Option<Arc<Collector>> },
    /// Count the sockets of `id`.
    Count { id: Box<str>, receipt: Arc<Collector> },
    /// A frame for one socket.
    SendTo { conn: ConnectionId, frame: Bytes },
    /// Close one socket with a code.
    Close { conn: ConnectionId, code: u16 },
    /// Take over an upgraded socket. Boxed: every command is as large as the largest, and
    /// an adoption (rare next to sends) is the largest by far.
    Adopt(Box<Adoption>),
    /// Run a task between passes, until it ends (see [`Mailboxes::host`]); the task's
    /// wake-ups of other workers go through the mailboxes.
    Host(Box<HostedTask>, Mailboxes),
    /// Close every socket with 1001 and stop by `deadline`.
    Shutdown { deadline: Instant },
    /// Read `id`'s history (see [`Engine::history`](crate::Engine::history)).
    History { id: Box<str>, since: Option<Position>, limit: usize, reply: HistoryReply },
    /// Cluster history: a message for every socket of `id` at `position` in its history
    /// (from Redis, in publish order; design §3.2).
    SendAt { id: Box<str>, frame: Bytes, position: Position },
    /// Cluster history: Redis confirmed the subscription to `id`'s channel; every message
    /// published to it from now on reaches this node.
    Subscribed { id: Box<str> },
    /// Cluster history: the answer to a read of `id`'s history the worker asked for.
    HistoryPage { id: Box<str>, token: u64, page: Result<Page, ReadFailed> },
}

/// Longest id a command carries inline (the rest are boxed): user ids, order numbers and
/// UUIDs without dashes fit.
const INLINE_ID: usize = 30;

/// An id in a [`Command::Send`]: short ids are copied inline rather than allocated, since a
/// `Box<str>` per send was an allocation and a free per delivery on the hot path (malloc
/// and free were 17% of the server's CPU in a unicast profile).
pub(crate) struct QueuedId(IdRepr);

enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Boxed(Box<str>),
}

impl From<&str> for QueuedId {
    fn from(id: &str) -> Self {
        if id.len() <= INLINE_ID {
            let mut bytes = [0; INLINE_ID];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            QueuedId(IdRepr::Inline { len: id.len() as u8, bytes })
        } else {
            QueuedId(IdRepr::Boxed(id.into()))
        }
    }
}

impl std::ops::Deref for QueuedId {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            // A few nanoseconds on a short id; it keeps `unsafe` out.
            IdRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("copied whole from a str")
            }
            IdRepr::Boxed(id) => id,
        }
    }
}

/// Where a history read goes: called once, on the thread running the worker's pass.
pub(crate) type HistoryReply = Box<dyn FnOnce(HistoryRead) + Send>;

/// An upgraded socket for the worker of `id`. `greeting` (the 101 response) is written
/// first; `early` holds frames the client sent right behind its upgrade request. The socket
/// is closed with 1008 at `expires_at` (its token's expiry), and gives `ip_slot` back when
/// it closes.
pub(crate) struct Adoption {
    /// Plain, or TLS with its handshake done.
    pub stream: Transport,
    pub id: Box<str>,
    pub greeting: Option<Bytes>,
    pub early: Vec<u8>,
    pub expires_at: Option<SystemTime>,
    pub ip_slot: Option<IpSlot>,
    /// What the upgrade negotiated (none for a socket its host upgraded).
    pub extensions: Extensions,
    /// The position the client resumes from (`?since=`), if any.
    pub since: Option<Position>,
    /// The 101 selected `wspush.v1`: the socket gets positioned frames.
    pub v1: bool,
}

/// One worker's queue.
pub(crate) struct WorkerHandle {
    /// The worker's number.
    worker: usize,
    commands: Sender<Command>,
    waker: Waker,
    notified: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// The worker's state, for a pass carried while it sleeps ([`Mailboxes::carry_or_wake`]).
    state: Arc<Mutex<Worker>>,
}

impl WorkerHandle {
    pub(super) fn new(
        worker: usize,
        commands: Sender<Command>,
        waker: Waker,
        notified: Arc<AtomicBool>,
        counters: Arc<Counters>,
        state: Arc<Mutex<Worker>>,
    ) -> Self {
        Self { worker, commands, waker, notified, counters, state }
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake a worker");
        }
    }

    /// Queues a command without blocking, waking the worker only if it may be asleep. A
    /// full queue is counted (`queue_full`).
    fn submit(&self, command: Command) -> Result<(), Error> {
        match self.try_submit(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                bump(&self.counters.queue_full, 1);
                Err(Error::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::ShutDown),
        }
    }

    /// Queues a command that must not be skipped, waiting for room in a full queue (the
    /// worker still drains it), then wakes the worker unconditionally.
    fn submit_waiting(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::ShutDown)?;
        self.notified.store(true, Ordering::SeqCst);
        self.waker.wake().map_err(|e| Error::io("waking a worker", e))
    }

    /// As [`WorkerHandle::submit`], but a full queue hands the command back (uncounted).
    fn try_submit(&self, command: Command) -> Result<(), TrySendError<Command>> {
        self.commands.try_send(command)?;
        if !self.notified.swap(true, Ordering::SeqCst) {
            if !deferred_by_host(self.worker, self.commands.len()) {
                self.wake();
            }
        } else if deferred_outgrown(self.worker, || self.commands.len()) {
            self.wake();
        }
        Ok(())
    }
}

/// Why [`Mailboxes::try_deliver`] did not queue a delivery.
pub(crate) enum Refused {
    /// The worker's queue is full; here is the delivery back, for [`Mailboxes::retry`].
    Full(Pending),
    /// The worker has stopped.
    ShutDown,
}

/// A delivery a full worker refused, with the worker it is for.
pub(crate) struct Pending {
    worker: usize,
    command: Command,
}

/// Every worker's queue, routing each command to the worker it is for: the worker of an
/// id ([`worker_of`]), or of a connection (its [`ConnectionId`]). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Mailboxes {
    workers: Arc<[WorkerHandle]>,
}

impl Mailboxes {
    pub fn new(workers: Vec<WorkerHandle>) -> Self {
        Self { workers: workers.into() }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker that owns every socket of `id`.
    fn for_id(&self, id: &str) -> &WorkerHandle {
        &self.workers[worker_of(id, self.workers.len())]
    }

    /// The worker of `conn`.
    fn for_conn(&self, conn: ConnectionId) -> Result<&WorkerHandle, Error> {
        // A handle from another engine may name a worker this one lacks; it names no socket here.
        self.workers.get(conn.worker()).ok_or(Error::ShutDown)
    }

    /// Queues `frame` for every socket of `id`; `receipt` learns how many it reached.
    pub fn send_frame(&self, id: &str, frame: Bytes, receipt: Option<Arc<Collector>>) -> Result<(), Error> {
        self.for_id(id).submit(Command::Send { id: id.into(), frame, receipt })
    }

    /// As [`Mailboxes::send_frame`] without a receipt, for a caller that would rather wait
    /// than drop: a full queue hands the delivery back, uncounted.
    pub fn try_deliver(&self, id: &str, frame: Bytes) -> Result<(), Refused> {
        let worker = worker_of(id, self.workers.len());
        self.offer(Pending { worker, command: Command::Send { id: id.into(), frame, receipt: None } })
    }

    /// As [`Mailboxes::try_deliver`], for a message at `position` in `id`'s history.
    pub fn try_deliver_at(&self, id: &str, frame: Bytes, position: Position) -> Result<(), Refused> {
        let worker = worker_of(id, self.workers.len());
        self.offer(Pending { worker, command: Command::SendAt { id: id.into(), frame, position } })
    }

    /// As [`Mailboxes::try_deliver`], for the confirmation that `id`'s channel is subscribed.
    pub fn try_confirm_subscribed(&self, id: &str) -> Result<(), Refused> {
        let worker = worker_of(id, self.workers.len());
        self.offer(Pending { worker, command: Command::Subscribed { id: id.into() } })
    }

    /// Hands the worker of `id` the page it asked for; false if its queue is full (the
    /// worker then asks again when its read times out).
    pub fn history_page(&self, id: &str, token: u64, page: Result<Page, ReadFailed>) -> bool {
        let command = Command::HistoryPage { id: id.into(), token, page };
        self.for_id(id).try_submit(command).is_ok()
    }

    /// Wakes every worker (something they check on every pass changed).
    pub fn wake_all(&self) {
        for worker in self.workers.iter() {
            if !worker.notified.swap(true, Ordering::SeqCst) {
                worker.wake();
            }
        }
    }

    /// Offers a delivery a full worker refused again.
    pub fn retry(&self, pending: Pending) -> Result<(), Refused> {
        self.offer(pending)
    }

    fn offer(&self, Pending { worker, command }: Pending) -> Result<(), Refused> {
        match self.workers[worker].try_submit(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command)) => Err(Refused::Full(Pending { worker, command })),
            Err(TrySendError::Disconnected(_)) => Err(Refused::ShutDown),
        }
    }

    /// Queues a broadcast of `frame` on every worker, as the returned iterator is consumed;
    /// it yields the error of each worker that refused it (its queue full, or shut down).
    /// Each worker gets its own copy of the frame: a worker bumps the frame's reference
    /// count once per socket, and a count shared by all workers would bounce its cache line
    /// between their cores on every socket.
    pub fn broadcast(
        &self,
        frame: Bytes,
        receipt: Option<Arc<Collector>>,
    ) -> impl Iterator<Item = Error> + '_ {
        self.workers.iter().enumerate().filter_map(move |(i, worker)| {
            let frame = if i == 0 { frame.clone() } else { Bytes::copy_from_slice(&frame) };
            worker.submit(Command::Broadcast { frame, receipt: receipt.clone() }).err()
        })
    }

    /// Has the worker of `id` count its sockets into `receipt`.
    pub fn count(&self, id: &str, receipt: Arc<Collector>) -> Result<(), Error> {
        self.for_id(id).submit(Command::Count { id: id.into(), receipt })
    }

    /// Queues `frame` for one socket.
    pub fn send_to(&self, conn: ConnectionId, frame: Bytes) -> Result<(), Error> {
        self.for_conn(conn)?.submit(Command::SendTo { conn, frame })
    }

    /// Starts the close handshake on one socket.
    pub fn close(&self, conn: ConnectionId, code: u16) -> Result<(), Error> {
        self.for_conn(conn)?.submit(Command::Close { conn, code })
    }

    /// Has the worker of `id` read its history and call `reply` with the page.
    pub fn history(
        &self,
        id: &str,
        since: Option<Position>,
        limit: usize,
        reply: HistoryReply,
    ) -> Result<(), Error> {
        self.for_id(id).submit(Command::History { id: id.into(), since, limit, reply })
    }

    /// Hands an upgraded socket to the worker of its id. On error the socket is gone.
    pub fn adopt(&self, adoption: Adoption) -> Result<(), Error> {
        self.for_id(&adoption.id).submit(Command::Adopt(Box::new(adoption)))
    }

    /// Has worker 0 run `task` between its passes until the task ends, even past the
    /// worker's own stop: the thread that joins worker 0 must first have the task end.
    pub fn host(&self, task: HostedTask) -> Result<(), Error> {
        self.workers[0].submit_waiting(Command::Host(Box::new(task), self.clone()))
    }

    /// The wake-up of `worker` a hosted task left for the end of its turn (see
    /// [`deferred_by_host`]): with a few commands queued and the worker asleep, this thread
    /// runs the worker's pass itself ([`Worker::carry`]); otherwise, or when the pass leaves
    /// the worker something to do, it wakes the worker.
    pub(super) fn carry_or_wake(&self, worker: usize) {
        let handle = &self.workers[worker];
        if handle.commands.len() <= CARRIED_COMMANDS {
            // Held by the worker's thread unless it waits: held means awake, or about to
            // be (and the wake-up below then costs at most one extra pass).
            if let Ok(mut state) = handle.state.try_lock() {
                if !state.carry() {
                    return;
                }
            }
        }
        handle.wake();
    }

    /// Tells every worker to close its sockets and stop by `deadline`, waiting for room in
    /// a full queue (it still drains) rather than skip the shutdown.
    pub fn shutdown(&self, deadline: Instant) {
        for worker in self.workers.iter() {
            // A stopped worker needs no telling; one that missed the wake-up still finds
            // the command within a tick, which its wait never outlasts.
            let _ = worker.submit_waiting(Command::Shutdown { deadline });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_id_gives_back_the_id_short_or_long() {
        for id in
            ["7", "é-ü", &"x".repeat(INLINE_ID), &"y".repeat(INLINE_ID + 1), &"z".repeat(crate::MAX_ID_LEN)]
        {
            assert_eq!(&*QueuedId::from(id), id);
        }
    }
}
