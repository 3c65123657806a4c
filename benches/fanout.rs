//! End-to-end fan-out over real sockets: one message to 1, 100 and 5,000 WebSockets.
//!
//! An engine listens on 127.0.0.1; N clients (raw `TcpStream`s that did their upgrade by
//! hand) read on one `mio` thread. Measured: from the call that queues the message until the
//! last client has read the whole frame. This is the latency a user sees for "push to
//! everyone in this room" and, divided by N, the cost per delivery: one frame encoded once,
//! the same `Bytes` queued on every socket, one `writev` per socket, and the kernel's
//! loopback TCP on both ends (which is most of it).
//!
//! Two paths: `Engine::send` to one id with N sockets (all on one worker), and
//! `Engine::broadcast` to N sockets of distinct ids (spread over both workers).
//!
//! Run with `cargo bench --bench fanout`. The 5,000-socket cases open 10,000 descriptors
//! (client and server ends); raise `ulimit -n` if the limit is lower.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mio::{Events, Interest, Poll, Token, Waker};
use wspush::{Config, Engine, Message};

/// The id every client connects as in the `send` cases.
const ROOM: &str = "room-42";

/// Socket counts.
const FANOUTS: [usize; 3] = [1, 100, 5_000];

/// A 64-byte text payload: each server frame is 66 bytes (2-byte header, unmasked).
const PAYLOAD: &str = r#"{"type":"room.message","room":42,"text":"hello, everyone!!!!!!!"}"#;

/// Clients connected (and upgraded) at a time, well under the listener's backlog of 1024.
const CONNECT_BATCH: usize = 200;

/// How long a delivery may take before the bench gives up (it would mean a lost frame).
const TIMEOUT: Duration = Duration::from_secs(30);

/// The reader's poll token for being told to stop; clients use their index.
const STOP: Token = Token(usize::MAX);

/// `send` to one id whose N sockets all live on the same worker.
fn bench_send(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_send");
    // An iteration at 5,000 sockets takes milliseconds: 10 samples keep a run short.
    group.sample_size(10);
    for n in FANOUTS {
        let fixture =
            Fixture::start(n, |_| ROOM.to_owned(), |engine| engine.send(ROOM, Message::Text(PAYLOAD)));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| b.iter_custom(|iters| fixture.time(iters)));
        fixture.stop();
    }
    group.finish();
}

/// `broadcast` to N sockets of distinct ids: every worker writes its share.
fn bench_broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_broadcast");
    group.sample_size(10);
    for n in FANOUTS {
        let fixture =
            Fixture::start(n, |i| format!("user-{i}"), |engine| engine.broadcast(Message::Text(PAYLOAD)));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| b.iter_custom(|iters| fixture.time(iters)));
        fixture.stop();
    }
    group.finish();
}

/// An engine and `n` connected clients with a thread reading them.
struct Fixture {
    engine: Engine,
    n: usize,
    /// Queues one message for all `n` clients.
    deliver: fn(&Engine) -> Result<(), wspush::Error>,
    /// One `Ok` each time the clients have together read `n` more text frames.
    delivered: Receiver<Result<(), String>>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    reader: JoinHandle<()>,
}

impl Fixture {
    fn start(
        n: usize,
        id_of: fn(usize) -> String,
        deliver: fn(&Engine) -> Result<(), wspush::Error>,
    ) -> Fixture {
        let engine = Engine::start(Config {
            ws_listen: Some("127.0.0.1:0".parse().unwrap()),
            workers: 2,
            // The clients never send anything, not even pongs: without this the engine would
            // close them as idle after a minute, in the middle of a long run.
            idle_timeout: Duration::ZERO,
            ..Config::default()
        })
        .expect("the engine starts");
        let addr = engine.local_addr().expect("a listener");
        let mut clients = Vec::with_capacity(n);
        let ids: Vec<String> = (0..n).map(id_of).collect();
        for batch in ids.chunks(CONNECT_BATCH) {
            clients.extend(connect_batch(addr, batch).expect("the clients connect"));
        }
        let poll = Poll::new().expect("a poll");
        let waker = Waker::new(poll.registry(), STOP).expect("a waker");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, delivered) = mpsc::channel();
        let reader = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("fanout-reader".into())
                .spawn(move || read_clients(poll, clients, n, &stop, &tx))
                .expect("the reader starts")
        };
        let fixture = Fixture { engine, n, deliver, delivered, stop, waker, reader };
        // Checked once, outside the measurement: every client gets exactly one text frame.
        fixture.time(1);
        fixture
    }

    /// Delivers `iters` messages one after the other, each time waiting until every client
    /// has read the frame; returns the total time.
    fn time(&self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            (self.deliver)(&self.engine).expect("the message is queued");
            match self.delivered.recv_timeout(TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("the reader failed: {e}"),
                Err(_) => panic!("not all of the {} clients got the frame within {TIMEOUT:?}", self.n),
            }
            total += start.elapsed();
        }
        total
    }

    /// Closes the clients (the reader owns them), then shuts the engine down.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake().expect("waking the reader");
        self.reader.join().expect("the reader exits cleanly");
        self.engine.shutdown(Duration::from_secs(5));
    }
}

/// Connects one client per id, writes every upgrade request, then reads every `101`.
/// Returns each socket with the bytes that followed its response (if any).
fn connect_batch(addr: SocketAddr, ids: &[String]) -> io::Result<Vec<(TcpStream, Vec<u8>)>> {
    let mut streams = Vec::with_capacity(ids.len());
    for id in ids {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /websocket/{id} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        streams.push(stream);
    }
    let mut clients = Vec::with_capacity(streams.len());
    for mut stream in streams {
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        let end = loop {
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buf)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade")),
                read => head.extend_from_slice(&buf[..read]),
            }
        };
        if !head.starts_with(b"HTTP/1.1 101 ") {
            let response = String::from_utf8_lossy(&head[..end]).into_owned();
            return Err(io::Error::other(format!("upgrade refused: {response}")));
        }
        clients.push((stream, head.split_off(end)));
    }
    Ok(clients)
}

/// The reader thread: waits for input on every client, counts the complete text frames,
/// and reports each time `n` more have arrived (one fan-out).
fn read_clients(
    mut poll: Poll,
    clients: Vec<(TcpStream, Vec<u8>)>,
    n: usize,
    stop: &AtomicBool,
    delivered: &Sender<Result<(), String>>,
) {
    let mut sockets = Vec::with_capacity(clients.len());
    let mut pending = Vec::with_capacity(clients.len());
    let mut texts = 0;
    for (i, (stream, early)) in clients.into_iter().enumerate() {
        stream.set_nonblocking(true).expect("a non-blocking socket");
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE).expect("registering a client");
        sockets.push(stream);
        let mut early = early;
        texts += take_frames(&mut early);
        pending.push(early);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let _ = delivered.send(Err(format!("poll: {e}")));
            return;
        }
        for event in events.iter() {
            if event.token() == STOP {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            let i = event.token().0;
            loop {
                match sockets[i].read(&mut buf) {
                    Ok(0) => {
                        let _ = delivered.send(Err(format!("the server closed client {i}")));
                        return;
                    }
                    Ok(read) => {
                        pending[i].extend_from_slice(&buf[..read]);
                        texts += take_frames(&mut pending[i]);
                        // A short read emptied the socket; whatever arrives later raises a
                        // new edge. This saves the read that would only see `WouldBlock`.
                        if read < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = delivered.send(Err(format!("reading client {i}: {e}")));
                        return;
                    }
                }
            }
        }
        while texts >= n {
            texts -= n;
            if delivered.send(Ok(())).is_err() {
                return;
            }
        }
    }
}

/// Removes the complete server frames at the start of `pending` and counts the text ones
/// (a ping from the engine is skipped, not counted as a delivery).
fn take_frames(pending: &mut Vec<u8>) -> usize {
    let mut texts = 0;
    let mut at = 0;
    loop {
        let rest = &pending[at..];
        let [first, second, ..] = *rest else { break };
        assert_eq!(second & 0x80, 0, "server frames are not masked");
        let (header, len) = match second & 0x7F {
            126 if rest.len() >= 4 => (4, usize::from(u16::from_be_bytes([rest[2], rest[3]]))),
            127 if rest.len() >= 10 => {
                (10, u64::from_be_bytes(rest[2..10].try_into().unwrap()).try_into().unwrap())
            }
            126 | 127 => break,
            len => (2, usize::from(len)),
        };
        if rest.len() < header + len {
            break;
        }
        texts += usize::from(first & 0x0F == 0x1);
        at += header + len;
    }
    pending.drain(..at);
    texts
}

criterion_group!(benches, bench_send, bench_broadcast);
criterion_main!(benches);
