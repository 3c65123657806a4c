//! Helpers shared by the integration tests that need the dev-dependencies (the engine,
//! tokio-tungstenite, serde_json), which the `wspush_tests` library cannot see. Every test
//! file includes this module with `#[path = "support.rs"] mod support;`; built alone (cargo
//! also compiles it as a test target of its own) it holds no tests.
#![allow(dead_code, unused_imports)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wspush::{Config, ConnectionId, Engine, Event, Message};

pub use wspush_tests::*;

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The `Sec-WebSocket-Accept` value for `key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

// ---------------------------------------------------------------------------------------
// Clients.

/// Connects a tokio-tungstenite client to `url`; panics unless it upgrades in time.
pub async fn connect(url: &str) -> Ws {
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, response))) => {
            assert_eq!(response.status().as_u16(), 101);
            ws
        }
        Ok(Err(e)) => panic!("cannot connect to {url}: {e}"),
        Err(_) => panic!("connecting to {url} timed out"),
    }
}

/// Connects offering the `wspush.v1` subprotocol; panics unless the server selects it.
pub async fn connect_v1(url: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("wspush.v1"));
    let (ws, response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connecting timed out")
        .expect("cannot connect");
    assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "wspush.v1");
    ws
}

/// The position in a `wspush.v1` control text: `!pos E:O` or `!lost E:O` (`kind` is
/// `"!pos "` or `"!lost "`).
pub fn position_in(control: &str, kind: &str) -> wspush::Position {
    let rest = control.strip_prefix(kind).unwrap_or_else(|| panic!("expected {kind}, got {control:?}"));
    rest.parse().unwrap()
}

/// Connects to `ws://addr/websocket/{id}`.
pub async fn connect_id(addr: SocketAddr, id: &str) -> Ws {
    connect(&format!("ws://{addr}/websocket/{id}")).await
}

/// The next frame-level item from the server, data or control, within `timeout`; panics
/// on timeout, error or end of stream.
pub async fn next_item(ws: &mut Ws, timeout: Duration) -> WsMessage {
    match tokio::time::timeout(timeout, ws.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(Some(Err(e))) => panic!("the connection failed while waiting for a message: {e}"),
        Ok(None) => panic!("the connection ended while waiting for a message"),
        Err(_) => panic!("no message within {timeout:?}"),
    }
}

/// The next data message (text or binary), skipping pings and pongs; panics on a close,
/// an error or when nothing arrives within `timeout`.
pub async fn recv_message(ws: &mut Ws, timeout: Duration) -> WsMessage {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_item(ws, left).await {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            message @ (WsMessage::Text(_) | WsMessage::Binary(_)) => return message,
            other => panic!("expected a data message, got {other:?}"),
        }
    }
}

/// The next data message, which must be text.
pub async fn recv_text(ws: &mut Ws, timeout: Duration) -> String {
    match recv_message(ws, timeout).await {
        WsMessage::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next data message, which must be binary.
pub async fn recv_binary(ws: &mut Ws, timeout: Duration) -> Vec<u8> {
    match recv_message(ws, timeout).await {
        WsMessage::Binary(data) => data.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// Waits (at most [`TIMEOUT`]) for the server's close frame, skipping pings and pongs,
/// answers it, and returns its code; panics on a data message, on a close without a code, and when the
/// connection ends without a close frame.
pub async fn expect_close(ws: &mut Ws) -> u16 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_item(ws, left).await {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            WsMessage::Close(Some(frame)) => {
                // Send the queued close reply now, completing the close handshake.
                let _ = tokio::time::timeout(TIMEOUT, ws.flush()).await;
                return frame.code.into();
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::text(text)).await.expect("cannot send a text message");
}

/// Sends a binary message.
pub async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(WsMessage::binary(data.to_vec())).await.expect("cannot send a binary message");
}

/// Starts the close handshake with `code`.
pub async fn send_close(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
    ws.send(WsMessage::Close(Some(frame))).await.expect("cannot send a close frame");
}

// ---------------------------------------------------------------------------------------
// In-process engine.

/// An [`Event`] copied out of the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// [`Event::Open`].
    Open { conn: ConnectionId, id: String },
    /// [`Event::Message`]; `text` says whether it was a text message.
    Message { conn: ConnectionId, id: String, text: bool, data: Vec<u8> },
    /// [`Event::Close`].
    Close { conn: ConnectionId, id: String, code: u16 },
}

impl Ev {
    fn copy(event: &Event<'_>) -> Ev {
        match *event {
            Event::Open { conn, id } => Ev::Open { conn, id: id.to_owned() },
            Event::Message { conn, id, message } => Ev::Message {
                conn,
                id: id.to_owned(),
                text: message.is_text(),
                data: message.as_bytes().to_vec(),
            },
            Event::Close { conn, id, code } => Ev::Close { conn, id: id.to_owned(), code },
        }
    }
}

/// The events of one engine, in the order its handler saw them.
pub struct Events {
    rx: mpsc::Receiver<Ev>,
    /// Events received while waiting for another kind, kept for later waits.
    pending: VecDeque<Ev>,
}

impl Events {
    /// Installs a handler on `engine` that forwards every event here.
    pub fn attach(engine: &Engine) -> Events {
        Events::attach_with(engine, |_| {})
    }

    /// As [`Events::attach`], calling `hook` on the worker thread first for every event.
    pub fn attach_with(engine: &Engine, hook: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Events {
        let (tx, rx) = mpsc::channel();
        engine.set_event_handler(move |event: &Event<'_>| {
            hook(event);
            let _ = tx.send(Ev::copy(event));
        });
        Events { rx, pending: VecDeque::new() }
    }

    /// The first event (earlier skipped ones first) for which `pick` returns a value,
    /// within [`TIMEOUT`]; others are kept for later calls. Panics with `what` on timeout.
    pub fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&Ev) -> Option<T>) -> T {
        if let Some(i) = self.pending.iter().position(|e| pick(e).is_some()) {
            let event = self.pending.remove(i).unwrap();
            return pick(&event).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => match pick(&event) {
                    Some(value) => return value,
                    None => self.pending.push_back(event),
                },
                Err(_) => panic!("no event within {TIMEOUT:?} for: {what}; other events: {:?}", self.pending),
            }
        }
    }

    /// The next `Open` of `id`: its connection.
    pub fn open(&mut self, id: &str) -> ConnectionId {
        self.wait(&format!("Open of {id:?}"), |e| match e {
            Ev::Open { conn, id: got } if got == id => Some(*conn),
            _ => None,
        })
    }

    /// The next `Open` of any id: `(conn, id)`.
    pub fn any_open(&mut self) -> (ConnectionId, String) {
        self.wait("any Open", |e| match e {
            Ev::Open { conn, id } => Some((*conn, id.clone())),
            _ => None,
        })
    }

    /// The next `Message` from `conn`: `(id, is_text, data)`.
    pub fn message_from(&mut self, conn: ConnectionId) -> (String, bool, Vec<u8>) {
        self.wait(&format!("Message from {conn}"), |e| match e {
            Ev::Message { conn: c, id, text, data } if *c == conn => Some((id.clone(), *text, data.clone())),
            _ => None,
        })
    }

    /// The `Close` of `conn`: its code.
    pub fn close_of(&mut self, conn: ConnectionId) -> u16 {
        self.wait(&format!("Close of {conn}"), |e| match e {
            Ev::Close { conn: c, code, .. } if *c == conn => Some(*code),
            _ => None,
        })
    }

    /// Every event that arrived so far and was not consumed.
    pub fn drain(&mut self) -> Vec<Ev> {
        let mut all: Vec<Ev> = self.pending.drain(..).collect();
        all.extend(self.rx.try_iter());
        all
    }
}

/// A loopback address with a free port.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts an engine listening on a free loopback port, with `configure` applied to the
/// defaults, and attaches an [`Events`] collector before any socket can connect.
pub fn start_engine(configure: impl FnOnce(&mut Config)) -> (Engine, Events) {
    let mut config = Config { ws_listen: Some(any_port()), workers: 2, ..Config::default() };
    configure(&mut config);
    let engine = Engine::start(config).expect("the engine does not start");
    let events = Events::attach(&engine);
    (engine, events)
}

/// The listener address of an engine started by [`start_engine`].
pub fn addr(engine: &Engine) -> SocketAddr {
    engine.local_addr().expect("the engine has a listener")
}

/// Sends with a receipt and waits for it: the number of sockets the message was queued to.
pub fn send_counted(engine: &Engine, id: &str, message: Message<'_>) -> usize {
    let (tx, rx) = mpsc::channel();
    engine
        .send_with_receipt(id, message, move |receipt| {
            let _ = tx.send(receipt.sockets);
        })
        .expect("send_with_receipt failed");
    rx.recv_timeout(TIMEOUT).expect("no receipt for send")
}

/// Sends, retrying while the Redis queue is full (a test that pushes fast).
pub fn send_retrying(engine: &Engine, id: &str, text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match engine.send(id, Message::Text(text)) {
            Ok(()) => return,
            Err(wspush::Error::QueueFull) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
}

/// A thread sending `m1`, `m2`, ... to each of its ids through an engine, a round every 2 ms,
/// until [`Streamer::stop`]: the load a failover or a resharding must not lose.
pub struct Streamer {
    sending: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Engine, u64)>,
}

impl Streamer {
    pub fn start(engine: Engine, ids: Vec<String>) -> Streamer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sending = std::sync::Arc::new(AtomicBool::new(true));
        let flag = sending.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0u64;
            while flag.load(Ordering::SeqCst) {
                sent += 1;
                for id in &ids {
                    send_retrying(&engine, id, &format!("m{sent}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (engine, sent)
        });
        Streamer { sending, thread }
    }

    /// Stops after the round under way; the engine back and how many rounds were sent.
    pub fn stop(self) -> (Engine, u64) {
        self.sending.store(false, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the sending thread")
    }
}

/// Broadcasts with a receipt and waits for it.
pub fn broadcast_counted(engine: &Engine, message: Message<'_>) -> usize {
    let (tx, rx) = mpsc::channel();
    engine
        .broadcast_with_receipt(message, move |receipt| {
            let _ = tx.send(receipt.sockets);
        })
        .expect("broadcast_with_receipt failed");
    rx.recv_timeout(TIMEOUT).expect("no receipt for broadcast")
}

// ---------------------------------------------------------------------------------------
// The server binary's API.

/// Parses a response body as JSON, panicking with the body if it is not.
pub fn json(response: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {response:?}"))
}

/// `GET /stats`, parsed.
pub fn server_stats(server: &Server) -> serde_json::Value {
    let response = server.get("/stats");
    assert_eq!(response.status(), 200, "{response:?}");
    json(&response)
}

/// One counter of `GET /stats` (`a.b` for nested ones).
pub fn server_counter(server: &Server, path: &str) -> u64 {
    let stats = server_stats(server);
    let mut value = &stats;
    for key in path.split('.') {
        value = &value[key];
    }
    value.as_u64().unwrap_or_else(|| panic!("no counter {path} in /stats: {stats}"))
}

/// Waits until the server reports `n` open connections.
pub fn wait_connections(server: &Server, n: u64) {
    eventually(TIMEOUT, &format!("{n} connections in /stats"), || server_counter(server, "connections") == n);
}

// ---------------------------------------------------------------------------------------
// A TCP proxy that cuts its connections on command.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A TCP proxy on a free loopback port that forwards every connection to `target`, bytes
/// both ways as they come. [`CutProxy::cut`] closes every connection it carries (both
/// sides, with no WebSocket close: what a dropped network or a restarted load balancer
/// does), now or, with [`CutProxy::cut_after`], in the middle of what the target sends
/// (usually in the middle of a frame); [`CutProxy::hold`] keeps new connections waiting,
/// accepted but not forwarded, until [`CutProxy::release`]; [`CutProxy::forwarded`] counts
/// the bytes that crossed it (what went over the wire, TLS records included). Dropping it
/// stops it and closes everything.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    target: SocketAddr,
    state: Mutex<ProxyState>,
    /// Notified whenever a connection is accepted or ends.
    changed: Condvar,
}

#[derive(Default)]
struct ProxyState {
    next: u64,
    /// Forwarded connections: the client's socket and the target's.
    live: HashMap<u64, [std::net::TcpStream; 2]>,
    /// Accepted while holding, not yet forwarded.
    held: Vec<std::net::TcpStream>,
    holding: bool,
    /// Bytes from the target still to forward before every connection is cut.
    cut_after: Option<u64>,
    forwarded: Forwarded,
    accepted: u64,
    stopped: bool,
}

/// Bytes a [`CutProxy`] forwarded, each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// From the clients to the target.
    pub from_client: u64,
    /// From the target to the clients.
    pub from_target: u64,
}

impl CutProxy {
    /// Starts a proxy to `target`.
    pub fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy cannot bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared { target, state: Mutex::default(), changed: Condvar::new() });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("cut-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let mut state = accepting.lock();
                    if state.stopped {
                        return;
                    }
                    state.accepted += 1;
                    accepting.changed.notify_all();
                    if state.holding {
                        state.held.push(client);
                    } else {
                        drop(state);
                        accepting.forward(client);
                    }
                }
            })
            .expect("cannot start the proxy thread");
        CutProxy { addr, shared }
    }

    /// Closes every forwarded connection now (held ones stay held); how many there were.
    pub fn cut(&self) -> usize {
        self.shared.cut()
    }

    /// Forwards `bytes` more from the target (to whichever connections), the last ones
    /// written alone, then cuts every connection as [`Self::cut`] does.
    pub fn cut_after(&self, bytes: u64) {
        assert!(bytes > 0);
        self.shared.lock().cut_after = Some(bytes);
    }

    /// From now on, new connections wait (accepted, not forwarded) until [`Self::release`].
    pub fn hold(&self) {
        self.shared.lock().holding = true;
    }

    /// Forwards the held connections and stops holding.
    pub fn release(&self) {
        let held = {
            let mut state = self.shared.lock();
            state.holding = false;
            std::mem::take(&mut state.held)
        };
        for client in held {
            self.shared.forward(client);
        }
    }

    /// The number of connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// The bytes forwarded so far, each way, over every connection.
    pub fn forwarded(&self) -> Forwarded {
        self.shared.lock().forwarded
    }

    /// The number of connections forwarded and open now.
    pub fn live(&self) -> usize {
        self.shared.lock().live.len()
    }

    /// Waits (at most `timeout`) until `n` connections are held; panics otherwise.
    pub fn wait_held(&self, n: usize, timeout: Duration) {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |state| state.held.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            state.held.len() >= n,
            "the proxy holds {} connections after {timeout:?}, not {n}",
            state.held.len()
        );
    }
}

impl ProxyShared {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects `client` to the target and pumps both ways, each on its own thread.
    fn forward(self: &Arc<Self>, client: std::net::TcpStream) {
        let Ok(server) = std::net::TcpStream::connect_timeout(&self.target, TIMEOUT) else {
            return; // dropping the client closes it
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { return };
        let id = {
            let mut state = self.lock();
            if state.stopped {
                return;
            }
            state.next += 1;
            let id = state.next;
            state.live.insert(id, [client.try_clone().unwrap(), server.try_clone().unwrap()]);
            id
        };
        for (from, to, from_target) in [(client, server2, false), (server, client2, true)] {
            let shared = self.clone();
            std::thread::Builder::new()
                .name("cut-proxy-pump".into())
                .spawn(move || shared.pump(id, from, to, from_target))
                .expect("cannot start a proxy pump");
        }
    }

    /// Closes every forwarded connection; how many there were.
    fn cut(&self) -> usize {
        let live: Vec<_> = self.lock().live.drain().collect();
        for (_, sockets) in &live {
            for socket in sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        live.len()
    }

    /// Copies `from` to `to` until either side ends, then closes the connection.
    fn pump(&self, id: u64, mut from: std::net::TcpStream, mut to: std::net::TcpStream, from_target: bool) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut state = self.lock();
                    // What may go before a `cut_after` cut, and whether it is now.
                    let (n, cut) = match &mut state.cut_after {
                        budget @ Some(_) if from_target => {
                            let left = budget.unwrap();
                            if n as u64 >= left {
                                *budget = None;
                                (left as usize, true)
                            } else {
                                *budget = Some(left - n as u64);
                                (n, false)
                            }
                        }
                        _ => (n, false),
                    };
                    // Counted before they are written: whoever sees them arrive sees them
                    // counted.
                    let counted = if from_target {
                        &mut state.forwarded.from_target
                    } else {
                        &mut state.forwarded.from_client
                    };
                    *counted += n as u64;
                    drop(state);
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    if cut {
                        self.cut();
                        break;
                    }
                }
            }
        }
        let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
        self.lock().live.remove(&id);
        self.changed.notify_all();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        // Wake the accept loop so it sees `stopped`.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.shared.cut();
        self.shared.lock().held.clear();
    }
}
