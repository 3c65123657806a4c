//! What a socket's output queue may hold, and when a socket is a slow consumer.
//!
//! - A socket is judged by what is already queued for it when the next frame comes (the
//!   way uWebSockets' maxBackpressure judges): a frame is queued while less than
//!   `max_buffered_bytes` waits, whatever its own size. A client that keeps reading
//!   receives every message the node accepts, even one larger than `max_buffered_bytes`.
//! - Control replies count too: pongs are held to the same bound and the node's, and a
//!   write-blocked socket has at most one pong waiting behind its output (the answer to the
//!   latest ping, RFC 6455 5.5.3), so a client that pings and never reads cannot make the
//!   node hold its answers.
//! - The node's cap (`max_node_buffered_bytes`) still bounds the node: a message larger
//!   than the cap is refused under the slow-consumer policy.

#[path = "support.rs"]
mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::*;
use wspush::{Message, SlowConsumerPolicy};

const MIB: usize = 1 << 20;

/// A message of `len` bytes that tells its parts apart.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn an_echo_larger_than_the_socket_bound_reaches_a_client_that_reads() {
    let (engine, mut events) = start_engine(|c| {
        c.echo = true;
        c.max_message_size = 16 * MIB; // max_buffered_bytes stays 4 MiB
    });
    let mut ws = RawWs::connect(addr(&engine), "/websocket/echo");
    let conn = events.open("echo");
    let message = pattern(8 * MIB);
    ws.send(true, opcode::BINARY, &message).unwrap();
    let (kind, echoed) = ws.read_message().expect("no echo");
    assert_eq!(kind, opcode::BINARY);
    assert!(echoed == message, "the echo differs from the message ({} bytes)", echoed.len());
    // Still open: a small message goes through too.
    ws.send(true, opcode::TEXT, b"and this").unwrap();
    assert_eq!(ws.read_message().unwrap(), (opcode::TEXT, b"and this".to_vec()));
    let stats = engine.stats();
    assert_eq!((stats.slow_consumer_disconnects, stats.connections), (0, 1), "{stats:?}");
    assert!(events.drain().iter().all(|e| !matches!(e, Ev::Close { conn: c, .. } if *c == conn)));
}

#[test]
fn a_send_larger_than_the_socket_bound_reaches_a_client_that_reads() {
    let (engine, mut events) = start_engine(|c| c.max_message_size = 16 * MIB);
    let mut ws = RawWs::connect(addr(&engine), "/websocket/big");
    events.open("big");
    let message = pattern(6 * MIB);
    assert_eq!(send_counted(&engine, "big", Message::Binary(&message)), 1);
    let (kind, got) = ws.read_message().expect("the message did not arrive");
    assert_eq!(kind, opcode::BINARY);
    assert!(got == message, "the message arrived changed ({} bytes)", got.len());
    engine.send("big", Message::Text("next")).unwrap();
    assert_eq!(ws.read_message().unwrap(), (opcode::TEXT, b"next".to_vec()));
    let stats = engine.stats();
    assert_eq!((stats.slow_consumer_disconnects, stats.connections), (0, 1), "{stats:?}");
}

#[test]
fn a_message_larger_than_the_node_cap_is_refused_under_the_policy() {
    let (engine, mut events) = start_engine(|c| {
        c.max_message_size = 16 * MIB;
        c.max_node_buffered_bytes = Some(8 * MIB);
        c.slow_consumer = SlowConsumerPolicy::Drop;
    });
    let mut ws = RawWs::connect(addr(&engine), "/websocket/big");
    events.open("big");
    assert_eq!(send_counted(&engine, "big", Message::Binary(&pattern(10 * MIB))), 0);
    let stats = engine.stats();
    assert_eq!((stats.slow_consumer_drops, stats.buffered_bytes), (1, 0), "{stats:?}");
    // The socket stays, and what fits the node reaches it.
    let fits = pattern(6 * MIB);
    assert_eq!(send_counted(&engine, "big", Message::Binary(&fits)), 1);
    let (_, got) = ws.read_message().unwrap();
    assert!(got == fits, "the message arrived changed ({} bytes)", got.len());
}

/// A raw client whose receive buffer is tiny, so that the server's output to it backs up
/// at once.
fn connect_with_tiny_receive_buffer(addr: SocketAddr, path: &str) -> RawWs {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // Before connecting: the window is negotiated in the handshake.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let ws = RawWs::handshake(TcpStream::from(socket), path).unwrap();
    assert_eq!(ws.response.status, 101, "{:?}", ws.response);
    ws
}

#[test]
fn pongs_to_a_client_that_never_reads_are_coalesced_within_the_socket_bound() {
    const LIMIT: usize = 64 * 1024;
    const PINGS: usize = 50_000;
    let (engine, mut events) = start_engine(|c| {
        c.workers = 1; // `sync` below shares the pinger's worker
        c.max_buffered_bytes = LIMIT;
        c.slow_consumer = SlowConsumerPolicy::Disconnect;
        c.ping_interval = Duration::ZERO;
        c.idle_timeout = Duration::ZERO;
    });
    let mut pinger = connect_with_tiny_receive_buffer(addr(&engine), "/websocket/pinger");
    let conn = events.open("pinger");
    let mut sync = RawWs::connect(addr(&engine), "/websocket/sync");
    events.open("sync");

    // 50,000 pings of 125 bytes: 6.3 MiB of pongs if each were answered, and the pinger
    // reads none of them (yet).
    let payload = |i: usize| format!("{i:0125}").into_bytes();
    for batch in 0..PINGS / 1000 {
        let pings: Vec<u8> = (batch * 1000..(batch + 1) * 1000)
            .flat_map(|i| encode_frame(true, opcode::PING, &payload(i), Some([1, 2, 3, 4])))
            .collect();
        pinger.write_raw(&pings).unwrap();
    }
    pinger.send(true, opcode::TEXT, b"done").unwrap();
    assert_eq!(events.message_from(conn).2, b"done", "every ping before it was handled");
    // A receipt publishes the worker's queued output before it answers: the gauge below
    // includes every pong queued for the pinger.
    assert_eq!(send_counted(&engine, "sync", Message::Text("sync")), 1);
    let stats = engine.stats();
    eprintln!("after {PINGS} pings: {} bytes queued across the node", stats.buffered_bytes);
    assert!(
        stats.buffered_bytes <= (LIMIT + 1024) as u64,
        "{} bytes queued, over the socket bound {LIMIT}: {stats:?}",
        stats.buffered_bytes
    );
    assert_eq!((stats.slow_consumer_disconnects, stats.connections), (0, 2), "{stats:?}");
    assert_eq!(sync.read_message().unwrap(), (opcode::TEXT, b"sync".to_vec()));

    // Once the pinger reads: some pongs, the last one answering the last ping, then what
    // is sent next.
    engine.send("pinger", Message::Text("after")).unwrap();
    let mut pongs = 0;
    let mut last = Vec::new();
    loop {
        let frame = pinger.read_frame().unwrap();
        match frame.opcode {
            opcode::PONG => {
                pongs += 1;
                last = frame.payload;
            }
            opcode::TEXT => {
                assert_eq!(frame.payload, b"after");
                break;
            }
            other => panic!("unexpected frame {other:#x}"),
        }
    }
    eprintln!("the pinger read {pongs} pongs for {PINGS} pings");
    assert!(pongs < PINGS, "every ping was answered: the pongs were not coalesced");
    assert_eq!(last, payload(PINGS - 1), "the last pong answers the last ping");
}
