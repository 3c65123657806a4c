//! Fair reads: one client sending as fast as loopback allows cannot hold its worker. The
//! worker reads a bounded share of each ready socket per pass of its loop, so pushes to the
//! other sockets of the worker go out while the flood goes on; and a flooder over its
//! inbound rate is closed (1008) and cut off at its close deadline although it keeps
//! sending.
//!
//! The engines here attach no event collector: the flood is millions of messages, and a
//! collector would copy each one.

#[path = "support.rs"]
mod support;

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::*;
use wspush::{Config, Engine, Message};

/// How long a closing socket may take to answer our close frame (the engine's grace).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a push to the canary may take while the flood goes on: far above what a fair
/// worker needs (about a millisecond), far below forever.
const PUSH_BOUND: Duration = Duration::from_millis(500);

/// Pushes to the canary during the flood.
const PUSHES: usize = 20;

/// One worker, no timers but the close deadlines, and `configure`.
fn start(configure: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config {
        ws_listen: Some(any_port()),
        workers: 1, // the flooder and the canary share the worker
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        ..Config::default()
    };
    configure(&mut config);
    Engine::start(config).expect("the engine does not start")
}

/// How the flood ended.
struct FloodEnd {
    /// When the write failed, and why; `None` if it was stopped (or ran out of time).
    failed: Option<(Instant, io::ErrorKind)>,
}

/// Writes 64 KiB batches of empty masked binary frames (`82 80` + mask) to `stream` as fast
/// as it takes them, on a thread of its own, until `stop`, a write fails, or 30 s.
fn flood(mut stream: TcpStream, stop: Arc<AtomicBool>) -> JoinHandle<FloodEnd> {
    let batch = encode_frame(true, opcode::BINARY, b"", Some([0x37, 0xfa, 0x21, 0x3d])).repeat(64 * 1024 / 6);
    thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT * 3;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Err(e) = stream.write_all(&batch) {
                return FloodEnd { failed: Some((Instant::now(), e.kind())) };
            }
        }
        FloodEnd { failed: None }
    })
}

/// Pushes to the canary `PUSHES` times, each once the previous arrived; returns the
/// latencies, sorted. Panics if one takes over `PUSH_BOUND` (or never arrives).
fn push_to_canary(engine: &Engine, canary: &mut RawWs) -> Vec<Duration> {
    // A worker held by the flood would never deliver: fail in bounded time.
    canary.stream().set_read_timeout(Some(PUSH_BOUND * 4)).unwrap();
    let mut latencies = Vec::new();
    for i in 0..PUSHES {
        let text = format!("push {i}");
        let sent = Instant::now();
        engine.send("canary", Message::Text(&text)).unwrap();
        let got = canary.read_message().unwrap_or_else(|e| {
            panic!("push {i} did not reach the canary within {:?}: {e}; {:?}", PUSH_BOUND * 4, engine.stats())
        });
        let latency = sent.elapsed();
        assert_eq!(got, (opcode::TEXT, text.into_bytes()));
        assert!(latency < PUSH_BOUND, "push {i} took {latency:?} during the flood");
        latencies.push(latency);
    }
    latencies.sort();
    latencies
}

#[test]
fn a_push_reaches_another_socket_of_the_worker_while_one_client_floods_it() {
    let engine = start(|_| {});
    let mut canary = RawWs::connect(addr(&engine), "/websocket/canary");
    let flooder = RawWs::connect(addr(&engine), "/websocket/flooder");
    eventually_eq(TIMEOUT, "connections", 2, || engine.stats().connections);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = flood(flooder.stream().try_clone().unwrap(), stop.clone());
    eventually(TIMEOUT, "the flood reaching the worker", || engine.stats().messages_in > 100_000);

    let before = engine.stats().messages_in;
    let latencies = push_to_canary(&engine, &mut canary);
    let during = engine.stats().messages_in - before;
    stop.store(true, Ordering::Relaxed);
    let end = writer.join().unwrap();
    assert!(end.failed.is_none(), "the flood's writes failed: {:?}", end.failed);
    eprintln!(
        "{PUSHES} pushes during the flood: median {:?}, p99 {:?} (max); {during} flood messages decoded meanwhile",
        latencies[PUSHES / 2],
        latencies[PUSHES - 1],
    );
    assert!(during > 0, "the flood stopped while the canary was pushed to");
    let stats = engine.stats();
    assert_eq!((stats.connections, stats.inbound_rate_limited), (2, 0), "{stats:?}");
}

#[test]
fn a_flooder_over_its_rate_is_closed_and_cut_off_at_its_deadline_while_it_keeps_sending() {
    let engine = start(|c| c.max_inbound_messages_per_second = Some(1000));
    let mut canary = RawWs::connect(addr(&engine), "/websocket/canary");
    let mut flooder = RawWs::connect(addr(&engine), "/websocket/flooder");
    eventually_eq(TIMEOUT, "connections", 2, || engine.stats().connections);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = flood(flooder.stream().try_clone().unwrap(), stop.clone());
    let ending = flooder.read_until_close(|frame| panic!("unexpected frame before the close: {frame:?}"));
    let closed_at = Instant::now();
    assert_eq!(ending, Ending::Close(Some(1008)));
    // Our close frame is the last thing the server sends.
    flooder.read_eof().unwrap();

    // The flooder never answers and never stops: the server ends the connection at the
    // close deadline, which the flooder sees as its writes failing.
    let end = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (failed_at, kind) = end.failed.expect("the server never ended the flooder's connection");
    assert!(
        matches!(kind, io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        "the flood's writes ended with {kind:?}, not the server's reset"
    );
    let cut_off = failed_at.saturating_duration_since(closed_at);
    eprintln!("the flooder was cut off {cut_off:?} after it read the close frame");
    assert!(cut_off < CLOSE_GRACE + Duration::from_millis(1500), "cut off after {cut_off:?}");

    let stats = engine.stats();
    assert_eq!(stats.inbound_rate_limited, 1, "{stats:?}");
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
    let latencies = push_to_canary(&engine, &mut canary);
    assert!(latencies[PUSHES - 1] < PUSH_BOUND);
}
