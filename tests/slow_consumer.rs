//! A client that never reads costs its own buffer, never the node: over
//! `max_buffered_bytes` it is disconnected with 1008 (policy `disconnect`) or its new
//! messages are dropped (policy `drop`) while the server's memory stays bounded.

#[path = "support.rs"]
mod support;

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use support::*;
use wspush::{Error, Message, SlowConsumerPolicy};

const CHUNK: usize = 16 * 1024;
const LIMIT: usize = 64 * 1024;

/// Checks one frame of the flood: a complete 16 KiB text message of `x`.
fn assert_flood_frame(frame: &Frame) {
    assert!(frame.fin && frame.opcode == opcode::TEXT, "unexpected frame {:?}", (frame.fin, frame.opcode));
    assert_eq!(frame.payload.len(), CHUNK, "a flood message arrived cut");
    assert!(frame.payload.iter().all(|&b| b == b'x'), "a flood message arrived corrupted");
}

/// Sends 16 KiB messages to `id` until `done` says so; panics after 512 MiB or 30 s.
fn flood(engine: &wspush::Engine, id: &str, mut done: impl FnMut() -> bool) -> u64 {
    let chunk = "x".repeat(CHUNK);
    let deadline = Instant::now() + TIMEOUT * 3;
    let mut sent = 0u64;
    while !done() {
        assert!(sent < 512 << 20, "sent {sent} bytes and the policy never applied: {:?}", engine.stats());
        assert!(Instant::now() < deadline, "the policy did not apply in time: {:?}", engine.stats());
        for _ in 0..64 {
            match engine.send(id, Message::Text(&chunk)) {
                Ok(()) => sent += CHUNK as u64,
                Err(Error::QueueFull) => thread::yield_now(),
                Err(e) => panic!("send failed: {e}"),
            }
        }
    }
    sent
}

#[test]
fn a_client_that_never_reads_is_disconnected_with_1008() {
    let (engine, mut events) = start_engine(|c| {
        c.workers = 1; // the healthy socket shares the slow one's worker
        c.max_buffered_bytes = LIMIT;
        c.slow_consumer = SlowConsumerPolicy::Disconnect;
    });
    let mut slow = RawWs::connect(addr(&engine), "/websocket/slow");
    let slow_conn = events.open("slow");
    let mut healthy = RawWs::connect(addr(&engine), "/websocket/healthy");
    events.open("healthy");

    flood(&engine, "slow", || engine.stats().slow_consumer_disconnects > 0);
    assert_eq!(events.close_of(slow_conn), 1008);
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
    let stats = engine.stats();
    assert_eq!((stats.slow_consumer_disconnects, stats.slow_consumer_drops), (1, 0), "{stats:?}");

    // The other socket of the worker is unaffected.
    engine.send("healthy", Message::Text("still here")).unwrap();
    assert_eq!(healthy.read_message().unwrap(), (opcode::TEXT, b"still here".to_vec()));

    // What the slow client finds once it reads: whole messages, then the close (or the end).
    let ending = slow.read_until_close(assert_flood_frame);
    assert!(matches!(ending, Ending::Close(Some(1008)) | Ending::Eof), "ended with {ending:?}");
}

/// Several sends that reach a worker together must not condemn a client that reads: what
/// the socket takes is written before the queue is held to `max_buffered_bytes`. The
/// worker is held (in the event handler) while the burst is queued, so that it handles the
/// whole burst at once, as it does under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_survives_a_burst_a_little_over_the_limit() {
    let engine = wspush::Engine::start(wspush::Config {
        ws_listen: Some(any_port()),
        workers: 1,
        max_buffered_bytes: LIMIT,
        slow_consumer: SlowConsumerPolicy::Disconnect,
        ..wspush::Config::default()
    })
    .unwrap();
    let (held_tx, held) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let (held_tx, release_rx) = (std::sync::Mutex::new(held_tx), std::sync::Mutex::new(release_rx));
    let mut events = Events::attach_with(&engine, move |event| {
        if let wspush::Event::Message { message, .. } = event {
            if message.as_bytes() == b"hold the worker" {
                held_tx.lock().unwrap().send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
            }
        }
    });
    let mut reader = connect_id(addr(&engine), "reader").await;
    events.open("reader");
    let mut gate = connect_id(addr(&engine), "gate").await;
    events.open("gate");

    send_text(&mut gate, "hold the worker").await;
    held.recv_timeout(TIMEOUT).expect("the worker did not handle the gate message");
    let burst = LIMIT / CHUNK + 2; // 96 KiB for a 64 KiB limit
    let chunk = "x".repeat(CHUNK);
    for _ in 0..burst {
        engine.send("reader", Message::Text(&chunk)).unwrap();
    }
    release.send(()).unwrap();

    for i in 0..burst {
        let text = recv_text(&mut reader, TIMEOUT).await;
        assert!(text == chunk, "message {i} of the burst is not the one sent");
    }
    assert_eq!(engine.stats().slow_consumer_disconnects, 0);
}

#[test]
fn drop_policy_counts_drops_and_keeps_the_socket() {
    let (engine, mut events) = start_engine(|c| {
        c.max_buffered_bytes = LIMIT;
        c.slow_consumer = SlowConsumerPolicy::Drop;
    });
    let slow = RawWs::connect(addr(&engine), "/websocket/slow");
    events.open("slow");
    flood(&engine, "slow", || engine.stats().slow_consumer_drops > 100);
    let stats = engine.stats();
    assert_eq!((stats.connections, stats.slow_consumer_disconnects), (1, 0), "{stats:?}");

    let (seen, _slow) = read_until_sentinel(slow, || {
        engine.send("slow", Message::Text("sentinel")).unwrap();
    });
    assert!(seen > 0);
    let events = events.drain();
    assert!(!events.iter().any(|e| matches!(e, Ev::Close { .. })), "the socket was closed: {events:?}");
}

/// Starts reading `ws` (every message must be a whole flood message) and calls `send`
/// every 100 ms until the reader sees the text `sentinel`; returns the number of flood
/// messages read, and the socket (still open).
fn read_until_sentinel(mut ws: RawWs, mut send: impl FnMut()) -> (usize, RawWs) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut seen = 0;
        loop {
            let frame = ws.read_frame().expect("the slow socket failed while draining");
            if frame.payload == b"sentinel" {
                let _ = tx.send((seen, ws));
                return;
            }
            assert_flood_frame(&frame);
            seen += 1;
        }
    });
    let deadline = Instant::now() + TIMEOUT * 3;
    loop {
        assert!(Instant::now() < deadline, "the sentinel never got through after draining");
        send();
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(done) => return done,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the reader failed (see its panic above)"),
        }
    }
}

#[test]
fn server_memory_stays_bounded_while_500_mib_go_to_a_client_that_never_reads() {
    let server = Server::start(&["--max-buffered-bytes", "65536", "--slow-consumer", "drop"]);
    let slow = RawWs::connect(server.ws_addr, "/websocket/slow");
    wait_connections(&server, 1);

    let mut api = HttpConnection::connect(server.api_addr).unwrap();
    let body = vec![b'x'; CHUNK];
    // Warm up the allocator and the API before taking the baseline.
    for _ in 0..200 {
        api.request("POST", "/socket/slow", &[], &body).unwrap();
    }
    let baseline = server.rss_bytes();
    let total: u64 = 500 << 20;
    for i in 0..total / CHUNK as u64 {
        let response = api.request("POST", "/socket/slow", &[], &body).unwrap();
        assert_eq!(response.status(), 200, "request {i}: {response:?}");
    }
    let peak = server.peak_rss_bytes();
    let growth = peak.saturating_sub(baseline);
    eprintln!("baseline RSS {} KiB, peak {} KiB after {} MiB sent", baseline >> 10, peak >> 10, total >> 20);
    assert!(growth < 64 << 20, "peak RSS grew by {} MiB (baseline {} MiB)", growth >> 20, baseline >> 20);

    let stats = server_stats(&server);
    assert!(stats["slow_consumer_drops"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["slow_consumer_disconnects"], 0, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");

    let (seen, _slow) = read_until_sentinel(slow, || {
        let response = server.post("/socket/slow", "sentinel");
        assert_eq!(response.status(), 200, "{response:?}");
    });
    assert!(seen > 0);
}
