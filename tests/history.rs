//! History and exact resume on a single node: positions, `wspush.v1` frames, `?since=`
//! replay and its seam with live delivery, the lost signal (`!lost`, close 4410), expiry,
//! the memory cap, flow control of a replay, and the HTTP API's `offset`/`epoch` and
//! `GET /history`. Real sockets, independent clients (tokio-tungstenite, raw TCP).

#[path = "support.rs"]
mod support;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wspush::history::HistoryRead;
use wspush::{Config, Engine, Message, Position};

/// An engine with history on (`size` messages per id) and `configure` applied.
fn history_engine(size: usize, configure: impl FnOnce(&mut Config)) -> Engine {
    let (engine, _events) = start_engine(|config| {
        config.history_size = size;
        configure(config);
    });
    engine
}

/// Sends and waits for the receipt's position.
fn send_positioned(engine: &Engine, id: &str, message: Message<'_>) -> Position {
    let (tx, rx) = mpsc::channel();
    engine
        .send_with_receipt(id, message, move |receipt| {
            let _ = tx.send(receipt.position);
        })
        .expect("send_with_receipt failed");
    rx.recv_timeout(TIMEOUT).expect("no receipt").expect("no position with history on")
}

/// Reads `id`'s history through the engine.
fn read_history(engine: &Engine, id: &str, since: Option<Position>, limit: usize) -> HistoryRead {
    let (tx, rx) = mpsc::channel();
    engine
        .history(id, since, limit, move |read| {
            let _ = tx.send(read);
        })
        .expect("history failed");
    rx.recv_timeout(TIMEOUT).expect("no history answer").expect("history read failed")
}

fn url(addr: SocketAddr, id: &str, since: Option<&str>) -> String {
    match since {
        Some(since) => format!("ws://{addr}/websocket/{id}?since={since}"),
        None => format!("ws://{addr}/websocket/{id}"),
    }
}

/// The next text message of a v1 socket.
async fn recv_v1(ws: &mut Ws) -> String {
    recv_text(ws, TIMEOUT).await
}

/// The close frame's code and reason (answering it).
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match next_item(ws, TIMEOUT).await {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            WsMessage::Close(Some(frame)) => return (frame.code.into(), frame.reason.to_string()),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_exactly_what_it_missed_then_live_v1_and_plain() {
    let engine = history_engine(100, |_| {});
    let addr = addr(&engine);
    let mut ws = connect_v1(&url(addr, "u1", None)).await;
    let start = position_in(&recv_v1(&mut ws).await, "!pos ");
    assert_eq!(start.offset, 0, "an id without history gets a fresh epoch at 0");
    let e = start.epoch;
    for i in 1..=3 {
        assert_eq!(send_positioned(&engine, "u1", Message::Text(&format!("m{i}"))), Position::new(e, i));
        assert_eq!(recv_v1(&mut ws).await, format!("{e}:{i}\nm{i}"));
    }
    drop(ws);
    for i in 4..=6 {
        send_positioned(&engine, "u1", Message::Text(&format!("m{i}")));
    }
    let mut ws = connect_v1(&url(addr, "u1", Some(&format!("{e}:3")))).await;
    for i in 4..=6 {
        assert_eq!(recv_v1(&mut ws).await, format!("{e}:{i}\nm{i}"));
    }
    assert_eq!(recv_v1(&mut ws).await, format!("!pos {e}:6"));
    send_positioned(&engine, "u1", Message::Text("m7"));
    assert_eq!(recv_v1(&mut ws).await, format!("{e}:7\nm7"));

    // A plain client resumes too (its position from elsewhere, e.g. the API's receipt).
    send_positioned(&engine, "u1", Message::Text("m8"));
    send_positioned(&engine, "u1", Message::Binary(b"m9"));
    let mut plain = connect(&url(addr, "u1", Some(&format!("{e}%3A7")))).await;
    assert_eq!(recv_text(&mut plain, TIMEOUT).await, "m8");
    assert_eq!(recv_binary(&mut plain, TIMEOUT).await, b"m9");
    send_positioned(&engine, "u1", Message::Text("m10"));
    assert_eq!(recv_text(&mut plain, TIMEOUT).await, "m10");
    let stats = engine.stats();
    assert_eq!((stats.history_appended, stats.history_resumes, stats.history_replayed), (10, 2, 5));
    assert_eq!(stats.history_lost_signals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_during_a_continuous_stream_gives_every_message_once_in_order() {
    const TOTAL: u64 = 20_000;
    let engine = std::sync::Arc::new(history_engine(TOTAL as usize, |_| {}));
    let addr = addr(&engine);
    let mut ws = connect_v1(&url(addr, "stream", None)).await;
    let mut position = position_in(&recv_v1(&mut ws).await, "!pos ");
    let sender = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for i in 1..=TOTAL {
                engine.send("stream", Message::Text(&i.to_string())).expect("send failed");
                // Paced, so the reconnects fall during the stream, not after it.
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let mut received = Vec::with_capacity(TOTAL as usize);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut reconnects = 0;
    let deadline = Instant::now() + TIMEOUT * 6;
    while (received.len() as u64) < TOTAL {
        assert!(Instant::now() < deadline, "stuck at {} messages", received.len());
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let take = 1 + (seed >> 33) % 1500;
        for _ in 0..take {
            if received.len() as u64 == TOTAL {
                break;
            }
            let text = recv_v1(&mut ws).await;
            if let Some(pos) = text.strip_prefix("!pos ") {
                assert_eq!(pos.parse::<Position>().unwrap(), position, "!pos names where the client is");
                continue;
            }
            assert!(!text.starts_with("!lost"), "history reaches back: {text}");
            let (head, body) = text.split_once('\n').unwrap();
            position = head.parse().unwrap();
            assert_eq!(position.offset.to_string(), body, "offset i carries message i");
            received.push(body.parse::<u64>().unwrap());
        }
        if (received.len() as u64) < TOTAL {
            drop(ws);
            reconnects += 1;
            ws = connect_v1(&url(addr, "stream", Some(&position.to_string()))).await;
        }
    }
    sender.join().unwrap();
    assert!(reconnects >= 10, "only {reconnects} reconnects");
    assert!(received.iter().copied().eq(1..=TOTAL), "not exactly 1..={TOTAL} in order");
    assert_eq!(engine.stats().history_lost_signals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_reach_v1_gets_lost_and_plain_gets_4410() {
    let engine = history_engine(10, |_| {});
    let addr = addr(&engine);
    let e = send_positioned(&engine, "u", Message::Text("1")).epoch;
    for i in 2..=100 {
        send_positioned(&engine, "u", Message::Text(&i.to_string()));
    }
    let mut top = 100;
    for since in ["trimmed", "another epoch", "beyond the top"] {
        let since = match since {
            "trimmed" => format!("{e}:1"),
            "another epoch" => "zzzz9999:5".to_owned(),
            _ => format!("{e}:{}", top + 1),
        };
        let mut ws = connect_v1(&url(addr, "u", Some(&since))).await;
        assert_eq!(recv_v1(&mut ws).await, format!("!lost {e}:{top}"), "since {since}");
        let mut plain = connect(&url(addr, "u", Some(&since))).await;
        assert_eq!(close_of(&mut plain).await, (4410, "history lost, resynchronise".to_owned()));
        top = send_positioned(&engine, "u", Message::Text("live")).offset;
        assert_eq!(recv_v1(&mut ws).await, format!("{e}:{top}\nlive"), "continues live after !lost");
    }
    // 9 messages back is still within reach: nothing lost.
    let top = read_history(&engine, "u", None, 1).page.top;
    let mut ws = connect_v1(&url(addr, "u", Some(&format!("{e}:{}", top - 10)))).await;
    for offset in top - 9..=top {
        assert!(recv_v1(&mut ws).await.starts_with(&format!("{e}:{offset}\n")));
    }
    assert_eq!(recv_v1(&mut ws).await, format!("!pos {e}:{top}"));
    assert_eq!(engine.stats().history_lost_signals, 6);

    // A malformed since is refused before the upgrade.
    let before = engine.stats().handshake_failures.bad_request;
    let request = upgrade_request("/websocket/u?since=nocolon", "");
    let mut stream = connect_raw(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let body = String::from_utf8(read_to_close(&mut stream).unwrap()).unwrap();
    assert!(body.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{body}");
    assert!(
        body.ends_with("\r\n\r\ninvalid since: a position is EPOCH:OFFSET, and this one has no `:`\n"),
        "{body}"
    );
    eventually(TIMEOUT, "the refusal counted", || {
        engine.stats().handshake_failures.bad_request == before + 1
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_off_v1_is_not_selected_and_since_closes_4410() {
    let (engine, _events) = start_engine(|_| {});
    let addr = addr(&engine);
    let request = upgrade_request("/websocket/u", "Sec-WebSocket-Protocol: wspush.v1\r\n");
    let head = raw_exchange(addr, request.as_bytes()).unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header("sec-websocket-protocol"), None, "history off: no positions offered");
    let mut plain = connect(&url(addr, "u", Some("abc:1"))).await;
    assert_eq!(close_of(&mut plain).await, (4410, "history lost, resynchronise".to_owned()));
    assert!(!engine.history_enabled());
    assert!(engine.history("u", None, 1, |_| {}).is_err());
}

/// A raw client of `path` (offering `wspush.v1` when `v1`), for byte-exact frames.
fn raw_client(addr: SocketAddr, path: &str, v1: bool) -> BufReader<std::net::TcpStream> {
    let extra = if v1 { "Sec-WebSocket-Protocol: wspush.v1\r\n" } else { "" };
    let mut stream = connect_raw(addr).unwrap();
    stream.write_all(upgrade_request(path, extra).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_http_head(&mut reader).unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header("sec-websocket-protocol"), v1.then_some("wspush.v1"));
    reader
}

fn read_exact(reader: &mut impl Read, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(
        got,
        expected,
        "{:?} != {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    [&[first, payload.len() as u8][..], payload].concat()
}

#[test]
fn v1_frames_and_plain_frames_are_byte_exact_and_broadcasts_are_live_only() {
    let engine = history_engine(100, |_| {});
    let addr = addr(&engine);
    let mut plain = raw_client(addr, "/websocket/d", false);
    let mut v1 = raw_client(addr, "/websocket/d", true);
    let mut pos = [0u8; 2];
    v1.read_exact(&mut pos).unwrap();
    let mut text = vec![0; usize::from(pos[1])];
    v1.read_exact(&mut text).unwrap();
    let e = position_in(std::str::from_utf8(&text).unwrap(), "!pos ").epoch;
    assert_eq!(pos[0], 0x81);

    send_positioned(&engine, "d", Message::Text("hello"));
    send_positioned(&engine, "d", Message::Binary(&[0, 10, 255]));
    broadcast_counted(&engine, Message::Text("all"));
    // Plain: today's bytes, exactly.
    read_exact(&mut plain, &frame(0x81, b"hello"));
    read_exact(&mut plain, &frame(0x82, &[0, 10, 255]));
    read_exact(&mut plain, &frame(0x81, b"all"));
    // v1: head, newline, body, same opcode; a broadcast has the head `-`.
    read_exact(&mut v1, &frame(0x81, format!("{e}:1\nhello").as_bytes()));
    read_exact(&mut v1, &frame(0x82, &[format!("{e}:2\n").as_bytes(), &[0, 10, 255]].concat()));
    read_exact(&mut v1, &frame(0x81, b"-\nall"));
    // The broadcast is not replayed.
    let mut resumed = raw_client(addr, &format!("/websocket/d?since={e}:0"), true);
    read_exact(&mut resumed, &frame(0x81, format!("{e}:1\nhello").as_bytes()));
    read_exact(&mut resumed, &frame(0x82, &[format!("{e}:2\n").as_bytes(), &[0, 10, 255]].concat()));
    read_exact(&mut resumed, &frame(0x81, format!("!pos {e}:2").as_bytes()));

    // With history off the plain bytes are the same.
    let (off, _events) = start_engine(|_| {});
    let mut plain_off = raw_client(support::addr(&off), "/websocket/d", false);
    send_counted(&off, "d", Message::Text("hello"));
    read_exact(&mut plain_off, &frame(0x81, b"hello"));
}

#[test]
fn the_api_answers_positions_and_reads_history() {
    let server = Server::start(&["--history-size", "5"]);
    let first = json(&server.post("/socket/u1", "a"));
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        first,
        serde_json::json!({"id": "u1", "sockets": 0, "nodes": null, "offset": 1, "epoch": epoch})
    );
    for i in 2..=6 {
        assert_eq!(json(&server.post("/socket/u1", &format!("m{i}")))["offset"], i);
    }
    let binary =
        server.http("POST", "/socket/u1", &[("Content-Type", "application/octet-stream")], &[0, 255]);
    assert_eq!(json(&binary)["offset"], 7);
    let all = json(&server.get("/history/u1"));
    let expected: Vec<serde_json::Value> = (3..=6)
        .map(|i| serde_json::json!({"offset": i, "text": format!("m{i}")}))
        .chain([serde_json::json!({"offset": 7, "binary": "AP8="})])
        .collect();
    assert_eq!(
        all,
        serde_json::json!({"id": "u1", "epoch": epoch, "offset": 7, "recovered": false, "messages": expected})
    );
    let page = json(&server.get(&format!("/history/u1?since={epoch}%3A4&limit=2")));
    assert_eq!(page["recovered"], true);
    assert_eq!(
        page["messages"],
        serde_json::json!([{"offset": 5, "text": "m5"}, {"offset": 6, "text": "m6"}])
    );
    let trimmed = json(&server.get(&format!("/history/u1?since={epoch}:1")));
    assert_eq!(
        (trimmed["recovered"].clone(), trimmed["messages"][0]["offset"].clone()),
        (false.into(), 3.into())
    );
    let fresh = json(&server.get("/history/nobody"));
    assert_eq!((fresh["offset"].clone(), fresh["messages"].clone()), (0.into(), serde_json::json!([])));
    for bad in ["/history/u1?since=x", "/history/u1?limit=0", "/history/u1?limit=1001"] {
        assert_eq!(server.get(bad).status(), 400, "{bad}");
    }
    assert_eq!(server_counter(&server, "history_appended"), 7);

    let off = Server::start(&[]);
    let body = json(&off.post("/socket/u1", "a"));
    assert_eq!(body, serde_json::json!({"id": "u1", "sockets": 0, "nodes": null}), "history off: as before");
    let missing = off.get("/history/u1");
    assert_eq!(missing.status(), 404);
    assert!(json(&missing)["error"].as_str().unwrap().starts_with("history is off on this node"));
}

#[test]
fn history_max_bytes_with_redis_is_refused() {
    let out = run_server_binary(&[
        "--redis",
        "redis://127.0.0.1:1",
        "--history-size",
        "10",
        "--history-max-bytes",
        "1MiB",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.all());
    assert!(
        out.stderr.contains("history_max_bytes with redis: in cluster mode the history is kept in Redis"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_history_expires_and_the_id_starts_a_new_epoch() {
    let engine = history_engine(10, |config| config.history_ttl = Duration::from_secs(1));
    let first = send_positioned(&engine, "t", Message::Text("old"));
    let mut now = read_history(&engine, "t", None, 10);
    let deadline = Instant::now() + TIMEOUT;
    while now.page.epoch == first.epoch {
        assert!(Instant::now() < deadline, "the history did not expire");
        std::thread::sleep(Duration::from_millis(50));
        now = read_history(&engine, "t", None, 10);
    }
    assert_eq!((now.page.top, now.page.entries.len()), (0, 0));
    let next = send_positioned(&engine, "t", Message::Text("new"));
    assert_eq!(next, Position::new(now.page.epoch, 1));
    let mut ws = connect_v1(&url(addr(&engine), "t", Some(&first.to_string()))).await;
    assert_eq!(recv_v1(&mut ws).await, format!("!lost {next}"));
}

#[test]
fn over_the_memory_cap_the_soonest_to_expire_histories_are_evicted() {
    let cap = 4096;
    let engine = history_engine(100, |config| {
        config.workers = 1;
        config.history_max_bytes = cap;
    });
    let body = "x".repeat(100);
    let positions: Vec<Position> =
        (0..20).map(|i| send_positioned(&engine, &format!("id{i}"), Message::Text(&body))).collect();
    let stats = engine.stats();
    assert!(stats.history_evicted > 0, "nothing evicted");
    assert!(stats.history_bytes > 0 && stats.history_bytes <= cap as u64, "{}", stats.history_bytes);
    let last = read_history(&engine, "id19", None, 10);
    assert_eq!((last.page.epoch, last.page.top), (positions[19].epoch, 1), "the newest stays");
    let first = read_history(&engine, "id0", None, 10);
    assert_ne!(first.page.epoch, positions[0].epoch, "the oldest went first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_a_client_that_does_not_read_is_flow_controlled() {
    const COUNT: u64 = 5_000;
    let max_buffered = 64 * 1024;
    let engine = history_engine(COUNT as usize, |config| config.max_buffered_bytes = max_buffered);
    let addr = addr(&engine);
    let body = "y".repeat(1_000);
    let e = send_positioned(&engine, "slow", Message::Text(&body)).epoch;
    for _ in 2..=COUNT {
        engine.send("slow", Message::Text(&body)).unwrap();
    }
    assert_eq!(read_history(&engine, "slow", None, 1).page.top, COUNT);
    // A small receive buffer, and nothing read: the replay must wait for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = url(addr, "slow", Some(&format!("{e}:0"))).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("wspush.v1"));
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    eventually(TIMEOUT, "the replay to stall on the unread socket", || {
        let stats = engine.stats();
        stats.history_replayed > 0 && stats.buffered_bytes > 0
    });
    // Stalled: what it queued stays under half the socket's bound plus one message.
    let stalled = engine.stats();
    assert!(stalled.history_replayed < COUNT, "the whole history went into buffers");
    assert!(stalled.buffered_bytes <= (max_buffered / 2 + 1_100) as u64, "{}", stalled.buffered_bytes);
    assert_eq!(stalled.slow_consumer_disconnects, 0);
    // Reading now gets every message once, in order, then the socket is live.
    for offset in 1..=COUNT {
        let text = recv_v1(&mut ws).await;
        assert_eq!(text.split_once('\n').unwrap().0, format!("{e}:{offset}"));
    }
    assert_eq!(recv_v1(&mut ws).await, format!("!pos {e}:{COUNT}"));
    let stats = engine.stats();
    assert_eq!((stats.history_replayed, stats.slow_consumer_disconnects), (COUNT, 0));
}
