//! A worker: one thread, one `mio::Poll`, the sole owner of its sockets.
//!
//! Commands arrive over a crossbeam channel (see [`mailbox`](super::mailbox)). Each wake-up
//! drains the whole queue, then flushes every socket that got output with one `writev`
//! each.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use super::budget::{close_oldest_blocked, Budget};
use super::connection::{CloseCause, Connection, Lease, State};
use super::core::{Core, WorkerShared, CLOSE_GRACE_MS};
use super::history::WorkerHistory;
use super::hosted::{Hosted, HostedTask};
use super::input::READ_PER_PASS;
use super::mailbox::{Adoption, Command, Mailboxes, WorkerHandle};
use super::output::{blocked_entry, deliver, Queued, Sockets};
use super::settings::WorkerSettings;
use crate::compression::{FrameCompressor, Inflater};
use crate::extensions::Extensions;
use crate::frame::{self, close_code, OpCode};
use crate::history::Position;
use crate::stats::bump;
use crate::transport::Transport;
use crate::{ConnectionId, Error, Event};

/// The poll token of the worker's waker; sockets use their slab key.
const WAKER: Token = Token(usize::MAX);

/// Commands handled in one pass of the loop: everything queued when the pass starts,
/// within these bounds. A backlog is handled in big passes, so what is pending for a socket
/// goes out in one `writev` (10,000 sockets under a unicast storm: 0.70 -> 0.42 server CPU-s
/// per 100k deliveries), while a pass stays bounded whatever the queue's capacity: under a
/// steady stream of sends a worker still flushes its sockets, runs its timers and reads its
/// clients after each pass.
const MIN_COMMANDS_PER_PASS: usize = 4096;
const MAX_COMMANDS_PER_PASS: usize = 16384;

/// What draining the command queue left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// The queue is empty.
    Empty,
    /// The pass's budget ran out with commands still queued.
    More,
    /// The engine handle is gone.
    Disconnected,
}

/// Slab keys live in the low bits of a connection's serial, the rest counts up.
const KEY_BITS: u32 = 24;

/// Commands a pass carried for a sleeping worker may handle (see [`Worker::carry`]): a
/// lone message from Redis is one; more wake the worker, so a burst is written by its own
/// worker, in parallel with the others.
pub(crate) const CARRIED_COMMANDS: usize = 16;

/// A worker's state: its sockets and everything its passes use. Behind a mutex that the
/// worker's thread holds except while it waits, so that the thread hosting the backplane
/// can run a short pass for it while it sleeps ([`Worker::carry`]) instead of waking it.
pub(crate) struct Worker {
    commands: Receiver<Command>,
    /// False while the worker may be blocked in `poll`; senders wake it when they flip it.
    notified: Arc<AtomicBool>,
    pub(super) conns: Slab<Connection>,
    /// Sockets of each id. foldhash instead of SipHash: hashing the id was a visible share
    /// of a worker's time per message, and a per-process random seed still keeps clients
    /// from choosing ids that collide.
    pub(super) ids: HashMap<Arc<str>, Vec<usize>, foldhash::fast::RandomState>,
    pub(super) core: Core,
    /// One read buffer for all sockets: input is decoded straight from it, and only the
    /// tail of an incomplete frame is copied into its connection.
    pub(super) read_buf: Vec<u8>,
    /// Sockets whose last read stopped at `READ_PER_PASS` with input left, as (key,
    /// serial): read again next pass.
    pub(super) still_readable: Vec<(usize, u64)>,
    /// The previous pass's `still_readable`, being read in this one (kept for its
    /// allocation).
    readable_now: Vec<(usize, u64)>,
    generation: u64,
    shutdown_deadline_ms: Option<u64>,
    /// The ids' histories and the sockets replaying them; `None` with history off.
    pub(super) history: Option<WorkerHistory>,
    /// A task to host (worker 0 hosts the Redis backplane), until the loop starts it.
    to_host: Option<(Box<HostedTask>, Mailboxes)>,
    /// When the next tick and the next pings are due, in the worker's clock.
    next_tick_ms: u64,
    next_ping_ms: u64,
    /// The last pass stopped at its budget with commands or events left.
    commands_left: bool,
    events_left: bool,
}

/// Locks a worker's state. A pass that panicked poisoned it; the state is still the
/// worker's, which goes on (as a thread that did not share it would).
fn lock(state: &Mutex<Worker>) -> MutexGuard<'_, Worker> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Worker {
    /// Starts worker number `worker` on a thread of its own, with a queue of
    /// `queue_capacity` commands; returns the way to it and its thread.
    pub fn spawn(
        worker: usize,
        queue_capacity: usize,
        shared: WorkerShared,
        settings: WorkerSettings,
    ) -> Result<(WorkerHandle, JoinHandle<()>), Error> {
        let poll = Poll::new().map_err(|e| Error::io("creating a worker's poll", e))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(|e| Error::io("creating a worker's waker", e))?;
        let registry =
            poll.registry().try_clone().map_err(|e| Error::io("cloning a worker's registry", e))?;
        let (commands, inbox) = crossbeam_channel::bounded(queue_capacity);
        let notified = Arc::new(AtomicBool::new(false));
        let counters = shared.counters.clone();
        let state =
            Arc::new(Mutex::new(Worker::new(worker, registry, inbox, notified.clone(), shared, settings)));
        let handle = WorkerHandle::new(worker, commands, waker, notified, counters, state.clone());
        let thread = std::thread::Builder::new()
            .name(format!("wspush-worker-{worker}"))
            .spawn(move || run(&state, poll))
            .map_err(|e| Error::io("starting a worker thread", e))?;
        Ok((handle, thread))
    }

    /// A worker whose sockets register with `registry` (its poll's).
    fn new(
        worker: usize,
        registry: Registry,
        commands: Receiver<Command>,
        notified: Arc<AtomicBool>,
        shared: WorkerShared,
        settings: WorkerSettings,
    ) -> Self {
        let budget = Budget::new(shared.node.clone(), worker);
        let history = WorkerHistory::from_settings(&settings, shared.backplane.is_some());
        let compressor = settings
            .compression
            .then(|| FrameCompressor::new(settings.compression_threshold, settings.compression_level));
        let inflater = settings.compression.then(Inflater::new);
        let (next_tick_ms, next_ping_ms) = (settings.tick_ms(), settings.ping_interval_ms);
        Self {
            core: Core {
                worker,
                registry,
                shared,
                settings,
                dirty: Vec::new(),
                epoch: Instant::now(),
                now_ms: 0,
                ping_frame: frame::encode(OpCode::Ping, b""),
                budget,
                deferred: Vec::new(),
                closing: VecDeque::new(),
                compressor,
                inflater,
            },
            commands,
            notified,
            conns: Slab::new(),
            ids: HashMap::default(),
            read_buf: vec![0; READ_PER_PASS],
            still_readable: Vec::new(),
            readable_now: Vec::new(),
            generation: 0,
            shutdown_deadline_ms: None,
            history,
            to_host: None,
            next_tick_ms,
            next_ping_ms,
            commands_left: false,
            events_left: false,
        }
    }

    /// The slab key in a connection's serial.
    pub(super) fn key_of_serial(serial: u64) -> usize {
        (serial & ((1 << KEY_BITS) - 1)) as usize
    }

    /// How long the worker may wait before its next pass: not at all with work left, else
    /// until its next close deadline or tick.
    fn wait_timeout(&self) -> Duration {
        let busy =
            self.commands_left || self.events_left || !self.still_readable.is_empty() || self.resumes_ready();
        if busy {
            return Duration::ZERO;
        }
        let next_tick_ms = self.next_tick_ms;
        let due = self.core.closing.front().map_or(next_tick_ms, |&(at, _)| at.min(next_tick_ms));
        Duration::from_millis(due.saturating_sub(self.core.now_ms).max(1))
    }

    /// One pass of the loop over what `events` listed: the sockets ready, the queued
    /// commands, the reads left over, replays, deadlines and timers, then one flush.
    /// Returns false when the worker is done.
    fn pass(&mut self, events: &Events, hosted: Option<&Hosted>) -> bool {
        self.core.now_ms = self.core.epoch.elapsed().as_millis() as u64;
        // Read after this pass's commands and ready sockets; what gets listed meanwhile
        // waits for the next pass.
        let mut carried = std::mem::take(&mut self.readable_now);
        std::mem::swap(&mut carried, &mut self.still_readable);
        // A full `events` may have left some ready: a hosted wait would not see them
        // again (they are not new), so the next poll does not wait.
        let mut listed = 0;
        for event in events.iter() {
            listed += 1;
            let key = event.token().0;
            if event.token() == WAKER {
                continue;
            }
            if event.is_writable() {
                self.on_writable(key);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.on_readable(key);
            }
        }
        self.events_left = listed == events.capacity();
        // Reset before draining: a command sent after this store either is drained
        // below or its sender sees `false` and wakes the poll.
        self.notified.store(false, Ordering::SeqCst);
        let queued = self.commands.len();
        let drained = self.drain_commands(queued.clamp(MIN_COMMANDS_PER_PASS, MAX_COMMANDS_PER_PASS));
        if let Some(hosted) = hosted {
            hosted.after_pass(queued);
        }
        self.commands_left = drained == Drained::More;
        let disconnected = drained == Drained::Disconnected;
        self.read_still_readable(&mut carried);
        self.readable_now = carried;
        // Replays go on after this pass's commands (sends appended to the history are
        // replayed, not delivered, to a socket that has not caught up yet).
        self.continue_resumes();
        // The clock again: reads and commands may have taken a while, and deadlines and
        // timers are checked on every pass however busy it is.
        self.core.now_ms = self.core.epoch.elapsed().as_millis() as u64;
        self.drop_closed_past_deadline();
        if self.core.now_ms >= self.next_tick_ms {
            let ping_interval_ms = self.core.settings.ping_interval_ms;
            let ping_due = ping_interval_ms > 0 && self.core.now_ms >= self.next_ping_ms;
            if ping_due {
                self.next_ping_ms = self.core.now_ms + ping_interval_ms;
            }
            self.tick(ping_due);
            self.next_tick_ms = self.core.now_ms + self.core.settings.tick_ms();
        }
        self.flush_dirty();
        self.core.budget.publish();
        if self.core.budget.blocked_len() > 2 * self.conns.len() + 64 {
            self.compact_blocked();
        }
        if disconnected && self.shutdown_deadline_ms.is_none() {
            self.begin_shutdown(self.core.now_ms + CLOSE_GRACE_MS);
        }
        if let Some(deadline) = self.shutdown_deadline_ms {
            if self.conns.is_empty() || self.core.now_ms >= deadline {
                return false;
            }
            self.next_tick_ms = self.next_tick_ms.min(deadline);
        }
        true
    }

    /// A short pass run for this worker, while it sleeps in its poll, by the thread that
    /// queued its commands (the one hosting the backplane, after a read from Redis): the
    /// queued commands, then one flush. A message that arrives alone then costs no wake-up
    /// of a second thread: the write is made where the message was read.
    ///
    /// Returns whether the worker must be woken all the same: commands are left, or the
    /// pass gave it something its sleep did not count on (a close deadline, a socket to
    /// read, a replay, a task, its stop). Readiness needs no wake here: a socket the pass
    /// registered for writing wakes the poll itself.
    pub(super) fn carry(&mut self) -> bool {
        self.notified.store(false, Ordering::SeqCst);
        self.core.now_ms = self.core.epoch.elapsed().as_millis() as u64;
        let closing = self.core.closing.len();
        let drained = self.drain_commands(CARRIED_COMMANDS);
        self.flush_dirty();
        self.core.budget.publish();
        drained != Drained::Empty
            || self.core.closing.len() != closing
            || !self.still_readable.is_empty()
            || self.resumes_ready()
            || self.to_host.is_some()
            || self.shutdown_deadline_ms.is_some()
    }

    /// Closes every socket (the worker stops).
    fn remove_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key);
        }
        self.core.budget.publish();
    }

    /// Handles at most `limit` queued commands.
    fn drain_commands(&mut self, limit: usize) -> Drained {
        for _ in 0..limit {
            match self.commands.try_recv() {
                Ok(command) => self.handle(command),
                Err(crossbeam_channel::TryRecvError::Empty) => return Drained::Empty,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Drained::Disconnected,
            }
        }
        Drained::More
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Send { id, frame, receipt } if self.history.is_some() => {
                if self.history.as_ref().is_some_and(|history| history.live.is_some()) {
                    // Cluster mode: a message without a position (compat channel, an old
                    // node) is live-only.
                    self.send_live_only(&id, frame, receipt)
                } else {
                    self.send_with_history(&id, frame, receipt)
                }
            }
            Command::Send { id, frame, receipt } => {
                let mut reached = 0;
                // The last socket takes the frame itself: a clone would turn the frame's
                // `Vec` into a shared block (an allocation, and an atomic count to drop),
                // which the usual unicast, one socket per id, never needs (`bytes::shared_drop`
                // was 4% of the server's CPU in a unicast profile).
                if let Some((&last, rest)) = self.ids.get(&*id).and_then(|keys| keys.split_last()) {
                    for &key in rest {
                        reached += usize::from(deliver(&mut self.core, &mut self.conns, key, frame.clone()));
                    }
                    reached += usize::from(deliver(&mut self.core, &mut self.conns, last, frame));
                }
                if let Some(receipt) = receipt {
                    self.core.budget.publish_queued();
                    receipt.add_sockets(reached);
                }
            }
            Command::Broadcast { frame, receipt } if self.history.is_some() => {
                self.broadcast_with_history(frame, receipt)
            }
            Command::Broadcast { frame, receipt } => {
                let mut reached = 0;
                for (key, conn) in self.conns.iter_mut() {
                    match self.core.queue_data(key, conn.link_mut(), frame.clone(), true) {
                        Queued::Yes => reached += 1,
                        Queued::No => {}
                        Queued::NeedsRoom(_) => self.core.deferred.push(key),
                    }
                }
                // Making room closes other sockets, which the loop above holds: after it.
                let mut deferred = std::mem::take(&mut self.core.deferred);
                for key in deferred.drain(..) {
                    reached += usize::from(deliver(&mut self.core, &mut self.conns, key, frame.clone()));
                }
                self.core.deferred = deferred;
                if let Some(receipt) = receipt {
                    self.core.budget.publish_queued();
                    receipt.add_sockets(reached);
                }
            }
            Command::Count { id, receipt } => receipt.add_sockets(self.ids.get(&*id).map_or(0, Vec::len)),
            Command::SendTo { conn, frame } => {
                if let Some(key) = self.key_of(conn) {
                    let frame = if self.history.is_some() { self.live_only_frame(key, frame) } else { frame };
                    deliver(&mut self.core, &mut self.conns, key, frame);
                }
            }
            Command::Close { conn, code } => {
                if let Some(key) = self.key_of(conn) {
                    self.core.close(key, self.conns[key].link_mut(), code, "", CloseCause::Initiate, false);
                }
            }
            Command::Adopt(adoption) => {
                let Adoption { stream, id, greeting, early, expires_at, ip_slot, extensions, since, v1 } =
                    *adoption;
                let lease = self.core.lease(expires_at, ip_slot);
                self.adopt(stream, id, greeting, early, lease, extensions, (since, v1))
            }
            Command::History { id, since, limit, reply } => self.read_history(&id, since, limit, reply),
            Command::SendAt { id, frame, position } => self.live_send_at(&id, frame, position),
            Command::Subscribed { id } => self.live_subscribed(&id),
            Command::HistoryPage { id, token, page } => self.live_page(&id, token, page),
            Command::Host(task, mailboxes) => self.to_host = Some((task, mailboxes)),
            Command::Shutdown { deadline } => {
                let left = deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
                self.begin_shutdown(self.core.now_ms + left);
            }
        }
    }

    fn key_of(&self, conn: ConnectionId) -> Option<usize> {
        let serial = conn.0 >> ConnectionId::WORKER_BITS;
        let key = Self::key_of_serial(serial);
        self.conns.get(key).filter(|c| c.link().serial() == serial).map(|_| key)
    }

    fn begin_shutdown(&mut self, deadline_ms: u64) {
        self.shutdown_deadline_ms = Some(deadline_ms);
        for (key, conn) in self.conns.iter_mut() {
            let link = conn.link_mut();
            self.core.close(
                key,
                link,
                close_code::GOING_AWAY,
                "server shutting down",
                CloseCause::Initiate,
                false,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &mut self,
        mut stream: Transport,
        id: Box<str>,
        greeting: Option<Bytes>,
        early: Vec<u8>,
        lease: Lease,
        extensions: Extensions,
        (since, v1): (Option<Position>, bool),
    ) {
        let tls = stream.is_tls();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self.shutdown_deadline_ms.is_some() || key >= 1 << KEY_BITS {
            self.core.release(lease);
            return;
        }
        if let Err(e) = self.core.registry.register(&mut stream, Token(key), Interest::READABLE) {
            tracing::warn!(error = %e, "cannot register a socket with the worker's poll");
            self.core.release(lease);
            return;
        }
        self.generation += 1;
        let serial = self.generation << KEY_BITS | key as u64;
        let id: Arc<str> = match self.ids.get_key_value(&*id) {
            Some((shared_id, _)) => shared_id.clone(),
            None => {
                bump(&self.core.shared.counters.ids, 1);
                if let Some(backplane) = &self.core.shared.backplane {
                    backplane.id_opened(&id);
                }
                Arc::from(id)
            }
        };
        self.ids.entry(id.clone()).or_default().push(key);
        let conn = entry.insert(Connection::new(
            stream,
            id,
            serial,
            self.core.settings.max_message_size,
            self.core.now_ms,
            lease,
            extensions,
        ));
        bump(&self.core.shared.counters.connections, 1);
        bump(&self.core.shared.counters.connections_opened, 1);
        if let Some(greeting) = greeting {
            self.core.push(key, conn.link_mut(), greeting);
        }
        let conn_id = ConnectionId::new(self.core.worker, serial);
        self.core.emit(&Event::Open { conn: conn_id, id: conn.link().id() });
        // Right behind the 101, before anything the early input may answer.
        self.position_socket(key, serial, since, v1);
        if !early.is_empty() {
            self.conns[key].set_partial_input(early);
            self.decode_input(key, 0);
        }
        if tls {
            // rustls may hold input the acceptor did not take (decrypted with the upgrade
            // request): no readiness event would tell of it.
            self.on_readable(key);
        }
    }

    /// Drops the closing sockets past their close deadline (those that neither finished
    /// their close nor stopped sending in time).
    fn drop_closed_past_deadline(&mut self) {
        while let Some(&(deadline_ms, serial)) = self.core.closing.front() {
            if self.core.now_ms < deadline_ms {
                return;
            }
            self.core.closing.pop_front();
            let key = Self::key_of_serial(serial);
            if self.conns.get(key).is_some_and(|c| c.link().serial() == serial && !c.link().is_open()) {
                self.remove(key);
            }
        }
    }

    /// Timers: pings, idle sockets, expired tokens; and the node's output over its cap.
    fn tick(&mut self, ping_due: bool) {
        let now = self.core.now_ms;
        let idle_ms = self.core.settings.idle_timeout_ms;
        debug_assert_eq!(
            self.conns.iter().map(|(_, conn)| conn.link().queued()).sum::<usize>(),
            self.core.budget.buffered(),
            "the worker's total of queued output is off"
        );
        self.relieve_node();
        self.expire_histories();
        self.live_tick();
        for (key, conn) in self.conns.iter_mut() {
            let link = conn.link_mut();
            match link.state() {
                State::Open if link.lease().expired(now) => {
                    bump(&self.core.shared.counters.token_expirations, 1);
                    let cause = CloseCause::Initiate;
                    self.core.close(key, link, close_code::POLICY_VIOLATION, "token expired", cause, false);
                }
                State::Open if idle_ms > 0 && link.idle_ms(now) >= idle_ms => {
                    bump(&self.core.shared.counters.idle_timeouts, 1);
                    self.core.close(
                        key,
                        link,
                        close_code::GOING_AWAY,
                        "idle timeout",
                        CloseCause::Initiate,
                        true,
                    );
                }
                State::Open if ping_due => {
                    self.core.queue_control(key, link, self.core.ping_frame.clone(), false)
                }
                _ => {}
            }
        }
    }

    /// When the node's output is over its cap, frees this worker's share of the excess,
    /// closing its longest-blocked sockets first.
    fn relieve_node(&mut self) {
        let Some(target) = self.core.budget.relief_target() else { return };
        let mut sockets = Sockets { core: &mut self.core, conns: &mut self.conns };
        close_oldest_blocked(&mut sockets, |sockets| sockets.core.budget.buffered() <= target);
    }

    /// Drops the stale entries of the list of blocked sockets.
    fn compact_blocked(&mut self) {
        let conns = &self.conns;
        self.core.budget.retain_blocked(|serial, since| blocked_entry(conns, serial, since).is_some());
    }

    /// Drops a connection (closing its socket) and reports its close.
    pub(super) fn remove(&mut self, key: usize) {
        let link = self.conns.remove(key).into_link();
        self.core.budget.sub(link.queued());
        if let Some(keys) = self.ids.get_mut(link.id()) {
            keys.retain(|&k| k != key);
            if keys.is_empty() {
                self.ids.remove(link.id());
                self.core.shared.counters.ids.fetch_sub(1, Ordering::Relaxed);
                if let Some(backplane) = &self.core.shared.backplane {
                    backplane.id_closed(link.id());
                }
                self.live_forget(link.id());
            }
        }
        self.core.shared.counters.connections.fetch_sub(1, Ordering::Relaxed);
        self.core.release(link.lease());
        let conn_id = ConnectionId::new(self.core.worker, link.serial());
        self.core.emit(&Event::Close { conn: conn_id, id: link.id(), code: link.close_code() });
    }
}

/// A worker's thread: waits (in its poll, or in its hosted task's runtime) without its
/// state's lock, and runs each pass holding it, until the worker is done.
fn run(state: &Mutex<Worker>, mut poll: Poll) {
    let mut events = Events::with_capacity(1024);
    let mut hosted: Option<Hosted> = None;
    let mut worker = lock(state);
    let index = worker.core.worker;
    loop {
        let timeout = worker.wait_timeout();
        drop(worker);
        // A hosted wait (when this worker holds its task) stands in for the poll's: the
        // poll then only collects what is ready, and is skipped when nothing but commands
        // ended the wait.
        let poll_timeout = match hosted.as_mut().and_then(|hosted| hosted.wait(timeout, index)) {
            Some(false) => None,
            Some(true) => Some(Duration::ZERO),
            None => Some(timeout),
        };
        let polled = match poll_timeout {
            Some(timeout) => poll.poll(&mut events, Some(timeout)),
            None => {
                events.clear();
                Ok(())
            }
        };
        worker = lock(state);
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(worker = index, error = %e, "poll failed; worker stops");
                break;
            }
        }
        let go_on = worker.pass(&events, hosted.as_ref());
        if let Some((task, mailboxes)) = worker.to_host.take() {
            match Hosted::start(*task, &poll, index, mailboxes) {
                Ok(started) => hosted = Some(started),
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot run the hosted task (the Redis backplane): this node has no Redis")
                }
            }
        }
        if !go_on {
            break;
        }
    }
    worker.remove_all();
    drop(worker);
    // The hosted task outlives the sockets: the backplane publishes what the last closes
    // and messages queued, until the engine tells it to stop.
    if let Some(hosted) = hosted {
        hosted.finish();
    }
}
