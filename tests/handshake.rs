//! The upgrade: what a client that gets it right receives, and the exact status of every
//! way of getting it wrong, each counted under its reason in `Stats::handshake_failures`.

#[path = "support.rs"]
mod support;

use support::*;
use wspush::{HandshakeFailures, Message};

#[test]
fn upgrade_answers_101_with_the_accept_key_and_the_socket_is_live() {
    let (engine, mut events) = start_engine(|_| {});
    let mut ws = RawWs::connect(addr(&engine), "/websocket/456");

    assert_eq!(ws.response.status, 101, "{:?}", ws.response);
    assert_eq!(ws.response.header("Sec-WebSocket-Accept"), Some(SAMPLE_ACCEPT));
    assert!(ws.response.header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(ws.response.header("Connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    events.open("456");

    assert_eq!(send_counted(&engine, "456", Message::Text("hi")), 1);
    let frame = ws.read_frame().unwrap();
    assert_eq!(frame, Frame { fin: true, opcode: opcode::TEXT, masked: false, payload: b"hi".to_vec() });
    assert_eq!(engine.stats().handshake_failures, HandshakeFailures::default());
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
}

#[test]
fn the_accept_key_is_derived_from_the_clients_key() {
    let (engine, _events) = start_engine(|_| {});
    let key = "x3JJHMbDL1EzLkh9GBhXDw==";
    let request = upgrade_request("/websocket/7", "").replace(SAMPLE_KEY, key);
    let head = raw_exchange(addr(&engine), request.as_bytes()).unwrap();
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("Sec-WebSocket-Accept"), Some(accept_key(key).as_str()));
    assert_eq!(accept_key(SAMPLE_KEY), SAMPLE_ACCEPT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_percent_decoded_and_may_be_128_bytes() {
    let (engine, mut events) = start_engine(|_| {});
    let mut cafe = connect_id(addr(&engine), "caf%C3%A9%20au%20lait").await;
    events.open("café au lait");
    let long = "x".repeat(128);
    let mut longest = connect_id(addr(&engine), &long).await;
    events.open(&long);

    engine.send("café au lait", Message::Text("décaféiné")).unwrap();
    engine.send(&long, Message::Text("long")).unwrap();
    assert_eq!(recv_text(&mut cafe, TIMEOUT).await, "décaféiné");
    assert_eq!(recv_text(&mut longest, TIMEOUT).await, "long");
}

/// Starts an engine, sends `request`, and checks the status and that exactly one failure
/// was counted, under `reason`.
fn refused(request: &[u8], status: u16, reason: fn(&HandshakeFailures) -> u64) -> HttpHead {
    let (engine, mut events) = start_engine(|_| {});
    let head = raw_exchange(addr(&engine), request).unwrap_or_else(|e| panic!("no response: {e}"));
    assert_eq!(head.status, status, "{head:?}");
    eventually_eq(TIMEOUT, "handshake failures", 1, || engine.stats().handshake_failures.total());
    let failures = engine.stats().handshake_failures;
    assert_eq!(reason(&failures), 1, "counted under the wrong reason: {failures:?}");
    assert_eq!(failures.total(), 1, "{failures:?}");
    assert_eq!(engine.stats().connections, 0);
    assert_eq!(events.drain(), vec![], "a refused upgrade raises no event");
    head
}

#[test]
fn wrong_method_is_400() {
    let request = upgrade_request("/websocket/456", "Content-Length: 0\r\n").replacen("GET", "POST", 1);
    refused(request.as_bytes(), 400, |f| f.bad_request);
}

#[test]
fn missing_key_is_400() {
    let request =
        upgrade_request("/websocket/456", "").replace(&format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"), "");
    refused(request.as_bytes(), 400, |f| f.bad_request);
}

#[test]
fn key_that_is_not_16_bytes_of_base64_is_400() {
    let request = upgrade_request("/websocket/456", "").replace(SAMPLE_KEY, "c2hvcnQ=");
    refused(request.as_bytes(), 400, |f| f.bad_request);
}

#[test]
fn missing_upgrade_header_is_400() {
    let request = upgrade_request("/websocket/456", "").replace("Upgrade: websocket\r\n", "");
    refused(request.as_bytes(), 400, |f| f.bad_request);
}

#[test]
fn missing_connection_upgrade_is_400() {
    let request = upgrade_request("/websocket/456", "").replace("Connection: Upgrade\r\n", "");
    refused(request.as_bytes(), 400, |f| f.bad_request);
}

#[test]
fn version_12_is_426_naming_version_13() {
    let request = upgrade_request("/websocket/456", "").replace("Version: 13", "Version: 12");
    let head = refused(request.as_bytes(), 426, |f| f.bad_version);
    assert_eq!(head.header("Sec-WebSocket-Version"), Some("13"), "{head:?}");
}

#[test]
fn id_of_129_bytes_is_400() {
    let request = upgrade_request(&format!("/websocket/{}", "x".repeat(129)), "");
    refused(request.as_bytes(), 400, |f| f.bad_path);
}

#[test]
fn id_that_is_not_utf8_is_400() {
    refused(upgrade_request("/websocket/%FF", "").as_bytes(), 400, |f| f.bad_path);
}

#[test]
fn id_with_an_encoded_slash_is_400() {
    refused(upgrade_request("/websocket/a%2Fb", "").as_bytes(), 400, |f| f.bad_path);
}

#[test]
fn path_outside_the_prefix_is_404() {
    refused(upgrade_request("/other/456", "").as_bytes(), 404, |f| f.bad_path);
}

#[test]
fn head_over_8_kib_is_431() {
    let big = format!("X-Filler: {}\r\n", "a".repeat(10 * 1024));
    refused(upgrade_request("/websocket/456", &big).as_bytes(), 431, |f| f.too_large);
}

#[test]
fn more_than_32_headers_is_431() {
    let many: String = (0..40).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    refused(upgrade_request("/websocket/456", &many).as_bytes(), 431, |f| f.too_large);
}

#[test]
fn garbage_is_400() {
    refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400, |f| f.bad_request);
}
