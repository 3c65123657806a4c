//! The engine handle: starts the workers and the acceptor, and hands them work through
//! the workers' [`Mailboxes`].

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use crate::acceptor::{self, Acceptor, AcceptorCommand, AcceptorSettings, Admission};
use crate::authorizer::{Authorizer, AuthorizerSlot};
use crate::cluster::{Backplane, ClusterLink};
use crate::event::HandlerSlot;
use crate::extensions::Extensions;
use crate::frame;
use crate::history::{HistoryRead, Position};
use crate::id::validate_id;
use crate::ip_limit::IpLimit;
use crate::listener;
use crate::receipt::{Collector, SelfCount};
use crate::stats::Counters;
use crate::tls::ServerTls;
use crate::transport::Transport;
use crate::worker::{self, Adoption, Mailboxes, NodeBuffer, Worker, WorkerSettings, WorkerShared};
use crate::{Config, ConnectionId, Error, EventHandler, Message, Presence, Receipt, Stats};

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
    mailboxes: Mailboxes,
    acceptor: Sender<AcceptorCommand>,
    acceptor_waker: Waker,
    local_addr: Option<SocketAddr>,
    handler: Arc<HandlerSlot>,
    authorizer: Arc<AuthorizerSlot>,
    ip_limit: Option<Arc<IpLimit>>,
    /// One per worker, then the acceptor's.
    counters: Vec<Arc<Counters>>,
    /// The output queued across the workers.
    node: Arc<NodeBuffer>,
    open: Arc<AtomicUsize>,
    /// The largest message pushed ([`Config::effective_max_outbound_message_size`]).
    max_outbound_message_size: usize,
    /// History is on ([`Config::history_size`] > 0).
    history: bool,
    /// The Redis backplane, in cluster mode.
    cluster: Option<Arc<ClusterLink>>,
    backplane: Mutex<Option<Backplane>>,
    shut_down: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The listener's TLS (`wss://`), reloaded by [`Engine::reload_tls`].
    tls: Option<ServerTls>,
}

/// How long dropping an engine waits for its sockets to close.
const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Starts the workers and, if [`Config::ws_listen`] is set, the listener.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad setting, [`Error::Io`] if the listener cannot bind
    /// or a thread cannot start.
    pub fn start(config: Config) -> Result<Engine, Error> {
        config.validate()?;
        let tls = match config.certificate_files()? {
            Some(files) => Some(
                ServerTls::new(files, None)
                    .map_err(|e| Error::InvalidConfig { setting: e.setting, reason: e.reason })?,
            ),
            None => None,
        };
        // Bind first: a taken port fails the start before any thread exists.
        let listener = match config.ws_listen {
            Some(addr) => Some(listener::bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?),
            None => None,
        };
        let local_addr = match &listener {
            Some(listener) => {
                Some(listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?)
            }
            None => None,
        };
        let workers = config.effective_workers();
        let handler = Arc::new(HandlerSlot::empty());
        let authorizer = Arc::new(AuthorizerSlot::empty());
        let ip_limit = config.max_connections_per_ip.map(|max| Arc::new(IpLimit::new(max)));
        let open = Arc::new(AtomicUsize::new(0));
        let mut counters = Vec::with_capacity(workers + 1);
        let mut threads = Vec::with_capacity(workers + 1);
        let mut handles = Vec::with_capacity(workers);
        let settings = WorkerSettings::from_config(&config);
        let node = Arc::new(NodeBuffer::new(workers, config.max_node_buffered_bytes));
        // The history settings are the engine's; the backplane keeps the id's history in
        // Redis with the same size and lifetime.
        let cluster_config = config.cluster.as_ref().map(|cluster| crate::ClusterConfig {
            history_size: config.history_size,
            history_ttl: config.history_ttl,
            ..cluster.clone()
        });
        let (cluster, cluster_ends) = match &cluster_config {
            Some(cluster_config) => {
                let (link, ends) =
                    ClusterLink::new(cluster_config, config.effective_max_outbound_message_size());
                (Some(link), Some(ends))
            }
            None => (None, None),
        };
        for worker in 0..workers {
            let worker_counters = Arc::new(Counters::default());
            let shared = WorkerShared {
                counters: worker_counters.clone(),
                handler: handler.clone(),
                open: open.clone(),
                backplane: cluster.clone().map(|link| link as Arc<dyn worker::Backplane>),
                ip_limit: ip_limit.clone(),
                node: node.clone(),
            };
            let (handle, thread) =
                Worker::spawn(worker, config.command_queue_capacity, shared, settings.clone())?;
            threads.push(thread);
            counters.push(worker_counters);
            handles.push(handle);
        }
        let mailboxes = Mailboxes::new(handles);
        if let Some(link) = &cluster {
            link.attach(mailboxes.clone());
        }
        let backplane = match (&cluster_config, &cluster, cluster_ends) {
            (Some(cluster_config), Some(link), Some(ends)) => {
                Some(Backplane::start(cluster_config, link.clone(), ends, mailboxes.clone())?)
            }
            _ => None,
        };

        let poll = Poll::new().map_err(|e| Error::io("creating the acceptor's poll", e))?;
        let acceptor_waker = Waker::new(poll.registry(), acceptor::WAKER)
            .map_err(|e| Error::io("creating the acceptor's waker", e))?;
        let (acceptor_commands, acceptor_inbox) = crossbeam_channel::unbounded();
        let acceptor_counters = Arc::new(Counters::default());
        let acceptor = Acceptor::new(
            poll,
            listener,
            acceptor_inbox,
            mailboxes.clone(),
            AcceptorSettings::from_config(&config, tls.as_ref().map(|tls| tls.config().clone())),
            acceptor_counters.clone(),
            open.clone(),
            Admission { authorizer: authorizer.clone(), ip_limit: ip_limit.clone() },
        )
        .map_err(|e| Error::io("registering the listener", e))?;
        counters.push(acceptor_counters);
        threads.push(
            std::thread::Builder::new()
                .name("wspush-acceptor".into())
                .spawn(move || acceptor.run())
                .map_err(|e| Error::io("starting the acceptor thread", e))?,
        );
        if let Some(addr) = local_addr {
            tracing::info!(%addr, workers, "wspush engine listening");
        }
        Ok(Engine {
            mailboxes,
            acceptor: acceptor_commands,
            acceptor_waker,
            local_addr,
            handler,
            authorizer,
            ip_limit,
            counters,
            node,
            open,
            max_outbound_message_size: config.effective_max_outbound_message_size(),
            history: config.history_enabled(),
            cluster,
            backplane: Mutex::new(backplane),
            shut_down: AtomicBool::new(false),
            threads: Mutex::new(threads),
            tls,
        })
    }

    /// Reads [`Config::tls_cert`] and [`Config::tls_key`] again: connections accepted from
    /// now on get the new certificate, connections already made keep theirs. Nothing to do
    /// (`Ok(false)`) without TLS.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the file and what is wrong with it (unreadable, not
    /// PEM, no certificate, a key that does not belong to the certificate); the certificate
    /// in use stays.
    pub fn reload_tls(&self) -> Result<bool, Error> {
        let Some(tls) = &self.tls else { return Ok(false) };
        tls.reload().map_err(|e| Error::InvalidConfig { setting: e.setting, reason: e.reason })?;
        let files = tls.files();
        tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "TLS certificate reloaded");
        Ok(true)
    }

    /// The address the listener is bound to, if there is one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.mailboxes.workers()
    }

    /// Sets the handler that receives every [`Event`](crate::Event), replacing any earlier one.
    pub fn set_event_handler(&self, handler: impl EventHandler) {
        let handler: Box<dyn EventHandler> = Box::new(handler);
        self.handler.store(Some(Arc::new(handler)));
    }

    /// Removes the event handler; events are discarded from now on.
    pub fn clear_event_handler(&self) {
        self.handler.store(None);
    }

    /// Sets the host's say on who connects, replacing any earlier authorizer: every
    /// upgrade the engine answers (on its listener, or registered with
    /// [`Handshake::Perform`]) is put to it, and `false` answers 403.
    ///
    /// It is asked after the `Origin` check and the token check
    /// ([`Config::auth`](crate::Config::auth)) passed, and before the connection limits:
    /// origin (403), token (401), authorizer (403), per-address limit (429), connection
    /// limit (503). It runs on the acceptor thread, which every pending upgrade shares:
    /// answer from memory, never wait on the network. A panic denies (and is logged).
    /// Sockets registered with [`Handshake::Done`] are not put to it: the host decided.
    pub fn set_authorizer(&self, authorizer: impl Authorizer) {
        let authorizer: Box<dyn Authorizer> = Box::new(authorizer);
        self.authorizer.store(Some(Arc::new(authorizer)));
    }

    /// Removes the authorizer; from now on every upgrade that passes the other checks is
    /// accepted.
    pub fn clear_authorizer(&self) {
        self.authorizer.store(None);
    }

    /// Queues `message` for every socket of `id`, on this node and (in cluster mode) on
    /// every other. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::MessageTooLarge`] over
    /// [`Config::max_outbound_message_size`], [`Error::QueueFull`] when the id's worker is
    /// overloaded, [`Error::ShutDown`]. In cluster mode a publish that cannot be queued for Redis is
    /// counted ([`ClusterStats::publish_dropped`](crate::ClusterStats)), not an error: the
    /// local sockets still get the message.
    pub fn send(&self, id: &str, message: Message<'_>) -> Result<(), Error> {
        self.send_command(id, message, None)
    }

    /// As [`Engine::send`], then calls `receipt` (on a worker thread or, in cluster mode,
    /// the thread reading Redis) with what the message reached: the local sockets, and in
    /// cluster mode the other nodes.
    ///
    /// # Errors
    ///
    /// As [`Engine::send`]; on error `receipt` is not called.
    pub fn send_with_receipt(
        &self,
        id: &str,
        message: Message<'_>,
        receipt: impl FnOnce(Receipt) + Send + 'static,
    ) -> Result<(), Error> {
        let parts = 1 + usize::from(self.cluster.is_some());
        let collector = Arc::new(Collector::for_receipt(parts, SelfCount::ExcludeIfLocal, receipt));
        self.send_command(id, message, Some(collector))
    }

    fn send_command(
        &self,
        id: &str,
        message: Message<'_>,
        receipt: Option<Arc<Collector>>,
    ) -> Result<(), Error> {
        validate_id(id)?;
        self.check_size(message)?;
        self.check_running()?;
        if let Some(cluster) = self.cluster.as_ref().filter(|cluster| cluster.history_enabled()) {
            // Redis gives the message its position and publishes it to every node, this one
            // included: local sockets get it from there, in the order every node sees.
            if let Some(receipt) = &receipt {
                self.mailboxes.count(id, receipt.clone())?;
            }
            return cluster.append(id, message, receipt);
        }
        let frame = frame::encode_message(message);
        self.mailboxes.send_frame(id, frame, receipt.clone())?;
        if let Some(cluster) = &self.cluster {
            cluster.publish_send(id, message, receipt);
        }
        Ok(())
    }

    /// Queues `message` for every socket, on this node and (in cluster mode) on every
    /// other. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over [`Config::max_outbound_message_size`] (nothing is
    /// sent), [`Error::QueueFull`] if any worker's queue is full (the workers that had room
    /// still deliver), [`Error::ShutDown`].
    pub fn broadcast(&self, message: Message<'_>) -> Result<(), Error> {
        self.broadcast_command(message, None)
    }

    /// As [`Engine::broadcast`], then calls `receipt` once with what the message reached,
    /// once every worker (and the publisher) has handled it.
    ///
    /// # Errors
    ///
    /// As [`Engine::broadcast`]; on error `receipt` is not called.
    pub fn broadcast_with_receipt(
        &self,
        message: Message<'_>,
        receipt: impl FnOnce(Receipt) + Send + 'static,
    ) -> Result<(), Error> {
        let parts = self.mailboxes.workers() + usize::from(self.cluster.is_some());
        let collector = Arc::new(Collector::for_receipt(parts, SelfCount::ExcludeAlways, receipt));
        self.broadcast_command(message, Some(collector))
    }

    fn broadcast_command(&self, message: Message<'_>, receipt: Option<Arc<Collector>>) -> Result<(), Error> {
        self.check_size(message)?;
        self.check_running()?;
        let frame = frame::encode_message(message);
        let result = match self.mailboxes.broadcast(frame, receipt.clone()).last() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        // Other nodes get it even if a local worker was full: more delivery, not less.
        if let Some(cluster) = &self.cluster {
            cluster.publish_broadcast(message, receipt);
        }
        result
    }

    /// Finds where `id` is online and calls `done` (on a worker thread or, in cluster mode,
    /// the thread reading Redis) with its local sockets and, in cluster mode, the number of
    /// nodes subscribed to it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::QueueFull`], [`Error::ShutDown`]; on error `done` is
    /// not called.
    pub fn presence(&self, id: &str, done: impl FnOnce(Presence) + Send + 'static) -> Result<(), Error> {
        validate_id(id)?;
        self.check_running()?;
        let parts = 1 + usize::from(self.cluster.is_some());
        let collector = Arc::new(Collector::for_presence(parts, done));
        self.mailboxes.count(id, collector.clone())?;
        if let Some(cluster) = &self.cluster {
            cluster.count_subscribers(id, collector);
        }
        Ok(())
    }

    /// Whether history is on ([`Config::history_size`] > 0): sends get positions, clients
    /// may resume with `?since=`, and [`Engine::history`] answers.
    pub fn history_enabled(&self) -> bool {
        self.history
    }

    /// Reads `id`'s history and calls `done` (on a worker thread, or in cluster mode
    /// on the thread reading Redis) with its epoch, its newest offset and up to `limit`
    /// messages: those after `since` when the history still reaches it (`recovered`),
    /// otherwise from the oldest kept. An id without history gets an empty one (a new
    /// epoch, offset 0), so a position always exists. In cluster mode the history is read
    /// from Redis (at most 256 messages per call) and `done` gets [`Error::Unavailable`]
    /// when Redis cannot answer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `history_size` when history is off,
    /// [`Error::InvalidId`], [`Error::QueueFull`], [`Error::ShutDown`]; on error `done` is
    /// not called.
    pub fn history(
        &self,
        id: &str,
        since: Option<Position>,
        limit: usize,
        done: impl FnOnce(Result<HistoryRead, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        if !self.history {
            return Err(Error::InvalidConfig {
                setting: "history_size",
                reason: "history is off (history_size is 0)".into(),
            });
        }
        validate_id(id)?;
        self.check_running()?;
        match &self.cluster {
            Some(cluster) => cluster.history(
                id,
                since,
                limit,
                Box::new(move |read| done(read.map_err(|e| Error::Unavailable(e.to_string())))),
            ),
            None => self.mailboxes.history(id, since, limit, Box::new(move |read| done(Ok(read)))),
        }
    }

    /// Whether the node can do everything it is configured for: always on a single node;
    /// in cluster mode, while both Redis connections are up.
    pub fn is_healthy(&self) -> bool {
        self.cluster.as_ref().is_none_or(|cluster| cluster.is_connected())
    }

    /// This node's id in cluster mode.
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(|cluster| cluster.node_id())
    }

    /// Queues `message` for one socket (e.g. a reply to the socket a message came from).
    /// A handle whose socket has closed is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`], [`Error::QueueFull`], [`Error::ShutDown`].
    pub fn send_to(&self, conn: ConnectionId, message: Message<'_>) -> Result<(), Error> {
        self.check_size(message)?;
        self.check_running()?;
        self.mailboxes.send_to(conn, frame::encode_message(message))
    }

    /// Starts the close handshake on one socket with `code`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `code` if it is not a code a server may send,
    /// [`Error::QueueFull`], [`Error::ShutDown`].
    pub fn close(&self, conn: ConnectionId, code: u16) -> Result<(), Error> {
        if !frame::is_valid_close_code(code) {
            return Err(Error::InvalidConfig {
                setting: "code",
                reason: format!("{code} is not a valid close code"),
            });
        }
        self.check_running()?;
        self.mailboxes.close(conn, code)
    }

    /// Hands over a connected socket accepted elsewhere; the engine owns it from now on
    /// (and closes it). With [`Handshake::Perform`] the engine reads and answers the upgrade
    /// request first, with every admission check of its listener (origin, token for `id`,
    /// authorizer, limits); with [`Handshake::Done`] the socket is live at once, and only
    /// counts against [`Config::max_connections_per_ip`](crate::Config) for its peer
    /// address (without being refused: the host already answered 101).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Io`] if the socket cannot be made non-blocking,
    /// [`Error::QueueFull`], [`Error::ShutDown`]. The socket is closed on error.
    pub fn register(&self, stream: TcpStream, id: &str, handshake: Handshake) -> Result<(), Error> {
        validate_id(id)?;
        self.check_running()?;
        stream.set_nonblocking(true).map_err(|e| Error::io("making the socket non-blocking", e))?;
        let _ = stream.set_nodelay(true);
        let stream = mio::net::TcpStream::from_std(stream);
        match handshake {
            Handshake::Perform => {
                self.acceptor
                    .send(AcceptorCommand::Perform { stream, id: id.into() })
                    .map_err(|_| Error::ShutDown)?;
                self.acceptor_waker.wake().map_err(|e| Error::io("waking the acceptor", e))
            }
            Handshake::Done => {
                let ip_slot = match (&self.ip_limit, stream.peer_addr()) {
                    (Some(limit), Ok(peer)) => limit.acquire(peer.ip()),
                    _ => None,
                };
                self.open.fetch_add(1, Ordering::AcqRel);
                let adoption = Adoption {
                    stream: Transport::Plain(stream),
                    id: id.into(),
                    greeting: None,
                    early: Vec::new(),
                    expires_at: None,
                    ip_slot,
                    // The host upgraded the socket itself, and wspush cannot know what it
                    // negotiated; a host that accepted an extension must not hand it over.
                    extensions: Extensions::default(),
                    // Nor what it selected: its socket gets plain frames.
                    since: None,
                    v1: false,
                };
                self.mailboxes.adopt(adoption).inspect_err(|_| {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    if let (Some(limit), Some(slot)) = (&self.ip_limit, ip_slot) {
                        limit.release(slot);
                    }
                })
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for counters in &self.counters {
            counters.add_to(&mut stats);
        }
        stats.buffered_bytes = self.node.queued();
        stats.cluster = self.cluster.as_ref().map(|cluster| cluster.stats());
        stats.worker_connections = self.counters[..self.mailboxes.workers()]
            .iter()
            .map(|c| c.connections.load(Ordering::Relaxed))
            .collect();
        stats
    }

    /// Stops accepting, sends close 1001 to every socket, flushes until `timeout`, then
    /// closes what is left and joins the threads. Later calls return at once.
    pub fn shutdown(&self, timeout: Duration) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = Instant::now() + timeout;
        let _ = self.acceptor.send(AcceptorCommand::Shutdown);
        let _ = self.acceptor_waker.wake();
        self.mailboxes.shutdown(deadline);
        let mut threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // Worker 0 (the first thread) hosts the backplane and is joined last.
        let host = (!threads.is_empty()).then(|| threads.remove(0));
        let join = |thread: JoinHandle<()>| {
            if thread.join().is_err() {
                tracing::error!("a wspush thread panicked");
            }
        };
        threads.into_iter().for_each(join);
        // After the other workers (their last closes may unsubscribe) and worker 0's sockets:
        // the backplane flushes the publishes still queued, then closes its connections.
        if let Some(backplane) = self.backplane.lock().unwrap_or_else(|e| e.into_inner()).take() {
            backplane.shutdown();
        }
        host.into_iter().for_each(join);
        tracing::info!("wspush engine stopped");
    }

    /// Refuses a message larger than the node pushes: queued, it could only close the
    /// sockets it was meant for.
    fn check_size(&self, message: Message<'_>) -> Result<(), Error> {
        let size = message.as_bytes().len();
        if size > self.max_outbound_message_size {
            return Err(Error::MessageTooLarge { size, max: self.max_outbound_message_size });
        }
        Ok(())
    }

    fn check_running(&self) -> Result<(), Error> {
        if self.shut_down.load(Ordering::Relaxed) {
            Err(Error::ShutDown)
        } else {
            Ok(())
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(DROP_SHUTDOWN_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::worker_of;
    use crate::receipt::{Collector, SelfCount};
    use crate::worker::{HostedTask, CARRIED_COMMANDS};

    #[test]
    fn an_engine_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }

    /// Has worker 0's hosted task (where the Redis backplane runs) queue `batches` of
    /// counts of `id`'s sockets, each batch in one turn of the task and answered before the
    /// next; returns, per batch, the threads that ran its counts.
    fn counted_on(engine: &Engine, id: &str, batches: Vec<usize>) -> Vec<Vec<String>> {
        let (done, finished) = std::sync::mpsc::channel();
        let (mailboxes, id) = (engine.mailboxes.clone(), id.to_owned());
        let task = Box::pin(async move {
            let mut threads = Vec::new();
            for batch in batches {
                // Room for worker 1 to finish its pass and sleep.
                tokio::time::sleep(Duration::from_millis(2)).await;
                let (ran, mut ran_on) = tokio::sync::mpsc::unbounded_channel();
                for _ in 0..batch {
                    let ran = ran.clone();
                    let thread = move |_| {
                        let _ = ran.send(std::thread::current().name().unwrap_or("").to_owned());
                    };
                    let receipt = Arc::new(Collector::for_receipt(1, SelfCount::Include, thread));
                    mailboxes.count(&id, receipt).expect("queued");
                }
                let mut names = Vec::new();
                while names.len() < batch {
                    names.push(ran_on.recv().await.expect("every count answers"));
                }
                threads.push(names);
            }
            let _ = done.send(threads);
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        engine.mailboxes.host(HostedTask { runtime, task }).unwrap();
        finished.recv_timeout(Duration::from_secs(30)).expect("the task ran its batches")
    }

    #[test]
    fn a_lone_command_from_the_hosted_task_runs_on_its_thread_and_a_burst_on_its_worker() {
        let engine = Engine::start(Config { workers: 2, ..Config::default() }).unwrap();
        let id = (0..).map(|i| format!("user-{i}")).find(|id| worker_of(id, 2) == 1).unwrap();
        // A lone count is carried when worker 1 sleeps; it is woken instead while its last
        // pass still holds its state, which a few of the rounds may find.
        let mut batches = vec![1; 50];
        batches.push(CARRIED_COMMANDS + 1);
        let mut threads = counted_on(&engine, &id, batches);
        let burst = threads.pop().unwrap();
        assert!(
            threads.iter().flatten().any(|thread| thread == "wspush-worker-0"),
            "no lone command was carried: {threads:?}"
        );
        assert!(threads.iter().flatten().all(|thread| thread.starts_with("wspush-worker-")));
        assert!(
            burst.iter().all(|thread| thread == "wspush-worker-1"),
            "a burst is handled by its own worker: {burst:?}"
        );
        engine.shutdown(Duration::from_secs(5));
    }
}
