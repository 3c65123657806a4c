//! Abuse limits: each limit tripped by a client, checking what the client sees (the close
//! code and reason) and the counter.
//!
//! - inbound rate per socket: `max_inbound_messages_per_second` (every frame but the close
//!   counts, pings included) and `max_inbound_bytes_per_second`, token buckets holding one
//!   second's worth: over them, close 1008 "rate limit exceeded", `inbound_rate_limited`;
//! - the node's queued output: `max_node_buffered_bytes`: over it, the sockets write-blocked
//!   the longest are closed first, 1008 "node buffer limit", `node_buffer_disconnects`, and
//!   the output across the node (`buffered_bytes`) stays within the cap plus one message per
//!   socket;
//! - the server's flags, `/stats` and `/metrics` for them.
//!
//! (Inbound message size is `max_message_size`, close 1009: `tests/protocol.rs`.)

#[path = "support.rs"]
mod support;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wspush::{Engine, Message, SlowConsumerPolicy, Stats};

/// The close code and reason of the server's close frame, skipping pings and pongs (and
/// failing on data); the close is answered.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_item(ws, left).await {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            WsMessage::Close(Some(frame)) => {
                let _ = tokio::time::timeout(TIMEOUT, ws.flush()).await;
                return (frame.code.into(), frame.reason.as_str().to_owned());
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The messages the host received from `conn`, once its close has been reported (a
/// worker reports a socket's messages before its close).
fn messages_until_close(events: &mut Events, conn: wspush::ConnectionId) -> (Vec<Vec<u8>>, u16) {
    let code = events.close_of(conn);
    let messages = events
        .drain()
        .into_iter()
        .filter_map(|event| match event {
            Ev::Message { conn: from, data, .. } if from == conn => Some(data),
            _ => None,
        })
        .collect();
    (messages, code)
}

// ---------------------------------------------------------------------------------------
// Inbound rate.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_over_its_message_rate_is_closed_with_1008_and_counted() {
    let (engine, mut events) = start_engine(|c| c.max_inbound_messages_per_second = Some(10));
    let mut flooder = connect_id(addr(&engine), "flooder").await;
    let flooder_conn = events.open("flooder");
    let mut polite = connect_id(addr(&engine), "polite").await;
    let polite_conn = events.open("polite");

    // A burst of one second's worth passes...
    for i in 0..10 {
        send_text(&mut polite, &format!("burst {i}")).await;
    }
    for i in 0..10 {
        assert_eq!(events.message_from(polite_conn).2, format!("burst {i}").into_bytes());
    }
    // ...then the rate does (pacing, not synchronisation: 5 messages at 4 per second).
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        send_text(&mut polite, &format!("paced {i}")).await;
        assert_eq!(events.message_from(polite_conn).2, format!("paced {i}").into_bytes());
    }

    // 30 at once: the 11th is over.
    for i in 0..30 {
        flooder.feed(WsMessage::text(format!("flood {i}"))).await.unwrap();
    }
    flooder.flush().await.unwrap();
    assert_eq!(close_frame(&mut flooder).await, (1008, "rate limit exceeded".to_owned()));
    let (messages, code) = messages_until_close(&mut events, flooder_conn);
    assert_eq!(code, 1008);
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("flood {i}").into_bytes()).collect();
    assert_eq!(messages, expected, "the burst is delivered, nothing after it");
    let stats = engine.stats();
    assert_eq!(stats.inbound_rate_limited, 1, "{stats:?}");
    assert_eq!(stats.messages_in, 25, "{stats:?}");

    // The polite socket is still open and unaffected.
    engine.send("polite", Message::Text("still here")).unwrap();
    assert_eq!(recv_text(&mut polite, TIMEOUT).await, "still here");
    send_text(&mut polite, "and talking").await;
    assert_eq!(events.message_from(polite_conn).2, b"and talking");
    assert_eq!(engine.stats().inbound_rate_limited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_over_its_byte_rate_is_closed_with_1008_and_counted() {
    const RATE: u64 = 64 * 1024;
    let (engine, mut events) = start_engine(|c| c.max_inbound_bytes_per_second = Some(RATE));
    let mut flooder = connect_id(addr(&engine), "flooder").await;
    let flooder_conn = events.open("flooder");
    let mut polite = connect_id(addr(&engine), "polite").await;
    let polite_conn = events.open("polite");

    // 40 KiB now and 40 KiB 700 ms later: 80 KiB, within 64 KiB of burst plus the rate.
    let chunk = vec![b'p'; 40 * 1024];
    send_binary(&mut polite, &chunk).await;
    assert_eq!(events.message_from(polite_conn).2, chunk);
    tokio::time::sleep(Duration::from_millis(700)).await;
    send_binary(&mut polite, &chunk).await;
    assert_eq!(events.message_from(polite_conn).2, chunk);

    // 2 x 48 KiB at once: the first fits the burst, the second is over.
    let big = vec![b'f'; 48 * 1024];
    flooder.feed(WsMessage::binary(big.clone())).await.unwrap();
    flooder.feed(WsMessage::binary(big.clone())).await.unwrap();
    flooder.flush().await.unwrap();
    assert_eq!(close_frame(&mut flooder).await, (1008, "rate limit exceeded".to_owned()));
    let (messages, code) = messages_until_close(&mut events, flooder_conn);
    assert_eq!(code, 1008);
    assert_eq!(messages, vec![big], "only the first message was within the rate");
    assert_eq!(engine.stats().inbound_rate_limited, 1);

    engine.send("polite", Message::Text("still here")).unwrap();
    assert_eq!(recv_text(&mut polite, TIMEOUT).await, "still here");
    assert_eq!(engine.stats().inbound_rate_limited, 1);
}

#[test]
fn a_ping_flood_counts_against_the_message_rate() {
    let (engine, mut events) = start_engine(|c| c.max_inbound_messages_per_second = Some(20));
    let mut ws = RawWs::connect(addr(&engine), "/websocket/pinger");
    let conn = events.open("pinger");
    // 100 pings in one write, so that they arrive together.
    let flood: Vec<u8> =
        (0..100).flat_map(|_| encode_frame(true, opcode::PING, b"p", Some([1, 2, 3, 4]))).collect();
    ws.write_raw(&flood).unwrap();

    let mut pongs = 0;
    let close = loop {
        let frame = ws.read_frame().expect("the server ended the connection without a close frame");
        match frame.opcode {
            opcode::PONG => {
                assert_eq!(frame.payload, b"p");
                pongs += 1;
            }
            opcode::CLOSE => break frame,
            other => panic!("unexpected frame {other:#x}"),
        }
    };
    assert_eq!(pongs, 20, "one second's worth of pings is answered, then the socket is closed");
    assert_eq!(close.close_code(), Some(1008));
    assert_eq!(&close.payload[2..], b"rate limit exceeded");
    ws.send(true, opcode::CLOSE, &1008u16.to_be_bytes()).unwrap();
    ws.read_eof().unwrap();
    assert_eq!(events.close_of(conn), 1008);
    let stats = engine.stats();
    assert_eq!((stats.inbound_rate_limited, stats.messages_in), (1, 0), "{stats:?}");
}

// ---------------------------------------------------------------------------------------
// The node's queued output.

/// The size of each flood message.
const MSG: usize = 64 * 1024;
/// What one socket may hold beyond the node's cap: one message (with its frame header),
/// and a close frame behind it.
const SLACK_PER_SOCKET: u64 = MSG as u64 + 14 + 127;

/// Reads the frames a never-reading client finally reads: whole flood messages, then the
/// close frame; returns its code and reason, after answering it.
fn drain_until_close(ws: &mut RawWs) -> (u16, String) {
    loop {
        let frame = ws.read_frame().expect("the connection ended without a close frame");
        match frame.opcode {
            opcode::CLOSE => {
                let reason = String::from_utf8(frame.payload[2..].to_vec()).unwrap();
                let code = frame.close_code().unwrap();
                ws.send(true, opcode::CLOSE, &code.to_be_bytes()).unwrap();
                return (code, reason);
            }
            opcode::TEXT => {
                assert!(frame.fin && frame.payload.len() == MSG, "a flood message arrived cut");
                assert!(frame.payload.iter().all(|&b| b == b'x'), "a flood message arrived corrupted");
            }
            other => panic!("unexpected frame {other:#x}"),
        }
    }
}

/// Reads every message of a healthy client on a thread, handing them over.
fn healthy_reader(mut ws: RawWs) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        while let Ok((_, payload)) = ws.read_message() {
            if tx.send(payload).is_err() {
                return;
            }
        }
    });
    rx
}

/// Sends `text` to the healthy client and waits until it arrives: the worker (the only
/// one) has then flushed every socket at the end of a pass of its loop.
fn healthy_receives(engine: &Engine, healthy: &mpsc::Receiver<Vec<u8>>, text: &str) {
    engine.send("healthy", Message::Text(text)).unwrap();
    let got = healthy.recv_timeout(TIMEOUT).expect("the healthy reader got nothing");
    assert_eq!(got, text.as_bytes());
}

/// Checks the node's output against the cap.
fn assert_within_cap(stats: &Stats, cap: usize, sockets: u64) {
    let bound = cap as u64 + sockets * SLACK_PER_SOCKET;
    assert!(
        stats.buffered_bytes <= bound,
        "{} bytes queued across the node, over the cap {cap} plus one message for each of {sockets} \
         sockets ({bound}): {stats:?}",
        stats.buffered_bytes
    );
}

/// Sends flood messages to `id` one at a time, each written (what the socket takes) before
/// the next, checking the cap after each, until `done`; returns the stats that satisfied it.
fn fill(
    engine: &Engine,
    healthy: &mpsc::Receiver<Vec<u8>>,
    id: &str,
    sockets: u64,
    cap: usize,
    done: impl Fn(&Stats) -> bool,
) -> Stats {
    let chunk = "x".repeat(MSG);
    let deadline = Instant::now() + TIMEOUT * 3;
    for i in 0..4096 {
        engine.send(id, Message::Text(&chunk)).unwrap();
        // Two round trips: the second pass starts after the first published its totals.
        healthy_receives(engine, healthy, &format!("{id} {i}"));
        healthy_receives(engine, healthy, &format!("{id} {i} again"));
        let stats = engine.stats();
        assert_within_cap(&stats, cap, sockets);
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "filling {id} took too long: {stats:?}");
    }
    panic!("sent 256 MiB to {id} and it never happened: {:?}", engine.stats());
}

#[test]
fn over_the_node_cap_the_longest_blocked_sockets_are_closed_first() {
    const CAP: usize = 8 << 20;
    let (engine, mut events) = start_engine(|c| {
        c.workers = 1; // one worker: the order is exact
        c.max_buffered_bytes = 4 << 20;
        c.max_node_buffered_bytes = Some(CAP);
        c.slow_consumer = SlowConsumerPolicy::Disconnect;
        c.ping_interval = Duration::ZERO;
        c.idle_timeout = Duration::ZERO;
    });
    let healthy = RawWs::connect(addr(&engine), "/websocket/healthy");
    events.open("healthy");
    let healthy = healthy_reader(healthy);
    // Clients that never read; each stops taking output when it is filled below.
    let mut slow = Vec::new();
    for i in 0..5 {
        let ws = RawWs::connect(addr(&engine), &format!("/websocket/slow{i}"));
        slow.push((ws, events.open(&format!("slow{i}"))));
    }
    let sockets = 6;
    let healthy_receives = |text: &str| healthy_receives(&engine, &healthy, text);
    let fill = |id: &str, done: fn(&Stats) -> bool| fill(&engine, &healthy, id, sockets, CAP, done);

    // slow0 and slow1 take 3 MiB of queued output each: 6 of 8 MiB.
    fill("slow0", |s| s.buffered_bytes >= 3 << 20);
    fill("slow1", |s| s.buffered_bytes >= 6 << 20);
    healthy_receives("after slow1");
    // slow2 runs the node out: slow0, blocked the longest, is closed to make room.
    let stats = fill("slow2", |s| s.node_buffer_disconnects > 0);
    assert_eq!((stats.node_buffer_disconnects, stats.slow_consumer_disconnects), (1, 0), "{stats:?}");
    assert_eq!(drain_until_close(&mut slow[0].0), (1008, "node buffer limit".to_owned()));
    assert_eq!(events.close_of(slow[0].1), 1008);
    healthy_receives("after slow0 closed");

    // Then slow1, then slow2, each when the next client runs the node out.
    fill("slow3", |s| s.node_buffer_disconnects > 1);
    assert_eq!(drain_until_close(&mut slow[1].0), (1008, "node buffer limit".to_owned()));
    assert_eq!(events.close_of(slow[1].1), 1008);
    healthy_receives("after slow1 closed");
    fill("slow4", |s| s.node_buffer_disconnects > 2);
    assert_eq!(drain_until_close(&mut slow[2].0), (1008, "node buffer limit".to_owned()));
    assert_eq!(events.close_of(slow[2].1), 1008);
    healthy_receives("after slow2 closed");

    let stats = engine.stats();
    assert_eq!((stats.node_buffer_disconnects, stats.slow_consumer_disconnects), (3, 0), "{stats:?}");
    assert_eq!(stats.connections, 3, "healthy, slow3 and slow4 are open: {stats:?}");
    // What slow3 and slow4 hold is what the node holds.
    assert!(stats.buffered_bytes >= 5 << 20 && stats.buffered_bytes <= CAP as u64, "{stats:?}");
    let closes: Vec<_> =
        events.drain().into_iter().filter(|event| matches!(event, Ev::Close { .. })).collect();
    assert!(closes.is_empty(), "nothing else closed: {closes:?}");
}

#[test]
fn many_clients_that_never_read_cannot_take_more_than_the_node_cap() {
    const CAP: usize = 8 << 20;
    const SLOW: usize = 12;
    let (engine, mut events) = start_engine(|c| {
        c.workers = 2;
        c.max_buffered_bytes = 4 << 20;
        c.max_node_buffered_bytes = Some(CAP);
        c.ping_interval = Duration::ZERO;
        c.idle_timeout = Duration::ZERO;
    });
    let healthy = RawWs::connect(addr(&engine), "/websocket/healthy");
    events.open("healthy");
    let healthy = healthy_reader(healthy);
    let slow: Vec<RawWs> =
        (0..SLOW).map(|i| RawWs::connect(addr(&engine), &format!("/websocket/slow{i}"))).collect();
    for _ in 0..SLOW {
        events.any_open();
    }
    let sockets = SLOW as u64 + 1;

    // Broadcast until half the never-reading clients were closed for the node's sake.
    let chunk = "x".repeat(MSG);
    let deadline = Instant::now() + TIMEOUT * 3;
    let mut rounds = 0;
    let mut peak = 0;
    while engine.stats().node_buffer_disconnects < SLOW as u64 / 2 {
        assert!(Instant::now() < deadline, "the cap never applied: {:?}", engine.stats());
        assert!(rounds < 4096, "broadcast 4096 messages and the cap never applied: {:?}", engine.stats());
        broadcast_counted(&engine, Message::Text(&chunk));
        rounds += 1;
        let stats = engine.stats();
        assert_within_cap(&stats, CAP, sockets);
        peak = peak.max(stats.buffered_bytes);
        // The healthy reader gets every message, whole.
        let got = healthy.recv_timeout(TIMEOUT).expect("the healthy reader stopped receiving");
        assert!(got.len() == MSG && got.iter().all(|&b| b == b'x'), "round {rounds}: a message arrived cut");
    }
    let stats = engine.stats();
    eprintln!("{rounds} broadcasts of 64 KiB to {sockets} sockets, peak {peak} bytes queued: {stats:?}");
    assert!(peak > (CAP as u64) / 2, "the node never filled up: peak {peak}");
    assert_eq!(stats.slow_consumer_disconnects, 0, "{stats:?}");
    engine.send("healthy", Message::Text("still here")).unwrap();
    assert_eq!(healthy.recv_timeout(TIMEOUT).unwrap(), b"still here");
    // Whoever was closed sees 1008 "node buffer limit" once it reads.
    let closed: Vec<_> = events
        .drain()
        .into_iter()
        .filter_map(|event| match event {
            Ev::Close { id, code, .. } => Some((id, code)),
            _ => None,
        })
        .collect();
    assert!(closed.iter().all(|(id, code)| id.starts_with("slow") && *code == 1008), "{closed:?}");
    drop(slow);
}

// ---------------------------------------------------------------------------------------
// The server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_limits_the_message_rate_and_reports_it() {
    let server =
        Server::start(&["--max-inbound-messages-per-second", "5", "--max-node-buffered-bytes", "64MiB"]);
    let mut ws = connect(&server.ws_url("flooder")).await;
    for i in 0..20 {
        ws.feed(WsMessage::text(format!("flood {i}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    assert_eq!(close_frame(&mut ws).await, (1008, "rate limit exceeded".to_owned()));
    let stats = server_stats(&server);
    assert_eq!(stats["inbound_rate_limited"], 1, "{stats}");
    assert_eq!(stats["messages_in"], 5, "{stats}");
    assert_eq!(stats["node_buffer_disconnects"], 0, "{stats}");
    assert!(stats["buffered_bytes"].is_u64(), "{stats}");
    let metrics = server.get("/metrics").text();
    for line in [
        "wspush_inbound_rate_limited_total 1",
        "wspush_node_buffer_disconnects_total 0",
        "wspush_buffered_bytes 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
}

#[test]
fn a_node_cap_below_the_socket_cap_exits_2_naming_it() {
    let out = run_server_binary(&["--max-buffered-bytes", "4MiB", "--max-node-buffered-bytes", "1MiB"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.all().contains("invalid --max-node-buffered-bytes: must be at least"), "{}", out.all());
    let out = run_server_binary(&["--max-inbound-bytes-per-second", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.all().contains("invalid --max-inbound-bytes-per-second"), "{}", out.all());
}
