//! permessage-deflate (RFC 7692) as a client sees it: what the upgrade answers, pushes
//! compressed once for every socket and inflating to their exact bytes, compressed client
//! messages inflated, and a decompression bomb closed with 1009 and counted. Compression is
//! done here with flate2, as a client would; Autobahn's cases 12 and 13 (scripts/autobahn.sh)
//! check the rest of the RFC against the server.

#[path = "support.rs"]
mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::*;
use wspush::Message;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A raw socket on `id` that offered permessage-deflate (`extra`: the offer's header line).
fn connect_offering(engine: &wspush::Engine, id: &str, extra: &str) -> RawWs {
    let stream = std::net::TcpStream::connect(addr(engine)).unwrap();
    let ws = RawWs::handshake_with(stream, &format!("/websocket/{id}"), extra).unwrap();
    assert_eq!(ws.response.status, 101, "{:?}", ws.response);
    ws
}

/// `data` compressed as a client does: raw DEFLATE, sync flush, the tail removed.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compress.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// A compressed payload inflated as a client does (the tail put back), with a window of
/// `bits`: a reference further back than the window fails.
fn inflate(payload: &[u8], bits: u8) -> Vec<u8> {
    let mut decompress = Decompress::new_with_window_bits(false, bits);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid DEFLATE within the window");
    assert_eq!(decompress.total_in(), input.len() as u64, "all of it inflated");
    out
}

fn json(len: usize) -> String {
    let mut text = String::from("[");
    let mut i = 0;
    while text.len() < len - 1 {
        text.push_str(&format!("{{\"user\":{i},\"status\":\"online\",\"room\":\"lobby\"}},"));
        i += 1;
    }
    text.truncate(len - 1);
    text.push(']');
    text
}

fn compressing(config: &mut wspush::Config) {
    config.compression = true;
    config.workers = 1;
}

#[test]
fn a_push_to_many_sockets_is_deflated_once_and_inflates_to_its_exact_bytes() {
    let (engine, mut events) = start_engine(compressing);
    let mut deflating: Vec<RawWs> =
        (0..20).map(|i| connect_offering(&engine, &format!("d{i}"), OFFER)).collect();
    for ws in &deflating {
        assert_eq!(ws.response.header("sec-websocket-extensions"), Some(ANSWER));
    }
    let mut small_window = connect_offering(
        &engine,
        "w9",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
    );
    assert_eq!(
        small_window.response.header("sec-websocket-extensions"),
        Some(&*format!("{ANSWER}; server_max_window_bits=9"))
    );
    let mut plain = RawWs::connect(addr(&engine), "/websocket/plain");
    assert_eq!(plain.response.header("sec-websocket-extensions"), None);
    for _ in 0..22 {
        events.any_open();
    }

    let text = json(1024);
    assert_eq!(broadcast_counted(&engine, Message::Text(&text)), 22);
    for ws in &mut deflating {
        let (compressed, frame) = ws.read_frame_with_rsv1().unwrap();
        assert!(compressed && frame.fin && frame.opcode == opcode::TEXT);
        assert!(
            frame.payload.len() < text.len() / 3,
            "1 KiB of JSON on the wire: {} bytes",
            frame.payload.len()
        );
        assert_eq!(inflate(&frame.payload, 15), text.as_bytes());
    }
    // A 512-byte window gets its own deflate, which never reaches back further.
    let (compressed, frame) = small_window.read_frame_with_rsv1().unwrap();
    assert!(compressed);
    assert_eq!(inflate(&frame.payload, 9), text.as_bytes());
    assert_eq!(plain.read_message().unwrap(), (opcode::TEXT, text.as_bytes().to_vec()));
    // Once for the 20 sockets with the full window, once for the small one.
    assert_eq!(engine.stats().messages_deflated, 2);

    // Below the threshold (256 bytes): as it is, no deflate.
    engine.send("d0", Message::Text("short")).unwrap();
    let (compressed, frame) = deflating[0].read_frame_with_rsv1().unwrap();
    assert!(!compressed);
    assert_eq!(frame.payload, b"short");
    // A unicast is deflated for its socket; binary as well as text.
    let data = json(4096).into_bytes();
    engine.send("d1", Message::Binary(&data)).unwrap();
    let (compressed, frame) = deflating[1].read_frame_with_rsv1().unwrap();
    assert!(compressed && frame.opcode == opcode::BINARY);
    assert_eq!(inflate(&frame.payload, 15), data);
    assert_eq!(engine.stats().messages_deflated, 3);
}

#[test]
fn a_compressed_client_message_is_inflated_and_its_echo_compressed() {
    let (engine, mut events) = start_engine(|config| {
        compressing(config);
        config.echo = true;
    });
    let mut ws = connect_offering(&engine, "c", OFFER);
    let conn = events.open("c");
    let text = json(2000);
    let mut wire = encode_frame(true, opcode::TEXT, &deflate(text.as_bytes()), Some([1, 2, 3, 4]));
    wire[0] |= 0x40;
    ws.write_raw(&wire).unwrap();
    let (id, is_text, data) = events.message_from(conn);
    assert!(is_text && id == "c");
    assert_eq!(data, text.as_bytes());
    let (compressed, frame) = ws.read_frame_with_rsv1().unwrap();
    assert!(compressed);
    assert_eq!(inflate(&frame.payload, 15), text.as_bytes());
    assert_eq!(engine.stats().bytes_in, text.len() as u64, "counted as inflated");
    // Fragmented: RSV1 on the first frame only.
    let compressed = deflate(b"fragmented and compressed, fragmented and compressed");
    let (first, rest) = compressed.split_at(5);
    let mut wire = encode_frame(false, opcode::TEXT, first, Some([9, 9, 9, 9]));
    wire[0] |= 0x40;
    wire.extend(encode_frame(true, opcode::CONTINUATION, rest, Some([8, 8, 8, 8])));
    ws.write_raw(&wire).unwrap();
    let (_, _, data) = events.message_from(conn);
    assert_eq!(data, b"fragmented and compressed, fragmented and compressed");
}

/// Sends `payload` as a compressed text message on a fresh socket and expects `code`.
fn compressed_violation(
    configure: impl FnOnce(&mut wspush::Config),
    payload: &[u8],
    code: u16,
) -> wspush::Engine {
    let (engine, mut events) = start_engine(configure);
    let mut ws = connect_offering(&engine, "v", OFFER);
    let conn = events.open("v");
    let mut wire = encode_frame(true, opcode::TEXT, payload, Some([1, 2, 3, 4]));
    wire[0] |= 0x40;
    ws.write_raw(&wire).unwrap();
    assert_eq!(ws.read_until_close(|f| panic!("unexpected frame {f:?}")), Ending::Close(Some(code)));
    let _ = ws.send(true, opcode::CLOSE, &code.to_be_bytes());
    assert_eq!(events.close_of(conn), code);
    eventually_eq(TIMEOUT, "protocol_errors", 1, || engine.stats().protocol_errors);
    engine
}

#[test]
fn a_decompression_bomb_gets_1009_and_is_counted() {
    // 64 MiB of zeros in about 64 KiB; the limit is 1 MiB.
    let bomb = deflate(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 << 10, "{}", bomb.len());
    let engine = compressed_violation(
        |config| {
            compressing(config);
            config.max_message_size = 1 << 20;
        },
        &bomb,
        1009,
    );
    let stats = engine.stats();
    assert_eq!((stats.inflated_too_big, stats.messages_too_big, stats.messages_in), (1, 1, 0));
    // The worker goes on serving: a new socket gets its push.
    let mut ws = connect_offering(&engine, "after", OFFER);
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
    engine.send("after", Message::Text("still here")).unwrap();
    assert_eq!(ws.read_frame_with_rsv1().unwrap().1.payload, b"still here");
}

#[test]
fn corrupt_or_non_utf8_compressed_text_gets_1007() {
    let engine = compressed_violation(compressing, &[0xff; 16], 1007);
    assert_eq!(engine.stats().inflated_too_big, 0);
    compressed_violation(compressing, &deflate(&[0xc3, 0x28, 0xa0]), 1007);
}

#[test]
fn with_compression_off_the_offer_is_declined_and_rsv1_is_a_protocol_error() {
    let (engine, mut events) = start_engine(|config| config.workers = 1);
    let mut ws = connect_offering(&engine, "off", OFFER);
    assert_eq!(ws.response.header("sec-websocket-extensions"), None);
    let conn = events.open("off");
    engine.send("off", Message::Text(&json(1024))).unwrap();
    let (compressed, frame) = ws.read_frame_with_rsv1().unwrap();
    assert!(!compressed);
    assert_eq!(frame.payload.len(), 1024);
    let mut wire = encode_frame(true, opcode::TEXT, &deflate(b"hello"), Some([1, 2, 3, 4]));
    wire[0] |= 0x40;
    ws.write_raw(&wire).unwrap();
    assert_eq!(ws.read_until_close(|f| panic!("unexpected frame {f:?}")), Ending::Close(Some(1002)));
    assert_eq!(events.close_of(conn), 1002);
    assert_eq!(engine.stats().messages_deflated, 0);
}
