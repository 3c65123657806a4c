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
//! (K: broadcasts sent in the phase) it prints what it saw and starts a new phase; on `quit`
//! (or EOF) it exits.

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
    /// Broadcast sequence numbers seen this phase (publishers may run in parallel, so
    /// broadcasts can arrive in any order).
    broadcasts_seen: Vec<u64>,
    slow: bool,
}

/// Parses the frames at the start of `buf` (server frames: unmasked) read on the socket of
/// `id`, handles each, and returns how many bytes were whole frames, and whether a close frame
/// arrived.
fn read_frames(
    buf: &[u8],
    id: u32,
    now: u64,
    broadcasts_seen: &mut Vec<u64>,
    outbox: &mut Vec<u8>,
    tally: &mut Tally,
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
            0x1 | 0x2 => tally.message(data, id, now, broadcasts_seen),
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

fn upgrade_request(id: u64, prefix: &str, host: SocketAddr) -> Vec<u8> {
    format!(
        "GET {prefix}{id} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
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
    let mut tally = Tally::new(plan.unicast_space);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(4096);
    let (mut in_flight, mut connected, mut failed) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let mut connect_seconds = None;
    let mut last_progress = Instant::now();
    let mut reported_deliveries = u64::MAX;

    loop {
        while in_flight < MAX_IN_FLIGHT && conns.len() < plan.count {
            let i = conns.len();
            let target = plan.targets[i % plan.targets.len()];
            let id = plan.first_id + i as u64;
            let slow = plan.slow_every > 0 && id % plan.slow_every == 0;
            let source = plan.source.map(|base| spread_source(base, i));
            let mut conn = Conn {
                stream: match open(target, source, slow) {
                    Ok(stream) => stream,
                    Err(e) => return Err(io::Error::new(e.kind(), format!("connect to {target}: {e}"))),
                },
                state: State::Connecting,
                id: id as u32,
                inbox: Vec::new(),
                outbox: Vec::new(),
                broadcasts_seen: Vec::new(),
                slow,
            };
            poll.registry().register(&mut conn.stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(conn);
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
                                let request =
                                    upgrade_request(plan.first_id + i as u64, &plan.path_prefix, peer);
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
                                Ok(n) => handle_bytes(conn, &scratch[..n], now, &mut tally, &mut failures),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                Err(_) => Step::Eof,
                            };
                            match step {
                                Step::More => continue,
                                Step::Upgraded => {
                                    (in_flight, connected) = (in_flight - 1, connected + 1);
                                    if conn.slow {
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
        } else if last_progress.elapsed() >= Duration::from_millis(100) && tally.good != reported_deliveries {
            last_progress = Instant::now();
            reported_deliveries = tally.good;
            emit(json!({"type": "received", "count": tally.good}));
        }

        while let Ok(command) = commands.try_recv() {
            let mut words = command.split_whitespace();
            match words.next() {
                Some("quit") => return Ok(()),
                Some("report") => {
                    let broadcasts: u32 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let sockets = conns.iter_mut().map(|c| (&mut c.broadcasts_seen, c.slow));
                    emit(check::report(sockets, &tally, broadcasts, connected));
                    tally = Tally::new(plan.unicast_space);
                    reported_deliveries = u64::MAX;
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
        let rest = conn.inbox.split_off(end + 4);
        conn.inbox.clear();
        conn.state = State::Open;
        feed_frames(conn, &rest, now, tally);
        return Step::Upgraded;
    }
    if feed_frames(conn, bytes, now, tally) {
        Step::More
    } else {
        Step::Closed
    }
}

/// Parses frames from what is left of earlier reads plus `bytes`; false once closed.
fn feed_frames(conn: &mut Conn, bytes: &[u8], now: u64, tally: &mut Tally) -> bool {
    let owned;
    let data: &[u8] = if conn.inbox.is_empty() {
        bytes
    } else {
        conn.inbox.extend_from_slice(bytes);
        owned = std::mem::take(&mut conn.inbox);
        &owned
    };
    let (used, closed) = read_frames(data, conn.id, now, &mut conn.broadcasts_seen, &mut conn.outbox, tally);
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
        let (mut seen, mut out) = (Vec::new(), Vec::new());
        let mut stream =
            [message(Kind::Unicast, 3), message(Kind::Unicast, 3), message(Kind::Unicast, 12)].concat();
        stream.extend_from_slice(&encode(OpCode::Text, b"welcome 7"));
        let (used, closed) = read_frames(&stream, ID, 5, &mut seen, &mut out, &mut tally);
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
        let (mut seen, mut out) = (Vec::new(), Vec::new());
        let stream = [message_to(Kind::Unicast, 4, ID + 1), message(Kind::Unicast, 5)].concat();
        read_frames(&stream, ID, 5, &mut seen, &mut out, &mut tally);
        assert_eq!((tally.deliveries, tally.good, tally.misrouted), (2, 1, 1));
        assert_eq!(tally.unicast_seen[4], 0, "seq 4 still missing for its own id");
        assert_eq!(tally.unicast_seen[5], 1);
    }

    #[test]
    fn broadcasts_in_any_order_count_once_per_socket() {
        let mut tally = Tally::new(0);
        let (mut seen, mut out) = (Vec::new(), Vec::new());
        for seq in [2, 0, 1, 70, 1] {
            read_frames(&message(Kind::Broadcast, seq), ID, 5, &mut seen, &mut out, &mut tally);
        }
        assert_eq!(tally.broadcast_dups, 1);
        assert_eq!(tally.good, 4);
        assert_eq!(split_broadcasts(&seen, 71), (4, 0));
        assert_eq!(split_broadcasts(&seen, 3), (3, 1), "70 was never sent in a phase of 3");
        assert_eq!(split_broadcasts(&seen, 64), (3, 1));
        assert_eq!(split_broadcasts(&seen, 0), (0, 4));
    }

    #[test]
    fn partial_frames_wait_and_pings_are_answered_masked() {
        let mut tally = Tally::new(4);
        let (mut seen, mut out) = (Vec::new(), Vec::new());
        let whole = message(Kind::Unicast, 1);
        assert_eq!(read_frames(&whole[..10], ID, 5, &mut seen, &mut out, &mut tally), (0, false));
        let ping = encode(OpCode::Ping, b"hi");
        assert_eq!(read_frames(&ping, ID, 5, &mut seen, &mut out, &mut tally), (ping.len(), false));
        assert_eq!(out, encode_masked(OpCode::Pong, b"hi", MASK, true));
        let close = encode(OpCode::Close, &1001u16.to_be_bytes());
        assert_eq!(read_frames(&close, ID, 5, &mut seen, &mut out, &mut tally), (close.len(), true));
        assert_eq!(tally.closes.get("close 1001"), Some(&1));
    }
}
