//! The load generator cannot hide a loss: `wspush-bench unicast --via http` runs against a
//! fake server (std threads, just enough RFC 6455 to accept an upgrade and send text frames,
//! and `POST /socket/{id}` on its API) that injects exactly one fault, and the run must exit
//! with status 3 and report exactly that fault: 1 missing, 1 duplicate, 1 misrouted, 1 publish
//! error; a loss "covered" by a copy delivered to an id held by another client process must
//! show as 1 missing and 1 misrouted, not cancel out. The same fake server without a fault
//! gives an exact run (exit 0), so the counts come from the fault and nothing else. The
//! exact run, the loss, the duplicate and the misroute are caught with the tokio-tungstenite
//! client (`--client tungstenite`) too. An API connection that dies mid-run must still give
//! the JSON line, with `publish_failures` 1 and what was not delivered missing, and exit 3.
//!
//! With `--v1` the fake server speaks `wspush.v1` (it selects the subprotocol, sends `!pos
//! e1:0`, then `e1:OFFSET\nBODY` with offsets counted per id): an offset skipped, an offset
//! repeated or a `!lost` must be exactly 1 `position_gaps`, `position_repeats` or
//! `lost_signals`, every body still delivered once; without a fault the v1 run is exact.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Connections in a run, and per client process (so two processes hold the ids).
const CONNECTIONS: u64 = 20;
const PER_PROCESS: u64 = 10;
const MESSAGES: u64 = 200;
/// The publish (0-based) the fault applies to.
const FAULTY: u64 = 57;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The message is not delivered.
    Loss,
    /// The message is delivered twice to its id.
    Duplicate,
    /// The message is delivered to its id and a copy to an id of the other client process.
    Misroute,
    /// The message goes only to an id of the other client process: a loss that a merely
    /// counted delivery elsewhere would hide.
    LossCoveredElsewhere,
    /// The message is delivered but the API answers 500.
    HttpError,
    /// The API connection carrying the message closes instead of delivering or answering it.
    ApiDies,
    /// v1: the message is delivered with an offset one past the next (one offset skipped).
    PositionGap,
    /// v1: the message is delivered with the offset of the one before it.
    PositionRepeat,
    /// v1: `!lost` goes to the id before the message.
    Lost,
}

/// A server frame (unmasked, final) carrying `text`.
fn text_frame(text: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
    match text.len() {
        n if n < 126 => frame.push(n as u8),
        n => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(text);
    frame
}

/// A socket the fake server holds: whether it selected `wspush.v1`, and its id's last offset.
struct Held {
    stream: TcpStream,
    v1: bool,
    offset: u64,
}

type Sockets = Arc<Mutex<HashMap<u64, Held>>>;

/// Starts the fake server; returns its WebSocket and API addresses. Its threads live as long
/// as the test process.
fn fake_server(fault: Fault) -> (SocketAddr, SocketAddr) {
    let sockets: Sockets = Arc::default();
    let ws = TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addrs = (ws.local_addr().unwrap(), api.local_addr().unwrap());
    let held = sockets.clone();
    std::thread::spawn(move || {
        for stream in ws.incoming().flatten() {
            let held = held.clone();
            std::thread::spawn(move || upgrade(stream, &held));
        }
    });
    let publishes = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in api.incoming().flatten() {
            let (sockets, publishes) = (sockets.clone(), publishes.clone());
            std::thread::spawn(move || serve_api(stream, &sockets, &publishes, fault));
        }
    });
    addrs
}

/// Reads an upgrade request for `/websocket/{id}`, answers 101 and keeps the socket for the
/// id; then reads (and drops) what the client sends until it goes.
fn upgrade(mut stream: TcpStream, sockets: &Sockets) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let key = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim().to_owned())
        .expect("a Sec-WebSocket-Key");
    let id: u64 = path.rsplit('/').next().and_then(|id| id.parse().ok()).expect("an id in the path");
    let v1 = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("sec-websocket-protocol")
                && value.split(',').any(|p| p.trim() == "wspush.v1")
        })
    });
    // Held before the answer: once the client saw its 101, a publish to it finds it. The lock
    // is held across the answer, so no frame can go out before it.
    let mut held = sockets.lock().unwrap();
    // The mio client checks the status line only; tungstenite checks the accept key too.
    let accept = wspush::handshake::accept_key(&key);
    let protocol = if v1 { "Sec-WebSocket-Protocol: wspush.v1\r\n" } else { "" };
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    )
    .unwrap();
    if v1 {
        stream.write_all(&text_frame(b"!pos e1:0")).unwrap();
    }
    held.insert(id, Held { stream: stream.try_clone().unwrap(), v1, offset: 0 });
    drop(held);
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).unwrap_or(0) > 0 {}
}

/// Answers `POST /socket/{id}` (keep-alive, pipelined): delivers the body as a text frame to
/// the id's socket before answering, with the fault applied to publish number [`FAULTY`].
fn serve_api(stream: TcpStream, sockets: &Sockets, publishes: &AtomicU64, fault: Fault) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let id: u64 =
            path.strip_prefix("/socket/").and_then(|id| id.parse().ok()).expect("POST /socket/{id}");
        // An id of the other client process.
        let elsewhere = (id + PER_PROCESS) % CONNECTIONS;
        let n = publishes.fetch_add(1, Ordering::SeqCst);
        let fault = if n == FAULTY { fault } else { Fault::None };
        if fault == Fault::ApiDies {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let targets: &[u64] = match fault {
            Fault::None | Fault::HttpError | Fault::ApiDies => &[id],
            Fault::PositionGap | Fault::PositionRepeat | Fault::Lost => &[id],
            Fault::Loss => &[],
            Fault::Duplicate => &[id, id],
            Fault::Misroute => &[id, elsewhere],
            Fault::LossCoveredElsewhere => &[elsewhere],
        };
        for target in targets {
            let mut sockets = sockets.lock().unwrap();
            let socket = sockets.get_mut(target).expect("every id connected before the publishes");
            if !socket.v1 {
                socket.stream.write_all(&text_frame(&body)).unwrap();
                continue;
            }
            match fault {
                Fault::PositionGap => socket.offset += 2,
                Fault::PositionRepeat => {}
                Fault::Lost => {
                    let lost = format!("!lost e1:{}", socket.offset);
                    socket.stream.write_all(&text_frame(lost.as_bytes())).unwrap();
                    socket.offset += 1;
                }
                _ => socket.offset += 1,
            }
            let framed = [format!("e1:{}\n", socket.offset).as_bytes(), &body].concat();
            socket.stream.write_all(&text_frame(&framed)).unwrap();
        }
        let status = if fault == Fault::HttpError { "500 Internal Server Error" } else { "200 OK" };
        write!(writer, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
    }
}

/// Runs `wspush-bench unicast --via http` against a fake server with `fault`, with the mio
/// client; returns the exit code, the JSON line and stderr.
fn run(fault: Fault) -> (Option<i32>, Value, String) {
    run_with(fault, "mio")
}

/// The same with `--client CLIENT`; the JSON line must name it.
fn run_with(fault: Fault, client: &str) -> (Option<i32>, Value, String) {
    run_opts(fault, client, &[])
}

/// The same with more arguments (`--v1`).
fn run_opts(fault: Fault, client: &str, more: &[&str]) -> (Option<i32>, Value, String) {
    let (ws, api) = fake_server(fault);
    let output = Command::new(env!("CARGO_BIN_EXE_wspush-bench"))
        .args(["unicast", "--via", "http", "--quiet", "--stall", "2", "--client", client])
        .args(more)
        .args(["--server-ws", &ws.to_string(), "--server-api", &api.to_string()])
        .args(["--connections", &CONNECTIONS.to_string(), "--per-process", &PER_PROCESS.to_string()])
        .args(["--messages", &MESSAGES.to_string()])
        .output()
        .expect("wspush-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{fault:?}: exit {:?}\n{stdout}{stderr}", output.status.code());
    let line = stdout.lines().last().unwrap_or_else(|| panic!("{fault:?}: no JSON line; stderr:\n{stderr}"));
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(value["client"], client, "{value}");
    (output.status.code(), value, stderr)
}

/// Checks the run reported exactly `expected` (name, count) among its faults, every other
/// fault zero, and exited 3 saying so.
fn assert_caught(fault: Fault, expected: &[(&str, u64)]) {
    assert_caught_with(fault, "mio", expected);
}

fn assert_caught_with(fault: Fault, client: &str, expected: &[(&str, u64)]) {
    assert_caught_opts(fault, client, &[], expected);
}

fn assert_caught_opts(fault: Fault, client: &str, more: &[&str], expected: &[(&str, u64)]) {
    let (code, r, stderr) = run_opts(fault, client, more);
    assert_eq!(code, Some(3), "{fault:?}: an inexact run exits 3: {r}\n{stderr}");
    assert_eq!(r["exact"], false, "{r}");
    let faults = r["faults"].as_object().expect("a faults object");
    for (name, count) in faults {
        let want = expected.iter().find(|(n, _)| n == name).map_or(0, |&(_, c)| c);
        assert_eq!(count.as_u64(), Some(want), "{fault:?}: faults.{name}: {r}");
    }
    for (name, count) in expected {
        assert!(faults.contains_key(*name), "{name} is not reported: {r}");
        // The top-level rows agree (publish_errors, missing, duplicates, misrouted).
        assert_eq!(r[*name], *count, "{fault:?}: {name}: {r}");
    }
    let summary = expected.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ");
    assert!(stderr.contains(&format!("INEXACT run: {summary}")), "{fault:?}: stderr:\n{stderr}");
    assert_eq!(r["connected"], CONNECTIONS, "{r}");
}

#[test]
fn without_a_fault_the_fake_server_gives_an_exact_run() {
    assert_exact("mio");
}

#[test]
fn without_a_fault_the_tungstenite_client_gives_an_exact_run() {
    assert_exact("tungstenite");
}

fn assert_exact(client: &str) {
    let (code, r, stderr) = run_with(Fault::None, client);
    assert_eq!(code, Some(0), "{r}\n{stderr}");
    assert_eq!(r["exact"], true, "{r}");
    assert_eq!(r["deliveries"], MESSAGES, "{r}");
    assert!(r["faults"].as_object().unwrap().values().all(|v| v == 0), "{r}");
    assert_eq!(r["target"], "external", "{r}");
}

#[test]
fn one_lost_message_is_one_missing() {
    assert_caught(Fault::Loss, &[("missing", 1)]);
}

#[test]
fn one_duplicated_message_is_one_duplicate() {
    assert_caught(Fault::Duplicate, &[("duplicates", 1)]);
}

#[test]
fn one_copy_to_another_id_is_one_misrouted() {
    assert_caught(Fault::Misroute, &[("misrouted", 1)]);
}

#[test]
fn a_loss_is_not_hidden_by_a_copy_in_another_client_process() {
    assert_caught(Fault::LossCoveredElsewhere, &[("missing", 1), ("misrouted", 1)]);
}

#[test]
fn a_refused_publish_is_one_publish_error() {
    assert_caught(Fault::HttpError, &[("publish_errors", 1)]);
}

#[test]
fn the_tungstenite_client_counts_one_lost_message_as_one_missing() {
    assert_caught_with(Fault::Loss, "tungstenite", &[("missing", 1)]);
}

#[test]
fn the_tungstenite_client_counts_one_duplicated_message_as_one_duplicate() {
    assert_caught_with(Fault::Duplicate, "tungstenite", &[("duplicates", 1)]);
}

#[test]
fn the_tungstenite_client_counts_one_copy_to_another_id_as_one_misrouted() {
    assert_caught_with(Fault::Misroute, "tungstenite", &[("misrouted", 1)]);
}

#[test]
fn the_tungstenite_client_does_not_hide_a_loss_behind_a_copy_in_another_process() {
    assert_caught_with(Fault::LossCoveredElsewhere, "tungstenite", &[("missing", 1), ("misrouted", 1)]);
}

/// A publishing connection that dies mid-run: the run still prints its JSON line, with the
/// failure and every message it did not deliver counted missing, and exits 3. How many went
/// out on the other connections before the sink gave up depends on the threads' order, so
/// the check is that missing and delivered add up to every message, and at least the one the
/// dead connection took is missing.
#[test]
fn a_publishing_connection_that_dies_is_an_inexact_run_with_its_json_line() {
    let (code, r, stderr) = run(Fault::ApiDies);
    assert_eq!(code, Some(3), "{r}\n{stderr}");
    assert_eq!(r["exact"], false, "{r}");
    assert_eq!(r["faults"]["publish_failures"], 1, "{r}");
    assert!(r["publish_failure"].as_str().is_some_and(|why| !why.is_empty()), "{r}");
    let (missing, delivered) = (r["missing"].as_u64().unwrap(), r["deliveries"].as_u64().unwrap());
    assert!(missing >= 1, "{r}");
    assert_eq!(missing + delivered, MESSAGES, "{r}");
    let others =
        ["duplicates", "misrouted", "unexpected", "connect_failures", "publish_errors", "unexpected_closes"];
    for name in others.into_iter().chain(["bad_frames"]) {
        assert_eq!(r["faults"][name], 0, "{name}: {r}");
    }
    assert_eq!(r["faults"]["missing"], missing, "{r}");
    assert!(stderr.contains("INEXACT run: missing"), "{stderr}");
    assert!(stderr.contains("publish_failures 1"), "{stderr}");
}

#[test]
fn a_v1_run_without_a_fault_is_exact_and_positioned() {
    for client in ["mio", "tungstenite"] {
        let (code, r, stderr) = run_opts(Fault::None, client, &["--v1"]);
        assert_eq!(code, Some(0), "{client}: {r}\n{stderr}");
        assert_eq!(r["exact"], true, "{r}");
        assert_eq!(r["deliveries"], MESSAGES, "{r}");
        assert_eq!(r["pos_signals"], CONNECTIONS, "every socket had its !pos: {r}");
        assert_eq!(r["v1"], true, "{r}");
        assert!(r["faults"].as_object().unwrap().values().all(|v| v == 0), "{r}");
    }
}

#[test]
fn a_skipped_offset_is_one_position_gap() {
    assert_caught_opts(Fault::PositionGap, "mio", &["--v1"], &[("position_gaps", 1)]);
    assert_caught_opts(Fault::PositionGap, "tungstenite", &["--v1"], &[("position_gaps", 1)]);
}

#[test]
fn a_repeated_offset_is_one_position_repeat() {
    assert_caught_opts(Fault::PositionRepeat, "mio", &["--v1"], &[("position_repeats", 1)]);
}

#[test]
fn a_lost_signal_is_a_fault() {
    assert_caught_opts(Fault::Lost, "mio", &["--v1"], &[("lost_signals", 1)]);
}
