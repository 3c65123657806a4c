//! The HTTP API's deadlines and connection cap, against the real server binary: a client
//! that sends nothing, half a request head, part of a body, or nothing more after a
//! response is cut off in bounded time, and a flood of such connections cannot keep
//! `/healthz` from answering.

#[path = "support.rs"]
mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// Slack on top of a deadline for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

/// Waits for the server to close `stream`; returns what it sent and when it closed.
fn closed_after(stream: &mut TcpStream, since: Instant) -> (Vec<u8>, Duration) {
    let received = read_to_close(stream).expect("the server kept the connection open");
    (received, since.elapsed())
}

/// `wspush_api_timeouts_total` from `/metrics`.
fn api_timeouts(server: &Server) -> u64 {
    let metrics = server.get("/metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("wspush_api_timeouts_total "))
        .unwrap_or_else(|| panic!("no wspush_api_timeouts_total in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--api-header-timeout", "1s"]);
    let started = Instant::now();
    let mut silent = connect_raw(server.api_addr).unwrap();
    let (received, elapsed) = closed_after(&mut silent, started);
    assert_eq!(received, b"", "nothing is answered to nothing");
    assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "closed only after {elapsed:?}");
    assert_eq!(api_timeouts(&server), 1);
}

#[test]
fn half_a_request_head_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--api-header-timeout", "1s"]);
    let started = Instant::now();
    let mut slow = connect_raw(server.api_addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    let (received, elapsed) = closed_after(&mut slow, started);
    assert_eq!(received, b"");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "closed only after {elapsed:?}");
    assert_eq!(api_timeouts(&server), 1);
}

#[test]
fn a_body_shorter_than_its_content_length_gets_408_after_the_body_timeout() {
    let server = Server::start(&["--api-body-timeout", "1s"]);
    let started = Instant::now();
    let mut stream = connect_raw(server.api_addr).unwrap();
    stream
        .write_all(b"POST /broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_http_head(&mut reader).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(head.status, 408, "{head:?}");
    assert_eq!(head.header("connection"), Some("close"), "{head:?}");
    assert!(elapsed >= Duration::from_millis(900), "answered after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "answered only after {elapsed:?}");
    let rest = read_to_close(&mut reader).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rest),
        r#"{"error":"the body did not arrive within 1s (api_body_timeout)"}"#
    );
    assert_eq!(api_timeouts(&server), 1);
}

#[test]
fn a_chunked_body_that_never_ends_gets_408_after_the_body_timeout() {
    let server = Server::start(&["--api-body-timeout", "1s"]);
    let started = Instant::now();
    let mut stream = connect_raw(server.api_addr).unwrap();
    stream
        .write_all(
            b"POST /socket/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_http_head(&mut reader).unwrap();
    assert_eq!(head.status, 408, "{head:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1) + SLACK,
        "answered only after {:?}",
        started.elapsed()
    );
    read_to_close(&mut reader).unwrap();
}

#[test]
fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    // A long header timeout: only the idle timeout can close it this soon.
    let server = Server::start(&["--api-idle-timeout", "1s", "--api-header-timeout", "30s"]);
    let mut connection = HttpConnection::connect(server.api_addr).unwrap();
    assert_eq!(connection.request("GET", "/healthz", &[], b"").unwrap().status(), 200);
    let answered = Instant::now();
    assert_eq!(connection.read_to_close().unwrap(), b"");
    let elapsed = answered.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "closed only after {elapsed:?}");
    // Closing an idle connection is routine, not a timeout worth counting.
    assert_eq!(api_timeouts(&server), 0);
}

#[test]
fn healthz_answers_while_the_connection_cap_is_held_by_silent_clients() {
    let server = Server::start(&["--api-max-connections", "4", "--api-header-timeout", "1s"]);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..4).map(|_| connect_raw(server.api_addr).unwrap()).collect();
    // The fifth waits in the listen backlog until a silent one is cut off.
    let health = server.get("/healthz");
    let elapsed = started.elapsed();
    assert_eq!(health.status(), 200, "{health:?}");
    assert!(elapsed >= Duration::from_millis(500), "answered after {elapsed:?}: the cap did not hold");
    assert!(elapsed < Duration::from_secs(1) + SLACK, "answered only after {elapsed:?}");
    for stream in &mut silent {
        assert_eq!(read_to_close(stream).unwrap(), b"");
    }
    assert_eq!(api_timeouts(&server), 4);
}

#[test]
fn a_zero_connection_cap_is_refused() {
    let out = run_server_binary(&["--api-max-connections", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains("invalid --api-max-connections: must be at least 1"), "{}", out.all());
}
