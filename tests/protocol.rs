//! RFC 6455 framing as a client sees it: pings answered with the same payload, the close
//! code of every protocol violation, the close handshake, fragments reassembled.

#[path = "support.rs"]
mod support;

use support::*;
use wspush::Message;

/// An engine and one raw, upgraded client on id "p" (whose Open has been seen).
fn raw_client(
    configure: impl FnOnce(&mut wspush::Config),
) -> (wspush::Engine, Events, RawWs, wspush::ConnectionId) {
    let (engine, mut events) = start_engine(configure);
    let ws = RawWs::connect(addr(&engine), "/websocket/p");
    let conn = events.open("p");
    (engine, events, ws, conn)
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let (engine, _events, mut ws, _) = raw_client(|_| {});
    let payload = b"are you there? \x00\xff";
    ws.send(true, opcode::PING, payload).unwrap();
    let pong = ws.read_frame().unwrap();
    assert_eq!(pong, Frame { fin: true, opcode: opcode::PONG, masked: false, payload: payload.to_vec() });

    ws.send(true, opcode::PING, b"").unwrap();
    assert_eq!(ws.read_frame().unwrap().payload, b"");
    // Still a working socket.
    engine.send("p", Message::Text("after pings")).unwrap();
    assert_eq!(ws.read_message().unwrap(), (opcode::TEXT, b"after pings".to_vec()));
}

/// Sends `bytes` on a fresh socket and expects the engine to close it with `code`.
fn violation(configure: impl FnOnce(&mut wspush::Config), bytes: &[u8], code: u16) {
    let (engine, mut events, mut ws, conn) = raw_client(configure);
    ws.write_raw(bytes).unwrap();
    assert_eq!(ws.read_until_close(|f| panic!("unexpected frame {f:?}")), Ending::Close(Some(code)));
    // Answer the close (the engine may already have ended the connection); then it ends.
    let _ = ws.send(true, opcode::CLOSE, &code.to_be_bytes());
    ws.read_eof().unwrap();
    drop(ws);
    assert_eq!(events.close_of(conn), code);
    eventually_eq(TIMEOUT, "protocol_errors", 1, || engine.stats().protocol_errors);
    // Of those, the messages over max_message_size have their own counter.
    assert_eq!(engine.stats().messages_too_big, u64::from(code == 1009));
    eventually_eq(TIMEOUT, "connections", 0, || engine.stats().connections);
}

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    violation(|_| {}, &encode_frame(true, opcode::TEXT, b"not masked", None), 1002);
}

#[test]
fn unknown_opcode_is_closed_with_1002() {
    violation(|_| {}, &encode_frame(true, 0x3, b"", Some([1, 2, 3, 4])), 1002);
}

#[test]
fn reserved_bits_without_an_extension_are_closed_with_1002() {
    let mut frame = encode_frame(true, opcode::TEXT, b"rsv", Some([1, 2, 3, 4]));
    frame[0] |= 0x40;
    violation(|_| {}, &frame, 1002);
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    violation(|_| {}, &encode_frame(true, opcode::TEXT, b"ok \xff\xfe", Some([9, 8, 7, 6])), 1007);
}

#[test]
fn message_over_max_message_size_is_closed_with_1009() {
    let big = vec![b'x'; 2000];
    violation(
        |c| c.max_message_size = 1024,
        &encode_frame(true, opcode::TEXT, &big, Some([1, 1, 1, 1])),
        1009,
    );
}

#[test]
fn fragments_adding_up_over_max_message_size_are_closed_with_1009() {
    let part = vec![b'y'; 600];
    let mut bytes = encode_frame(false, opcode::BINARY, &part, Some([5, 5, 5, 5]));
    bytes.extend(encode_frame(true, opcode::CONTINUATION, &part, Some([5, 5, 5, 5])));
    violation(|c| c.max_message_size = 1024, &bytes, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_1000_is_echoed_with_1000() {
    let (engine, mut events) = start_engine(|_| {});
    let mut ws = connect_id(addr(&engine), "bye").await;
    let conn = events.open("bye");
    send_close(&mut ws, 1000, "done").await;
    assert_eq!(expect_close(&mut ws).await, 1000);
    drop(ws);
    assert_eq!(events.close_of(conn), 1000);
    eventually_eq(TIMEOUT, "connections", 0, || engine.stats().connections);
    assert_eq!(engine.stats().protocol_errors, 0);
}

#[test]
fn raw_close_with_a_code_is_echoed_and_the_connection_ends() {
    let (_engine, mut events, mut ws, conn) = raw_client(|_| {});
    ws.send(true, opcode::CLOSE, &[0x0f, 0xa0, b'b', b'y', b'e']).unwrap(); // 4000 "bye"
    let close = ws.read_frame().unwrap();
    assert_eq!(close.close_code(), Some(4000), "{close:?}");
    ws.read_eof().unwrap();
    // The client keeps its end open: the engine still ends the connection and reports it.
    assert_eq!(events.close_of(conn), 4000);
}

#[test]
fn fragmented_message_with_an_interleaved_ping_is_reassembled() {
    let (engine, mut events, mut ws, conn) = raw_client(|c| c.echo = true);
    ws.send(false, opcode::TEXT, b"Hello, ").unwrap();
    ws.send(true, opcode::PING, b"mid").unwrap();
    ws.send(false, opcode::CONTINUATION, b"Wor").unwrap();
    ws.send(true, opcode::CONTINUATION, "ld! \u{e9}".as_bytes()).unwrap();

    let pong = ws.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload), (opcode::PONG, b"mid".to_vec()));
    assert_eq!(ws.read_message().unwrap(), (opcode::TEXT, "Hello, World! \u{e9}".as_bytes().to_vec()));
    assert_eq!(events.message_from(conn), ("p".to_owned(), true, "Hello, World! \u{e9}".as_bytes().to_vec()));

    // A UTF-8 sequence split across fragments is valid text.
    let e_acute = "\u{e9}".as_bytes();
    ws.send(false, opcode::TEXT, &e_acute[..1]).unwrap();
    ws.send(true, opcode::CONTINUATION, &e_acute[1..]).unwrap();
    assert_eq!(ws.read_message().unwrap(), (opcode::TEXT, e_acute.to_vec()));
    eventually_eq(TIMEOUT, "messages_in", 2, || engine.stats().messages_in);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_returns_text_and_binary_unchanged() {
    let (engine, _events) = start_engine(|c| c.echo = true);
    let mut ws = connect_id(addr(&engine), "echo").await;
    send_text(&mut ws, "echo me").await;
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "echo me");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    send_binary(&mut ws, &data).await;
    assert_eq!(recv_binary(&mut ws, TIMEOUT).await, data);
}
