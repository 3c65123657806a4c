//! Sockets over time: idle timeout and keep-alive pings, the connection limit, the
//! handshake timeout, and shutdown (in-process and by SIGTERM to the server binary).

#[path = "support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wspush::{Error, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_with_1001_after_the_idle_timeout() {
    let (engine, mut events) = start_engine(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.ping_interval = Duration::ZERO;
    });
    let mut ws = connect_id(addr(&engine), "idle").await;
    let conn = events.open("idle");
    assert_eq!(expect_close(&mut ws).await, 1001);
    drop(ws);
    assert_eq!(events.close_of(conn), 1001);
    eventually_eq(TIMEOUT, "idle_timeouts", 1, || engine.stats().idle_timeouts);
    eventually_eq(TIMEOUT, "connections", 0, || engine.stats().connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_answers_pings_outlives_the_idle_timeout() {
    let (engine, mut events) = start_engine(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.ping_interval = Duration::from_millis(250);
    });
    let mut ws = connect_id(addr(&engine), "alive").await;
    events.open("alive");
    // Poll (tungstenite answers each ping) for three idle timeouts.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(WsMessage::Ping(_)))) => pings += 1,
            Ok(other) => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 2, "only {pings} pings in 3 s with a 250 ms interval");
    engine.send("alive", Message::Text("still open")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "still open");
    assert_eq!(engine.stats().idle_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_over_max_connections_gets_503() {
    let (engine, mut events) = start_engine(|c| c.max_connections = Some(2));
    let mut first = connect_id(addr(&engine), "a").await;
    let conn = events.open("a");
    let _second = connect_id(addr(&engine), "b").await;
    events.open("b");

    let head = raw_exchange(addr(&engine), upgrade_request("/websocket/c", "").as_bytes()).unwrap();
    assert_eq!(head.status, 503, "{head:?}");
    eventually_eq(TIMEOUT, "over_capacity", 1, || engine.stats().handshake_failures.over_capacity);

    // Room again once one closes.
    send_close(&mut first, 1000, "").await;
    assert_eq!(expect_close(&mut first).await, 1000);
    drop(first);
    events.close_of(conn);
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
    let _third = connect_id(addr(&engine), "c").await;
    events.open("c");
}

#[test]
fn a_half_sent_upgrade_gets_408_or_closed_after_the_handshake_timeout() {
    let (engine, _events) = start_engine(|c| c.handshake_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(addr(&engine)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /websocket/slowloris HTTP/1.1\r\nHost: localhost\r\nUpgrade: web").unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open past {TIMEOUT:?}: {e}"),
    }
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answered {answer:?}");
    assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(6), "closed only after {elapsed:?}");
    eventually_eq(TIMEOUT, "handshake_failures.timeout", 1, || engine.stats().handshake_failures.timeout);
}

/// `silent` connections that send nothing hold the limit `configure` sets: an upgrade gets
/// `status` until the handshake timeout cuts them off (408), then it is accepted.
fn half_open_connections_hold_the_limit(
    silent: usize,
    configure: impl FnOnce(&mut wspush::Config),
    status: u16,
) {
    let (engine, mut events) = start_engine(|c| {
        c.handshake_timeout = Duration::from_secs(2);
        configure(c);
    });
    let mut held: Vec<TcpStream> = (0..silent).map(|_| connect_raw(addr(&engine)).unwrap()).collect();
    let head = raw_exchange(addr(&engine), upgrade_request("/websocket/late", "").as_bytes()).unwrap();
    assert_eq!(head.status, status, "{head:?}");
    assert_eq!(engine.stats().connections, 0, "nothing was upgraded");

    for stream in &mut held {
        let answer = read_to_close(stream).unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 408 "), "{}", String::from_utf8_lossy(&answer));
    }
    eventually_eq(TIMEOUT, "handshake_failures.timeout", silent as u64, || {
        engine.stats().handshake_failures.timeout
    });
    let head = raw_exchange(addr(&engine), upgrade_request("/websocket/late", "").as_bytes()).unwrap();
    assert_eq!(head.status, 101, "{head:?}");
    events.open("late");
}

#[test]
fn connections_still_in_their_handshake_count_against_max_connections() {
    half_open_connections_hold_the_limit(2, |c| c.max_connections = Some(2), 503);
}

#[test]
fn connections_still_in_their_handshake_count_against_max_connections_per_ip() {
    half_open_connections_hold_the_limit(1, |c| c.max_connections_per_ip = Some(1), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_1001() {
    let (engine, mut events) = start_engine(|_| {});
    let mut sockets = Vec::new();
    for id in ["a", "a", "b", "c", "d"] {
        sockets.push(connect_id(addr(&engine), id).await);
        events.open(id);
    }
    let engine = std::sync::Arc::new(engine);
    let stopper = {
        let engine = std::sync::Arc::clone(&engine);
        std::thread::spawn(move || engine.shutdown(Duration::from_secs(5)))
    };
    for ws in &mut sockets {
        assert_eq!(expect_close(ws).await, 1001);
    }
    drop(sockets); // the clients end their connections, as a browser would
    stopper.join().unwrap();
    let codes: Vec<u16> = events
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Close { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![1001; 5], "Close events after shutdown");
    assert!(matches!(engine.send("a", Message::Text("late")), Err(Error::ShutDown)));
    assert!(matches!(engine.broadcast(Message::Text("late")), Err(Error::ShutDown)));
    // A second shutdown returns at once; the listener is gone.
    engine.shutdown(Duration::from_secs(5));
    let refused = TcpStream::connect(addr(&engine))
        .and_then(|s| RawWs::handshake(s, "/websocket/a").map(|ws| ws.response.status));
    assert!(!matches!(refused, Ok(101)), "upgraded after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_and_the_server_exits_0() {
    let mut server = Server::start(&[]);
    let mut sockets = Vec::new();
    for id in ["x", "x", "y"] {
        sockets.push(connect(&server.ws_url(id)).await);
    }
    wait_connections(&server, 3);
    send_signal(server.pid(), SIGTERM).unwrap();
    for ws in &mut sockets {
        assert_eq!(expect_close(ws).await, 1001);
    }
    drop(sockets);
    let status = server.wait_exit(TIMEOUT).expect("the server did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}\n{}", server.output());
}
