//! The acceptor thread: accepts TCP connections, reads and answers their upgrade requests
//! (with a deadline, so a slow client cannot hold a slot), and hands each upgraded socket
//! to the worker that owns its id.
//!
//! A connection counts against the per-address limit and the connection limit from its
//! accept, not from its upgrade: a client that connects and sends nothing holds a slot
//! until the handshake timeout, so half-open connections cannot exceed the limits. Over
//! either at accept, the connection is answered at once, without reading its request:
//! 429 (per address) or 503 (connection limit), then closed. The slots go with the socket
//! to its worker on success, and are given back when the handshake fails.
//!
//! A well-formed request for a valid id is then admitted or refused, in this order, each
//! check answering before the upgrade: the `Origin` allow-list (403), the token (401), the
//! host's authorizer (403).
//!
//! With TLS (`tls_cert`), the TLS handshake comes first, in the same non-blocking loop: a
//! slow handshake holds its slot, never the acceptor, and is bounded by the same deadline
//! (`handshake_timeout`, for the TLS handshake and the upgrade request together) and by a
//! byte budget (`tls::HANDSHAKE_BUDGET`). A connection refused before its TLS handshake is
//! done (over a limit at accept, or timed out) cannot be answered in HTTP: it is closed,
//! and counted all the same; a failed TLS handshake is counted in `handshake_tls`.

use std::io::{self, Read, Write};

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::auth;
use crate::authorizer::{AuthorizeRequest, AuthorizerSlot};
use crate::handshake::{self, Limits, Rejection};
use crate::ip_limit::{IpLimit, IpSlot};
use crate::origin::AllowedOrigins;
use crate::stats::{bump, Counters};
use crate::tls::TlsStream;
use crate::transport::Transport;
use crate::worker::{Adoption, Mailboxes};
use crate::{Config, JwtAuth};

/// Poll token of the acceptor's waker.
pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// How long a refused client gets to read its error response before the socket closes.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// How often deadlines are checked while handshakes are pending.
const TICK: Duration = Duration::from_millis(100);

/// Work for the acceptor.
pub(crate) enum AcceptorCommand {
    /// Read and answer the upgrade request of a socket the host accepted, for `id`.
    Perform { stream: TcpStream, id: Box<str> },
    /// Close the listener and every pending handshake, then stop.
    Shutdown,
}

/// What the acceptor needs from the engine's configuration.
pub(crate) struct AcceptorSettings {
    limits: Limits,
    path_prefix: String,
    handshake_timeout: Duration,
    max_connections: Option<usize>,
    allowed_origins: Option<AllowedOrigins>,
    auth: Option<JwtAuth>,
    /// History is on: `wspush.v1` may be selected.
    history: bool,
    /// `wss://`: every accepted connection starts with a TLS handshake.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// permessage-deflate may be accepted.
    compression: bool,
}

impl AcceptorSettings {
    /// The settings of a validated `config`, with the listener's TLS if it has any.
    pub fn from_config(config: &Config, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self {
            limits: Limits { max_header_bytes: config.max_header_bytes, max_headers: config.max_headers },
            path_prefix: config.path_prefix.clone(),
            handshake_timeout: config.handshake_timeout,
            max_connections: config.max_connections,
            // Checked by `Config::validate`.
            allowed_origins: config.allowed_origins.as_deref().and_then(|o| AllowedOrigins::new(o).ok()),
            auth: config.auth.clone(),
            history: config.history_enabled(),
            tls,
            compression: config.compression,
        }
    }
}

/// What the acceptor shares with the engine handle and the workers to admit sockets.
pub(crate) struct Admission {
    /// The host's authorizer, if it set one.
    pub authorizer: Arc<AuthorizerSlot>,
    /// Open connections per address, with `max_connections_per_ip`.
    pub ip_limit: Option<Arc<IpLimit>>,
}

/// What an admitted socket carries to its worker.
struct Admitted {
    /// When the socket's token expires, if it is to be closed then.
    expires_at: Option<SystemTime>,
    /// The subprotocol the 101 selects.
    protocol: Option<&'static str>,
}

/// A socket whose upgrade is not finished.
struct Pending {
    stream: Transport,
    request: Vec<u8>,
    deadline: Instant,
    /// The id a host gave with `register`; otherwise it comes from the path.
    id: Option<Box<str>>,
    /// The client's address.
    peer: Option<SocketAddr>,
    /// Refused: the error response is written and input is discarded until EOF or the
    /// deadline, so the client reads the response instead of a connection reset.
    rejected: bool,
    /// The connection's slots in the limits, held until it is refused or handed over.
    slots: Slots,
}

/// What a connection holds against the limits.
#[derive(Debug, Default)]
struct Slots {
    /// Its count in `max_connections_per_ip`.
    ip: Option<IpSlot>,
    /// Whether it is counted in `open` (`max_connections`).
    open: bool,
}

/// The acceptor thread's state.
pub(crate) struct Acceptor {
    poll: Poll,
    listener: Option<TcpListener>,
    commands: Receiver<AcceptorCommand>,
    pending: Slab<Pending>,
    mailboxes: Mailboxes,
    settings: AcceptorSettings,
    counters: Arc<Counters>,
    open: Arc<AtomicUsize>,
    admission: Admission,
    /// Accepting failed for lack of file descriptors; retried on the next tick.
    accept_backlog: bool,
}

impl Acceptor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        mut listener: Option<TcpListener>,
        commands: Receiver<AcceptorCommand>,
        mailboxes: Mailboxes,
        settings: AcceptorSettings,
        counters: Arc<Counters>,
        open: Arc<AtomicUsize>,
        admission: Admission,
    ) -> io::Result<Self> {
        if let Some(listener) = listener.as_mut() {
            poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        }
        Ok(Self {
            poll,
            listener,
            commands,
            pending: Slab::new(),
            mailboxes,
            settings,
            counters,
            open,
            admission,
            accept_backlog: false,
        })
    }

    /// Runs until [`AcceptorCommand::Shutdown`] or the engine handle is gone.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let idle = self.pending.is_empty() && !self.accept_backlog;
            if let Err(e) = self.poll.poll(&mut events, if idle { None } else { Some(TICK) }) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor poll failed; no more connections are accepted");
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(key) => self.on_ready(key),
                }
            }
            if self.accept_backlog {
                self.accept();
            }
            loop {
                match self.commands.try_recv() {
                    Ok(AcceptorCommand::Perform { stream, id }) => {
                        let peer = stream.peer_addr().ok();
                        // The host does its own TLS.
                        self.add_pending(Transport::Plain(stream), Some(id), peer)
                    }
                    Ok(AcceptorCommand::Shutdown) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        return;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                }
            }
            self.expire(Instant::now());
        }
    }

    fn accept(&mut self) {
        self.accept_backlog = false;
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    // Frames are small and latency matters more than packet count; writev
                    // already coalesces what is pending.
                    let _ = stream.set_nodelay(true);
                    let stream = match &self.settings.tls {
                        None => Transport::Plain(stream),
                        Some(config) => match TlsStream::new(config.clone(), stream) {
                            Ok(tls) => Transport::Tls(Box::new(tls)),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot start a TLS connection");
                                bump(&self.counters.handshake.tls, 1);
                                continue;
                            }
                        },
                    };
                    self.add_pending(stream, None, Some(peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors (or a transient error): the connection stays
                    // in the backlog and is retried on the next tick instead of spinning.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    self.accept_backlog = true;
                    return;
                }
            }
        }
    }

    fn add_pending(&mut self, mut stream: Transport, id: Option<Box<str>>, peer: Option<SocketAddr>) {
        let entry = self.pending.vacant_entry();
        // A TLS handshake writes too, and may find the socket full.
        let interest =
            if stream.is_tls() { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if let Err(e) = self.poll.registry().register(&mut stream, Token(entry.key()), interest) {
            tracing::warn!(error = %e, "cannot register a new connection");
            bump(&self.counters.handshake.io, 1);
            return;
        }
        let deadline = Instant::now() + self.settings.handshake_timeout;
        let key = entry.key();
        let slots = Slots::default();
        entry.insert(Pending { stream, request: Vec::new(), deadline, id, peer, rejected: false, slots });
        if let Err(rejection) = self.take_slots(key) {
            return self.reject(key, rejection);
        }
        // The request may have arrived before the socket was registered (edge-triggered).
        self.on_readable(key);
    }

    /// Counts a new connection against the per-address limit, then the connection limit.
    fn take_slots(&mut self, key: usize) -> Result<(), Rejection> {
        let pending = &mut self.pending[key];
        if let (Some(limit), Some(peer)) = (&self.admission.ip_limit, pending.peer) {
            pending.slots.ip = Some(limit.try_acquire(peer.ip()).ok_or(Rejection::TooManyFromAddress)?);
        }
        let open_before = self.open.fetch_add(1, Ordering::AcqRel);
        pending.slots.open = true;
        if self.settings.max_connections.is_some_and(|max| open_before >= max) {
            return Err(Rejection::OverCapacity);
        }
        Ok(())
    }

    /// Gives back the slots of a connection that will not be handed over.
    fn release(&self, slots: &mut Slots) {
        if std::mem::take(&mut slots.open) {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        if let (Some(limit), Some(slot)) = (&self.admission.ip_limit, slots.ip.take()) {
            limit.release(slot);
        }
    }

    /// Drops a connection whose handshake failed.
    fn remove(&mut self, key: usize) {
        let mut pending = self.pending.remove(key);
        self.release(&mut pending.slots);
    }

    /// A pending socket is ready: TLS output waiting is written first, then input read.
    fn on_ready(&mut self, key: usize) {
        let Some(pending) = self.pending.get_mut(key) else { return };
        if let Err(e) = pending.stream.write_pending() {
            let failed_tls = !pending.rejected && e.kind() == io::ErrorKind::InvalidData;
            self.drop_failed(key, failed_tls);
            return;
        }
        self.on_readable(key);
    }

    /// Drops a connection whose socket or TLS failed, counting it unless it was refused
    /// already.
    fn drop_failed(&mut self, key: usize, tls: bool) {
        if !self.pending[key].rejected {
            let counter = if tls { &self.counters.handshake.tls } else { &self.counters.handshake.io };
            bump(counter, 1);
        }
        self.remove(key);
    }

    fn on_readable(&mut self, key: usize) {
        let mut chunk = [0u8; 4096];
        loop {
            let Some(pending) = self.pending.get_mut(key) else { return };
            match pending.stream.read(&mut chunk) {
                Ok(0) => {
                    // A client gone during its TLS handshake is a failed handshake.
                    let tls = pending.stream.is_handshaking();
                    return self.drop_failed(key, tls);
                }
                Ok(_) if pending.rejected => {}
                Ok(n) => {
                    pending.request.extend_from_slice(&chunk[..n]);
                    match handshake::parse_request(&pending.request, &self.settings.limits) {
                        Ok(None) => {}
                        Ok(Some((request, consumed))) => return self.upgrade(key, request, consumed),
                        Err(rejection) => self.reject(key, rejection),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let tls = e.kind() == io::ErrorKind::InvalidData && pending.stream.is_tls();
                    if tls && !pending.rejected {
                        tracing::debug!(error = %e, peer = ?pending.peer, "TLS handshake failed");
                    }
                    return self.drop_failed(key, tls);
                }
            }
        }
    }

    fn upgrade(&mut self, key: usize, request: handshake::Request, consumed: usize) {
        let id = match self.pending[key].id.take() {
            Some(id) => id,
            None => match handshake::id_from_target(&request.target, &self.settings.path_prefix) {
                Ok(id) => id.into_boxed_str(),
                Err(rejection) => return self.reject(key, rejection),
            },
        };
        let since = match handshake::since_from_target(&request.target) {
            Ok(since) => since,
            Err(rejection) => return self.reject(key, rejection),
        };
        let peer = self.pending[key].peer;
        let admitted = match self.admit(&request, &id, peer) {
            Ok(admitted) => admitted,
            Err(rejection) => return self.reject(key, rejection),
        };
        let mut pending = self.pending.remove(key);
        let _ = self.poll.registry().deregister(&mut pending.stream);
        // The worker gives the slots back when the socket closes.
        let mut slots = std::mem::take(&mut pending.slots);
        let ip_slot = slots.ip;
        let early = pending.request[consumed..].to_vec();
        let (response, extensions) =
            handshake::accept(&request, admitted.protocol, self.settings.compression);
        let greeting = Some(Bytes::from(response));
        let expires_at = admitted.expires_at;
        let v1 = admitted.protocol == Some(crate::history::wire::V1_PROTOCOL);
        let adoption = Adoption {
            stream: pending.stream,
            id,
            greeting,
            early,
            expires_at,
            ip_slot,
            extensions,
            since,
            v1,
        };
        if let Err(e) = self.mailboxes.adopt(adoption) {
            // The socket went down with the refused command; nothing more can be said to it.
            tracing::warn!(error = %e, "cannot hand an upgraded socket to its worker");
            self.release(&mut slots);
            bump(&self.counters.handshake.over_capacity, 1);
        }
    }

    /// The origin, token and host checks, in that order.
    fn admit(
        &self,
        request: &handshake::Request,
        id: &str,
        peer: Option<SocketAddr>,
    ) -> Result<Admitted, Rejection> {
        if let Some(origins) = &self.settings.allowed_origins {
            if !origins.allows(request.origin.as_deref()) {
                return Err(Rejection::ForbiddenOrigin);
            }
        }
        // A browser that offered the bearer subprotocol needs it selected, token or not.
        let protocol = auth::selected_protocol(request, self.settings.history);
        let mut admitted = Admitted { expires_at: None, protocol };
        if let Some(auth) = &self.settings.auth {
            let grant = auth.authorize(request, id, SystemTime::now()).map_err(Rejection::Unauthorized)?;
            if auth.close_on_expiry() {
                admitted.expires_at = grant.expires_at;
            }
        }
        if let Some(authorizer) = self.admission.authorizer.load().as_ref() {
            let question = AuthorizeRequest { id, path: &request.target, headers: &request.headers, peer };
            match panic::catch_unwind(AssertUnwindSafe(|| authorizer.authorize(&question))) {
                Ok(true) => {}
                Ok(false) => return Err(Rejection::Forbidden),
                Err(_) => {
                    tracing::error!(id = %crate::log_safe::Escaped(id), "the authorizer panicked; the upgrade is refused");
                    return Err(Rejection::Forbidden);
                }
            }
        }
        Ok(admitted)
    }

    fn reject(&mut self, key: usize, rejection: Rejection) {
        let counter = match rejection {
            // A malformed `since` is a malformed request.
            Rejection::BadRequest(_) | Rejection::BadSince(_) => &self.counters.handshake.bad_request,
            Rejection::UnsupportedVersion => &self.counters.handshake.bad_version,
            Rejection::NotFound | Rejection::InvalidId(_) => &self.counters.handshake.bad_path,
            Rejection::TooLarge => &self.counters.handshake.too_large,
            Rejection::Timeout => &self.counters.handshake.timeout,
            Rejection::OverCapacity => &self.counters.handshake.over_capacity,
            Rejection::ForbiddenOrigin => &self.counters.handshake.forbidden_origin,
            Rejection::Unauthorized(reason) => &self.counters.handshake.auth[reason.index()],
            Rejection::Forbidden => &self.counters.handshake.forbidden,
            Rejection::TooManyFromAddress => &self.counters.handshake.over_ip_limit,
        };
        bump(counter, 1);
        tracing::debug!(status = rejection.status(), %rejection, "upgrade refused");
        // A refused connection lingers a moment only to deliver its answer: it no longer
        // counts against the limits.
        let mut slots = std::mem::take(&mut self.pending[key].slots);
        self.release(&mut slots);
        let pending = &mut self.pending[key];
        if pending.stream.is_handshaking() {
            // No HTTP can be said before the TLS handshake is done, and finishing it for a
            // refused client would spend the CPU the limits are there to save.
            self.remove(key);
            return;
        }
        // The response is a few hundred bytes into an empty socket buffer: one write does it.
        let _ = pending.stream.write_all(&rejection.response());
        let _ = pending.stream.flush();
        pending.stream.shutdown_write();
        pending.rejected = true;
        pending.request = Vec::new();
        pending.deadline = Instant::now() + REJECT_LINGER;
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<usize> =
            self.pending.iter().filter(|(_, p)| now >= p.deadline).map(|(key, _)| key).collect();
        for key in expired {
            if self.pending[key].rejected {
                self.remove(key);
            } else {
                self.reject(key, Rejection::Timeout);
            }
        }
    }
}
