//! A client process: opens its share of the connections with mio (a bounded number of
//! upgrades in flight, so the server's listen backlog never overflows), reads every frame,
//! answers pings, and checks every bench message (`check.rs`, shared with the
//! tokio-tungstenite client of `tungstenite_client.rs`): a unicast must arrive on a socket of
//! the id it names (else it is *misrouted*, and does not count as delivered), once; a
//! broadcast once per socket; and the latency of each from the timestamp it carries.
//!
//! Since every id is held by exactly one client process, every unicast has exactly one
//! process that may count it as delivered: the parent adds up the processes' distinct
//! counts, and a copy in another process shows as misrouted instead of cancelling a loss.
//!
//! It talks to the parent in JSON lines: progress while connecting, a `connected` line,
//! then `received` counts (first deliveries to the right socket) every 100 ms; on `report K`
//! (K: broadcasts sent in the phase) or `report-range LO HI` (per-socket unicasts `LO..HI`,
//! `resume`) it prints what it saw and starts a new phase; on `quit` (or EOF) it exits.
//!
//! With `--v1` every socket offers `wspush.v1` (and must have it selected), and its frames
//! are checked as `wspush.v1` frames (`check::Tally::frame`). For `resume`: `disconnect`
//! closes every socket (answered `disconnected`), `reconnect MISSED [FILE]` opens them all
//! again, each with `?since=` its last position (a v1 socket's own; a plain socket's from
//! FILE, a JSON object id -> "E:O", if given), expecting the unicasts of its id below MISSED
//! (answered `connected` again).

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use wspush::frame::{encode_masked, OpCode};

use crate::check::{self, Tally};
use crate::clock::now_ns;

/// Upgrades in flight at once per process.
const MAX_IN_FLIGHT: usize = 256;
const WAKE: Token = Token(usize::MAX);
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x2e];

/// What one client process does.
pub struct ClientPlan {
    /// Connection `i` goes to `targets[i % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    /// Connection `i` connects as id `first_id + i`.
    pub first_id: u64,
    pub count: usize,
    /// Local address to connect from; on loopback, spread over several (see `spread_source`).
    pub source: Option<IpAddr>,
    /// Every `slow_every`-th connection (by id) stops reading after its upgrade; 0: none.
    pub slow_every: u64,
    /// Unicast sequence numbers are below this.
    pub unicast_space: usize,
    pub path_prefix: String,
    /// Offer `wspush.v1` and read its frames.
    pub v1: bool,
    /// Connection `i` is id `(first_id + i) % ids`, and unicasts are counted per socket
    /// (several sockets share an id); 0: id `first_id + i`, counted per process.
    pub ids: u64,
}

impl ClientPlan {
    /// The id connection `i` connects as.
    pub fn id(&self, i: usize) -> u64 {
        let global = self.first_id + i as u64;
        if self.ids > 0 {
            global % self.ids
        } else {
            global
        }
    }

    /// A fresh tally in this plan's mode.
    pub fn tally(&self) -> Tally {
        Tally { per_socket_ids: self.ids, ..Tally::new(self.unicast_space) }
    }
}

/// What the parent gave for `reconnect`: the missed unicasts are those below `missed_below`;
/// plain sockets resume from `since` (id -> "E:O"), if given.
pub struct Reconnect {
    pub missed_below: u64,
    pub since: Option<std::collections::HashMap<u64, String>>,
}

impl Reconnect {
    /// `reconnect MISSED [FILE]`.
    pub fn parse(command: &str) -> io::Result<Reconnect> {
        let mut words = command.split_whitespace().skip(1);
        let missed_below = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let since = match words.next() {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)?;
                let map: std::collections::HashMap<String, String> =
                    serde_json::from_str(&text).map_err(io::Error::other)?;
                Some(map.into_iter().filter_map(|(id, pos)| Some((id.parse().ok()?, pos))).collect())
            }
        };
        Ok(Reconnect { missed_below, since })
    }

    /// The `?since=` of a socket of `id` (`position`: what a v1 socket knows).
    pub fn since(&self, id: u64, position: Option<check::Position>) -> Option<String> {
        match &self.since {
            Some(map) => map.get(&id).cloned(),
            None => position.map(|p| p.to_string()),
        }
    }

    /// The missed unicasts a socket of `id` expects (round robin over `ids`).
    pub fn missed(&self, id: u64, ids: u64) -> u64 {
        let (lo, hi) = check::id_range(id, ids.max(1), 0, self.missed_below);
        hi - lo
    }
}

enum State {
    Connecting,
    Upgrading,
    Open,
    Closed,
}

struct Conn {
    stream: TcpStream,
    /// The id this socket connected as (what a unicast it receives must name).
    id: u32,
    state: State,
    /// Bytes of an incomplete response head or frame.
    inbox: Vec<u8>,
    /// Pongs and the close reply that did not fit in the socket yet.
    outbox: Vec<u8>,
    /// What it saw (kept across reconnects: its position).
    socket: check::Socket,
    /// The `?since=` of its upgrade.
    since: Option<String>,
}

/// Parses the frames at the start of `buf` (server frames: unmasked) read on the socket of
/// `id`, handles each, and returns how many bytes were whole frames, and whether a close frame
/// arrived.
fn read_frames(
    buf: &[u8],
    id: u32,
    now: u64,
    socket: &mut check::Socket,
    outbox: &mut Vec<u8>,
    tally: &mut Tally,
    v1: bool,
) -> (usize, bool) {
    let mut pos = 0;
    while buf.len() - pos >= 2 {
        let (b0, b1) = (buf[pos], buf[pos + 1]);
        let (header, len) = match b1 & 0x7f {
            126 if buf.len() - pos >= 4 => (4, u64::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]))),
            127 if buf.len() - pos >= 10 => {
                (10, u64::from_be_bytes(buf[pos + 2..pos + 10].try_into().expect("8 bytes")))
            }
            126 | 127 => break,
            n => (2, u64::from(n)),
        };
        if b1 & 0x80 != 0 {
            tally.bad_frames += 1;
            return (buf.len(), true);
        }
        let end = pos + header + len as usize;
        if end > buf.len() {
            break;
        }
        let data = &buf[pos + header..end];
        match b0 & 0x0f {
            0x1 | 0x2 => tally.frame(data, id, now, socket, v1),
            0x9 => {
                tally.pings += 1;
                outbox.extend_from_slice(&encode_masked(OpCode::Pong, data, MASK, true));
            }
            0xA => {}
            0x8 => {
                let code = if data.len() >= 2 { u16::from_be_bytes([data[0], data[1]]) } else { 1005 };
                tally.closed(format!("close {code}"));
                let reply = if data.len() >= 2 { &data[..2] } else { &[][..] };
                outbox.extend_from_slice(&encode_masked(OpCode::Close, reply, MASK, true));
                return (end, true);
            }
            _ => tally.bad_frames += 1,
        }
        pos = end;
    }
    (pos, false)
}

/// The subprotocol `--v1` offers.
pub const V1_PROTOCOL: &str = "wspush.v1";

/// The path of connection `id`'s upgrade: `{prefix}{id}`, with `?since=E:O` when resuming.
pub fn upgrade_path(prefix: &str, id: u64, since: Option<&str>) -> String {
    match since {
        Some(since) => format!("{prefix}{id}?since={since}"),
        None => format!("{prefix}{id}"),
    }
}

fn upgrade_request(path: &str, host: SocketAddr, v1: bool) -> Vec<u8> {
    let protocol = if v1 { format!("Sec-WebSocket-Protocol: {V1_PROTOCOL}\r\n") } else { String::new() };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    )
    .into_bytes()
}

/// Whether a 101 response head selected `wspush.v1`.
fn selects_v1(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-protocol") && value.trim() == V1_PROTOCOL
        })
    })
}

/// Connections per source address: far below the 28,000 ephemeral ports of one address,
/// which earlier runs' sockets in TIME_WAIT may still hold.
const CONNECTIONS_PER_SOURCE: usize = 2000;

/// The source address of connection `i`: `base` with its third octet counting up every
/// [`CONNECTIONS_PER_SOURCE`] connections (127.x.y.z is all loopback).
pub fn spread_source(base: IpAddr, i: usize) -> IpAddr {
    match base {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let [a, b, c, d] = v4.octets();
            IpAddr::V4([a, b, c.wrapping_add((i / CONNECTIONS_PER_SOURCE) as u8), d].into())
        }
        other => other,
    }
}

/// A non-blocking socket for `target`, bound to `source` if given, not yet connected (both
/// client kinds open theirs here).
pub fn socket(target: SocketAddr, source: Option<IpAddr>, slow: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if slow {
        // A small window, as a stalled phone's: the kernel buffers little, so what the
        // client does not read piles up in the server, where its limits must apply.
        socket.set_recv_buffer_size(4096)?;
    }
    if let Some(source) = source {
        // Pick the port at connect time, by the whole 4-tuple, and reuse ports a previous
        // run left in TIME_WAIT: 19,000 sockets from one address fit either way.
        socket.set_reuse_address(true)?;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket, option value and length for IP_BIND_ADDRESS_NO_PORT.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    Ok(socket)
}

fn open(target: SocketAddr, source: Option<IpAddr>, slow: bool) -> io::Result<TcpStream> {
    let socket = socket(target, source, slow)?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

pub fn emit(value: Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Runs a client process until `quit`; returns the process exit code.
pub fn run(plan: ClientPlan) -> i32 {
    match run_inner(plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wspush-bench client: {e}");
            1
        }
    }
}

fn run_inner(plan: ClientPlan) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    let (commands_tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if commands_tx.send(line).is_err() {
                return;
            }
            let _ = waker.wake();
        }
        let _ = commands_tx.send("quit".into());
        let _ = waker.wake();
    });

    let mut conns: Vec<Conn> = Vec::with_capacity(plan.count);
    let mut tally = plan.tally();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(4096);
    let (mut in_flight, mut connected, mut failed) = (0usize, 0usize, 0usize);
    let mut started = Instant::now();
    let mut connect_seconds = None;
    let mut last_progress = Instant::now();
    let mut reported = (u64::MAX, usize::MAX);
    // Connections are opened (again, after `reconnect`) in order up to here.
    let mut next_open = 0usize;
    let mut reconnect: Option<Reconnect> = None;

    loop {
        while in_flight < MAX_IN_FLIGHT && next_open < plan.count {
            let i = next_open;
            next_open += 1;
            let target = plan.targets[i % plan.targets.len()];
            let id = plan.id(i);
            let slow = plan.slow_every > 0 && id % plan.slow_every == 0;
            let source = plan.source.map(|base| spread_source(base, i));
            let (socket, since) = match (conns.get_mut(i), &reconnect) {
                (Some(old), Some(reconnect)) => {
                    let mut socket = std::mem::take(&mut old.socket);
                    let since = reconnect.since(id, socket.position);
                    socket.reconnecting(reconnect.missed(id, plan.ids), plan.v1 && since.is_some());
                    (socket, since)
                }
                _ => (check::Socket { slow, ..check::Socket::default() }, None),
            };
            let mut conn = Conn {
                stream: match open(target, source, slow) {
                    Ok(stream) => stream,
                    Err(e) => return Err(io::Error::new(e.kind(), format!("connect to {target}: {e}"))),
                },
                state: State::Connecting,
                id: id as u32,
                inbox: Vec::new(),
                outbox: Vec::new(),
                socket,
                since,
            };
            poll.registry().register(&mut conn.stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            if i < conns.len() {
                conns[i] = conn;
            } else {
                conns.push(conn);
            }
            in_flight += 1;
        }

        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let i = event.token().0;
            let conn = &mut conns[i];
            match conn.state {
                State::Closed => {}
                State::Connecting => {
                    let outcome = match conn.stream.take_error() {
                        Ok(Some(e)) | Err(e) => Err(e),
                        Ok(None) => match conn.stream.peer_addr() {
                            Ok(peer) => {
                                let path = upgrade_path(
                                    &plan.path_prefix,
                                    u64::from(conn.id),
                                    conn.since.as_deref(),
                                );
                                let request = upgrade_request(&path, peer, plan.v1);
                                match conn.stream.write(&request) {
                                    Ok(n) if n == request.len() => Ok(true),
                                    Ok(_) => Err(io::Error::other("upgrade request written in part")),
                                    Err(e) => Err(e),
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                            Err(e) => Err(e),
                        },
                    };
                    match outcome {
                        Ok(true) => conn.state = State::Upgrading,
                        Ok(false) => {}
                        Err(e) => {
                            *failures.entry(e.kind().to_string()).or_insert(0) += 1;
                            let _ = poll.registry().deregister(&mut conn.stream);
                            conn.state = State::Closed;
                            (in_flight, failed) = (in_flight - 1, failed + 1);
                        }
                    }
                }
                State::Upgrading | State::Open => {
                    if event.is_readable() {
                        let now = now_ns();
                        loop {
                            let step = match conn.stream.read(&mut scratch) {
                                Ok(0) => Step::Eof,
                                Ok(n) => {
                                    handle_bytes(conn, &scratch[..n], now, &mut tally, &mut failures, plan.v1)
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                Err(_) => Step::Eof,
                            };
                            match step {
                                Step::More => continue,
                                Step::Upgraded => {
                                    (in_flight, connected) = (in_flight - 1, connected + 1);
                                    tally.upgraded(&mut conn.socket, now);
                                    if conn.socket.slow {
                                        // Stops reading: the server's queue for it grows until
                                        // its limit applies.
                                        let _ = poll.registry().deregister(&mut conn.stream);
                                        break;
                                    }
                                    if matches!(conn.state, State::Closed) {
                                        let _ = poll.registry().deregister(&mut conn.stream);
                                        break;
                                    }
                                }
                                Step::Refused => {
                                    (in_flight, failed) = (in_flight - 1, failed + 1);
                                    let _ = poll.registry().deregister(&mut conn.stream);
                                    conn.state = State::Closed;
                                    break;
                                }
                                Step::Closed => {
                                    let _ = poll.registry().deregister(&mut conn.stream);
                                    break;
                                }
                                Step::Eof => {
                                    if matches!(conn.state, State::Upgrading) {
                                        *failures.entry("closed during upgrade".into()).or_insert(0) += 1;
                                        (in_flight, failed) = (in_flight - 1, failed + 1);
                                    } else if !matches!(conn.state, State::Closed) {
                                        tally.closed("eof");
                                    }
                                    let _ = poll.registry().deregister(&mut conn.stream);
                                    conn.state = State::Closed;
                                    conn.inbox = Vec::new();
                                    break;
                                }
                            }
                        }
                    }
                    if !conn.outbox.is_empty() && !matches!(conn.state, State::Closed) {
                        flush(conn);
                    }
                }
            }
        }

        if connect_seconds.is_none() {
            if connected + failed == plan.count {
                let seconds = started.elapsed().as_secs_f64();
                connect_seconds = Some(seconds);
                emit(json!({"type": "connected", "connected": connected, "failed": failed,
                            "seconds": seconds, "failures": failures}));
            } else if last_progress.elapsed() >= Duration::from_millis(200) {
                last_progress = Instant::now();
                emit(json!({"type": "progress", "connected": connected, "failed": failed}));
            }
        } else if last_progress.elapsed() >= Duration::from_millis(100) {
            // v1: sockets that had their `!pos` (what `resume` waits for after connecting).
            let live = if plan.v1 { conns.iter().filter(|c| c.socket.live).count() } else { 0 };
            if (tally.good, live) != reported {
                last_progress = Instant::now();
                reported = (tally.good, live);
                emit(json!({"type": "received", "count": tally.good, "live": live}));
            }
        }

        while let Ok(command) = commands.try_recv() {
            let mut words = command.split_whitespace();
            match words.next() {
                Some("quit") => return Ok(()),
                Some("report" | "report-range") => {
                    let expect = check::Expect::from_command(&command).expect("a report command");
                    let sockets =
                        conns.iter_mut().map(|c| (c.id, &mut c.socket, matches!(c.state, State::Open)));
                    emit(check::report(sockets, &tally, expect, connected, plan.v1));
                    tally = tally.next_phase();
                    reported = (u64::MAX, usize::MAX);
                }
                Some("disconnect") => {
                    for conn in &mut conns {
                        if !matches!(conn.state, State::Closed) {
                            let _ = poll.registry().deregister(&mut conn.stream);
                            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                            conn.state = State::Closed;
                        }
                        conn.inbox = Vec::new();
                        conn.outbox = Vec::new();
                    }
                    in_flight = 0;
                    emit(json!({"type": "disconnected"}));
                }
                Some("reconnect") => {
                    let next = Reconnect::parse(&command)?;
                    tally.missed_below = next.missed_below;
                    reconnect = Some(next);
                    (next_open, in_flight, connected, failed) = (0, 0, 0, 0);
                    failures.clear();
                    connect_seconds = None;
                    started = Instant::now();
                }
                _ => eprintln!("wspush-bench client: unknown command {command:?}"),
            }
        }
    }
}

/// What a read did to a connection.
enum Step {
    More,
    Upgraded,
    Refused,
    Closed,
    Eof,
}

/// Feeds bytes read from a socket through the upgrade response, then the frame parser.
fn handle_bytes(
    conn: &mut Conn,
    bytes: &[u8],
    now: u64,
    tally: &mut Tally,
    failures: &mut BTreeMap<String, u64>,
    v1: bool,
) -> Step {
    if matches!(conn.state, State::Upgrading) {
        conn.inbox.extend_from_slice(bytes);
        let Some(end) = conn.inbox.windows(4).position(|w| w == b"\r\n\r\n") else { return Step::More };
        if !conn.inbox.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(conn.inbox.get(9..12).unwrap_or(b"???")).into_owned();
            *failures.entry(format!("status {status}")).or_insert(0) += 1;
            conn.inbox = Vec::new();
            return Step::Refused;
        }
        if v1 && !selects_v1(&conn.inbox[..end]) {
            // History off, or not the server asked for: its frames would not be v1 frames.
            *failures.entry(format!("{V1_PROTOCOL} not selected")).or_insert(0) += 1;
            conn.inbox = Vec::new();
            return Step::Refused;
        }
        let rest = conn.inbox.split_off(end + 4);
        conn.inbox.clear();
        conn.state = State::Open;
        feed_frames(conn, &rest, now, tally, v1);
        return Step::Upgraded;
    }
    if feed_frames(conn, bytes, now, tally, v1) {
        Step::More
    } else {
        Step::Closed
    }
}

/// Parses frames from what is left of earlier reads plus `bytes`; false once closed.
fn feed_frames(conn: &mut Conn, bytes: &[u8], now: u64, tally: &mut Tally, v1: bool) -> bool {
    let owned;
    let data: &[u8] = if conn.inbox.is_empty() {
        bytes
    } else {
        conn.inbox.extend_from_slice(bytes);
        owned = std::mem::take(&mut conn.inbox);
        &owned
    };
    let (used, closed) = read_frames(data, conn.id, now, &mut conn.socket, &mut conn.outbox, tally, v1);
    if closed {
        conn.state = State::Closed;
        flush(conn);
        return false;
    }
    conn.inbox.extend_from_slice(&data[used..]);
    true
}

fn flush(conn: &mut Conn) {
    while !conn.outbox.is_empty() {
        match conn.stream.write(&conn.outbox) {
            Ok(0) => break,
            Ok(n) => {
                conn.outbox.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::split_broadcasts;
    use crate::payload::{self, Kind};
    use wspush::frame::encode;

    /// The id the socket in these tests connected as.
    const ID: u32 = 7;

    fn message_to(kind: Kind, seq: u32, target: u32) -> Vec<u8> {
        let mut text = Vec::new();
        payload::write(&mut text, kind, seq, 1, target, 40);
        encode(OpCode::Text, &text).to_vec()
    }

    fn message(kind: Kind, seq: u32) -> Vec<u8> {
        let target = if kind == Kind::Unicast { ID } else { payload::EVERYONE };
        message_to(kind, seq, target)
    }

    #[test]
    fn unicasts_are_counted_once_and_duplicates_noticed() {
        let mut tally = Tally::new(10);
        let (mut seen, mut out) = (check::Socket::default(), Vec::new());
        let mut stream =
            [message(Kind::Unicast, 3), message(Kind::Unicast, 3), message(Kind::Unicast, 12)].concat();
        stream.extend_from_slice(&encode(OpCode::Text, b"welcome 7"));
        let (used, closed) = read_frames(&stream, ID, 5, &mut seen, &mut out, &mut tally, false);
        assert_eq!((used, closed), (stream.len(), false));
        assert_eq!(tally.deliveries, 3);
        assert_eq!(tally.good, 1);
        assert_eq!(tally.unicast_dups, 1);
        assert_eq!(tally.unexpected, 1, "seq 12 is outside a space of 10");
        assert_eq!(tally.other_messages, 1);
        assert_eq!(tally.unicast_seen.iter().filter(|&&s| s > 0).count(), 1);
    }

    #[test]
    fn a_unicast_for_another_id_is_misrouted_and_not_delivered() {
        let mut tally = Tally::new(10);
        let (mut seen, mut out) = (check::Socket::default(), Vec::new());
        let stream = [message_to(Kind::Unicast, 4, ID + 1), message(Kind::Unicast, 5)].concat();
        read_frames(&stream, ID, 5, &mut seen, &mut out, &mut tally, false);
        assert_eq!((tally.deliveries, tally.good, tally.misrouted), (2, 1, 1));
        assert_eq!(tally.unicast_seen[4], 0, "seq 4 still missing for its own id");
        assert_eq!(tally.unicast_seen[5], 1);
    }

    #[test]
    fn broadcasts_in_any_order_count_once_per_socket() {
        let mut tally = Tally::new(0);
        let (mut seen, mut out) = (check::Socket::default(), Vec::new());
        for seq in [2, 0, 1, 70, 1] {
            read_frames(&message(Kind::Broadcast, seq), ID, 5, &mut seen, &mut out, &mut tally, false);
        }
        assert_eq!(tally.broadcast_dups, 1);
        assert_eq!(tally.good, 4);
        assert_eq!(split_broadcasts(&seen.seen, 71), (4, 0));
        assert_eq!(split_broadcasts(&seen.seen, 3), (3, 1), "70 was never sent in a phase of 3");
        assert_eq!(split_broadcasts(&seen.seen, 64), (3, 1));
        assert_eq!(split_broadcasts(&seen.seen, 0), (0, 4));
    }

    #[test]
    fn partial_frames_wait_and_pings_are_answered_masked() {
        let mut tally = Tally::new(4);
        let (mut seen, mut out) = (check::Socket::default(), Vec::new());
        let whole = message(Kind::Unicast, 1);
        assert_eq!(read_frames(&whole[..10], ID, 5, &mut seen, &mut out, &mut tally, false), (0, false));
        let ping = encode(OpCode::Ping, b"hi");
        assert_eq!(read_frames(&ping, ID, 5, &mut seen, &mut out, &mut tally, false), (ping.len(), false));
        assert_eq!(out, encode_masked(OpCode::Pong, b"hi", MASK, true));
        let close = encode(OpCode::Close, &1001u16.to_be_bytes());
        assert_eq!(read_frames(&close, ID, 5, &mut seen, &mut out, &mut tally, false), (close.len(), true));
        assert_eq!(tally.closes.get("close 1001"), Some(&1));
    }
}
