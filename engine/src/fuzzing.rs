//! Invariant checks used by the fuzz targets (`fuzz/`) and by the seed replay test
//! (`tests/fuzz_corpus.rs`); not a stable API.
//!
//! Each `check_*` function takes arbitrary bytes, runs one of the pure parsers on them in
//! several ways and panics when an invariant does not hold. Keeping them here means the
//! fuzz targets are one-liners and the stable replay of the seed corpus runs exactly the
//! same checks.

use crate::cluster::resp::{self, Push};
use crate::cluster::{compat, envelope};
use crate::frame::{self, close_code, Decoder, Frame, OpCode, Rsv, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::{self, Limits, Rejection};
use crate::{validate_id, Config, Message};

/// `max_message_size` of the decoders that [`check_frame_decoder`] drives.
pub const FRAME_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The path prefix [`check_handshake_parser`] takes ids from (the default one).
const PATH_PREFIX: &str = "/websocket/";

/// What one `decode` call returned, owned so that runs can be compared (also by the
/// frame property tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A non-final fragment was absorbed.
    Fragment,
    /// A whole text message.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: its code and reason.
    Close(Option<u16>, String),
    /// A whole compressed message (RSV1, where allowed): whether text, and its payload.
    Compressed(bool, Vec<u8>),
    /// The decoder failed the connection with this close code.
    Error(u16),
}

impl From<Option<Frame<'_>>> for Outcome {
    fn from(frame: Option<Frame<'_>>) -> Self {
        match frame {
            None => Outcome::Fragment,
            Some(Frame::Message(Message::Text(text))) => Outcome::Text(text.to_owned()),
            Some(Frame::Message(Message::Binary(data))) => Outcome::Binary(data.to_vec()),
            Some(Frame::Ping(data)) => Outcome::Ping(data.to_vec()),
            Some(Frame::Pong(data)) => Outcome::Pong(data.to_vec()),
            Some(Frame::Close { code, reason }) => Outcome::Close(code, reason.to_owned()),
            Some(Frame::Compressed { text, payload }) => Outcome::Compressed(text, payload.to_vec()),
        }
    }
}

/// Everything a decoder made of one input.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    outcomes: Vec<Outcome>,
    /// Input bytes consumed by frames (meaningless after an error).
    consumed: usize,
}

/// Checks one decoded frame against what the RFC and the decoder's documentation promise.
fn outcome_of(frame: Option<Frame<'_>>, max: usize) -> Outcome {
    match &frame {
        None => {}
        Some(Frame::Message(Message::Text(text))) => {
            assert!(text.len() <= max, "a text message of {} bytes is over the maximum {max}", text.len());
            assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "a text message is not UTF-8");
        }
        Some(Frame::Message(Message::Binary(data))) => {
            assert!(data.len() <= max, "a binary message of {} bytes is over the maximum {max}", data.len());
        }
        Some(Frame::Compressed { payload, .. }) => {
            assert!(
                payload.len() <= max,
                "a compressed message of {} bytes is over the maximum {max}",
                payload.len()
            );
        }
        Some(Frame::Ping(data)) => {
            assert!(data.len() <= MAX_CONTROL_PAYLOAD, "a ping payload of {} bytes", data.len());
        }
        Some(Frame::Pong(data)) => {
            assert!(data.len() <= MAX_CONTROL_PAYLOAD, "a pong payload of {} bytes", data.len());
        }
        Some(Frame::Close { code, reason }) => {
            match code {
                Some(code) => assert!(frame::is_valid_close_code(*code), "close code {code} is not valid"),
                None => assert!(reason.is_empty(), "a reason without a close code"),
            }
            assert!(reason.len() <= 123, "a close reason of {} bytes", reason.len());
            assert!(std::str::from_utf8(reason.as_bytes()).is_ok(), "a close reason is not UTF-8");
        }
    }
    Outcome::from(frame)
}

/// Feeds `input` to a new decoder in pieces of the lengths `chunks` yields (the last piece
/// takes whatever is left), exactly as a worker does with its reads: append to the pending
/// bytes, decode while there is input and frames complete, then drop what was consumed.
fn decode_in_chunks(input: &[u8], max: usize, chunks: impl IntoIterator<Item = usize>) -> Run {
    decode_in_chunks_with(Decoder::new(max), input, max, chunks)
}

/// [`decode_in_chunks`] with a given new `decoder` (whose maximum is `max`).
fn decode_in_chunks_with(
    mut decoder: Decoder,
    input: &[u8],
    max: usize,
    chunks: impl IntoIterator<Item = usize>,
) -> Run {
    let mut chunks = chunks.into_iter();
    let mut pending: Vec<u8> = Vec::new();
    let mut outcomes = Vec::new();
    let mut consumed = 0;
    let mut fed = 0;
    while fed < input.len() {
        let size = chunks.next().unwrap_or(usize::MAX).clamp(1, input.len() - fed);
        pending.extend_from_slice(&input[fed..fed + size]);
        fed += size;
        let mut pos = 0;
        while pos < pending.len() {
            let available = pending.len() - pos;
            let result = decoder.decode(&mut pending[pos..]);
            match result {
                Ok(None) => {
                    // Whatever a caller must keep for an incomplete frame is bounded (control
                    // frames, up to 125 bytes, are allowed whatever the maximum).
                    assert!(
                        available < MAX_HEADER_LEN + max.max(MAX_CONTROL_PAYLOAD),
                        "{available} bytes pending for an incomplete frame (max {max})"
                    );
                    break;
                }
                Ok(Some((used, frame))) => {
                    // The smallest client frame is 6 bytes (2 of header, 4 of mask): a
                    // caller looping on `decode` always makes progress.
                    assert!((6..=available).contains(&used), "consumed {used} of {available} bytes");
                    outcomes.push(outcome_of(frame, max));
                    pos += used;
                    consumed += used;
                }
                Err(error) => {
                    assert!(
                        matches!(
                            error.close_code,
                            close_code::PROTOCOL_ERROR
                                | close_code::INVALID_PAYLOAD
                                | close_code::MESSAGE_TOO_BIG
                        ),
                        "unexpected close code in {error:?}"
                    );
                    assert!(error.reason.len() <= 123, "an over-long reason in {error:?}");
                    outcomes.push(Outcome::Error(error.close_code));
                    // The decoder must not be used again.
                    return Run { outcomes, consumed };
                }
            }
            assert!(
                decoder.buffered_len() <= max,
                "{} bytes buffered with a maximum of {max}",
                decoder.buffered_len()
            );
        }
        assert!(decoder.buffered_len() <= max);
        pending.drain(..pos);
    }
    Run { outcomes, consumed }
}

/// Piece lengths cycling through `1 + seeds[i] % modulus` (never empty).
fn chunk_plan(seeds: &[u8], modulus: usize) -> impl Iterator<Item = usize> + '_ {
    let seeds: &[u8] = if seeds.is_empty() { &[0] } else { seeds };
    seeds.iter().cycle().map(move |&b| 1 + usize::from(b) % modulus)
}

/// Decodes `input` whole and in several chunkings with a maximum of `max` and checks
/// that every chunking gives the same frames, the same errors and the same consumption.
/// (Byte by byte and in tiny pieces only for small inputs, to keep the fuzzer fast.)
fn check_decoding(input: &[u8], max: usize) -> Run {
    let whole = decode_in_chunks(input, max, [usize::MAX]);
    let seeds = &input[..input.len().min(8)];
    if input.len() <= 16 * 1024 {
        let small = decode_in_chunks(input, max, chunk_plan(seeds, 8));
        assert_eq!(whole, small, "whole vs small chunks");
    }
    let large = decode_in_chunks(input, max, chunk_plan(seeds, 256));
    assert_eq!(whole, large, "whole vs large chunks");
    if input.len() <= 2048 {
        let bytewise = decode_in_chunks(input, max, std::iter::repeat(1));
        assert_eq!(whole, bytewise, "whole vs byte by byte");
    }
    whole
}

/// Splits `payload` into 1 to 4 fragments at cut points taken from `seeds`.
fn fragment_cuts(payload_len: usize, seeds: &[u8]) -> Vec<usize> {
    let count = seeds.first().map_or(0, |b| usize::from(*b) % 4);
    let mut cuts: Vec<usize> = seeds
        .iter()
        .skip(1)
        .take(count)
        .map(|&b| if payload_len == 0 { 0 } else { usize::from(b) * payload_len / 255 })
        .collect();
    cuts.sort_unstable();
    cuts.push(payload_len);
    cuts
}

/// Encodes `payload` as a client would: one masked frame or several fragments (with a
/// ping after the first), and checks that every chunking decodes it back.
fn check_round_trip(payload: &[u8], text: bool, seeds: &[u8]) {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let mask = |i: usize| -> [u8; 4] {
        let at = |k: usize| seeds.get((i + k) % seeds.len().max(1)).copied().unwrap_or(0x5A);
        [at(0), at(1) ^ 0x3C, at(2), at(3) ^ 0xA5]
    };
    let expected = if text {
        Outcome::Text(String::from_utf8(payload.to_vec()).expect("text round trips are of text"))
    } else {
        Outcome::Binary(payload.to_vec())
    };

    let single = frame::encode_masked(opcode, payload, mask(0), true);
    let run = check_decoding(&single, FRAME_MAX_MESSAGE_SIZE);
    assert_eq!(run, Run { outcomes: vec![expected.clone()], consumed: single.len() }, "single frame");

    let cuts = fragment_cuts(payload.len(), seeds);
    let ping = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut wire = Vec::new();
    let mut outcomes = Vec::new();
    // The same message with RSV1 (compressed): its bytes as they are, never checked as UTF-8.
    let mut compressed_outcomes = Vec::new();
    let compressed = Outcome::Compressed(opcode == OpCode::Text, payload.to_vec());
    let mut start = 0;
    for (i, &end) in cuts.iter().enumerate() {
        let last = i + 1 == cuts.len();
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        wire.extend(frame::encode_masked(op, &payload[start..end], mask(i + 1), last));
        outcomes.push(if last { expected.clone() } else { Outcome::Fragment });
        compressed_outcomes.push(if last { compressed.clone() } else { Outcome::Fragment });
        if i == 0 && !last {
            wire.extend(frame::encode_masked(OpCode::Ping, ping, mask(7), true));
            outcomes.push(Outcome::Ping(ping.to_vec()));
            compressed_outcomes.push(Outcome::Ping(ping.to_vec()));
        }
        start = end;
    }
    let run = check_decoding(&wire, FRAME_MAX_MESSAGE_SIZE);
    assert_eq!(run, Run { outcomes, consumed: wire.len() }, "fragments cut at {cuts:?}");

    // RSV1 on the message's first frame, as permessage-deflate sends it: the same bytes as
    // a compressed message where the extension allows it, 1002 where none does.
    let mut flagged = wire.clone();
    flagged[0] |= Rsv::RSV1.bits();
    let allowing = Decoder::with_allowed_rsv(FRAME_MAX_MESSAGE_SIZE, Rsv::RSV1);
    let allowed = decode_in_chunks_with(allowing, &flagged, FRAME_MAX_MESSAGE_SIZE, chunk_plan(seeds, 256));
    assert_eq!(
        allowed,
        Run { outcomes: compressed_outcomes, consumed: flagged.len() },
        "RSV1 allowed on the first frame"
    );
    let refused = decode_in_chunks(&flagged, FRAME_MAX_MESSAGE_SIZE, [usize::MAX]);
    assert_eq!(refused.outcomes, [Outcome::Error(close_code::PROTOCOL_ERROR)], "RSV1 not allowed");

    // One byte under the message's size, the same message is refused with 1009.
    if !payload.is_empty() {
        let run = decode_in_chunks(&wire, payload.len() - 1, [usize::MAX]);
        assert_eq!(run.outcomes.last(), Some(&Outcome::Error(close_code::MESSAGE_TOO_BIG)));
    }
}

/// The frame decoder: arbitrary input is decoded whole and in chunks derived from its
/// first bytes, with a 64 KiB maximum and with a tiny one, and must give the same result
/// every time without panicking, over-consuming or buffering beyond the maximum; then the
/// input, as the payload of a masked frame and of fragments, must decode back unchanged.
pub fn check_frame_decoder(data: &[u8]) {
    check_decoding(data, FRAME_MAX_MESSAGE_SIZE);
    check_decoding(data, data.first().map_or(0, |&b| usize::from(b)));

    let payload = &data[..data.len().min(FRAME_MAX_MESSAGE_SIZE)];
    let seeds = &data[..data.len().min(8)];
    check_round_trip(payload, false, seeds);
    if let Ok(text) = std::str::from_utf8(payload) {
        check_round_trip(text.as_bytes(), true, seeds);
    }
}

/// The limits of [`Config::default`], as the acceptor builds them.
fn default_limits() -> Limits {
    let config = Config::default();
    Limits { max_header_bytes: config.max_header_bytes, max_headers: config.max_headers }
}

/// Checks one outcome of [`handshake::parse_request`] with `limits` on `data`.
fn check_parse(data: &[u8], limits: &Limits) {
    match handshake::parse_request(data, limits) {
        Ok(None) => {
            assert!(data.len() < limits.max_header_bytes, "{} bytes and still incomplete", data.len());
        }
        Ok(Some((request, consumed))) => {
            assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
            assert!(consumed <= limits.max_header_bytes, "a head of {consumed} bytes");
            assert!(request.headers.len() <= limits.max_headers);
            assert!(request.headers.iter().all(|(name, _)| !name.chars().any(|c| c.is_ascii_uppercase())));
            assert_eq!(request.key.len(), 24, "key {:?}", request.key);
            if let Ok(id) = handshake::id_from_target(&request.target, PATH_PREFIX) {
                assert!(validate_id(&id).is_ok(), "id_from_target gave the invalid id {id:?}");
            }
            let response = handshake::switching_protocols(&request);
            assert!(response.ends_with(b"\r\n\r\n"));
            let (accepted, extensions) = handshake::accept(&request, None, false);
            assert!(extensions.is_empty(), "an extension accepted with compression off");
            assert_eq!(accepted, response, "accepting without extensions changed the 101");
            assert_eq!(extensions.allowed_rsv(), Rsv::NONE);
            let (accepted, extensions) = handshake::accept(&request, None, true);
            match extensions.deflate_window_bits() {
                None => assert_eq!(accepted, response, "accepting without extensions changed the 101"),
                Some(bits) => {
                    assert!((8..=15).contains(&bits), "window of {bits} bits");
                    assert_eq!(extensions.allowed_rsv(), Rsv::RSV1);
                    let head = String::from_utf8(accepted).expect("the 101 is text");
                    assert!(head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; "), "{head}");
                }
            }
            // The head alone parses to the same request, and one byte less is incomplete.
            let again = handshake::parse_request(&data[..consumed], limits);
            assert_eq!(again, Ok(Some((request, consumed))), "the head alone");
            assert_eq!(
                handshake::parse_request(&data[..consumed - 1], limits),
                Ok(None),
                "the head less a byte"
            );
        }
        Err(rejection) => check_rejection(&rejection),
    }
}

/// A rejection's response is one HTTP head and a one-line body, whatever its detail.
fn check_rejection(rejection: &Rejection) {
    let response = String::from_utf8(rejection.response()).expect("responses are UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response has a head");
    assert!(head.starts_with(&format!("HTTP/1.1 {} ", rejection.status())), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{response:?}");
    assert!(body.ends_with('\n') && body.matches(['\n', '\r']).count() == 1, "body {body:?}");
}

/// The upgrade request parser: with the default limits and with tiny ones, a request is
/// accepted only within the limits, consumes at most its input, parses the same from its
/// head alone, and gives an id (if any) that is valid; a rejection's response is well
/// formed. [`handshake::id_from_target`] and [`handshake::since_from_target`] are also run on
/// the input as a target: a `since` it accepts prints back to a position that parses to the
/// same, with an offset under 2^53.
pub fn check_handshake_parser(data: &[u8]) {
    check_parse(data, &default_limits());
    check_parse(data, &Limits { max_header_bytes: 256, max_headers: 4 });

    let target = String::from_utf8_lossy(data);
    match handshake::id_from_target(&target, PATH_PREFIX) {
        Ok(id) => assert!(validate_id(&id).is_ok(), "id_from_target gave the invalid id {id:?}"),
        Err(rejection) => check_rejection(&rejection),
    }
    match handshake::since_from_target(&target) {
        Ok(Some(since)) => {
            assert!(since.offset <= crate::history::MAX_OFFSET, "offset {} over 2^53", since.offset);
            let printed = since.to_string();
            assert_eq!(printed.parse::<crate::Position>(), Ok(since), "{printed:?} does not parse back");
        }
        Ok(None) => {
            let asked = target
                .split_once('?')
                .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("since=")));
            assert!(!asked, "since missed in {target:?}");
        }
        Err(rejection) => {
            assert!(matches!(rejection, Rejection::BadSince(_)), "{rejection:?}");
            check_rejection(&rejection);
        }
    }
}

/// The Redis envelope (versions 1 and 2): decoding never panics, a decoded envelope encodes
/// back to exactly the input, and an envelope built from parts of the input (with and
/// without a position) decodes to those parts.
pub fn check_envelope_decoder(data: &[u8]) {
    if let Ok(decoded) = envelope::decode(data) {
        assert!((1..=envelope::MAX_NODE_ID_LEN).contains(&decoded.origin.len()));
        let encoded = match decoded.position {
            None => envelope::encode(decoded.origin, decoded.message),
            Some(position) => envelope::encode_positioned(decoded.origin, decoded.message, position),
        };
        assert_eq!(encoded, data, "encode(decode(x)) != x");
    }

    // The first byte (1 to 64) says how much of the rest is the origin.
    let Some((&first, rest)) = data.split_first() else { return };
    let origin_len = 1 + usize::from(first) % envelope::MAX_NODE_ID_LEN;
    let Some(origin) = rest.get(..origin_len).and_then(|origin| std::str::from_utf8(origin).ok()) else {
        return;
    };
    let body = &rest[origin_len..];
    let mut messages = vec![Message::Binary(body)];
    if let Ok(text) = std::str::from_utf8(body) {
        messages.push(Message::Text(text));
    }
    for message in messages {
        let encoded = envelope::encode(origin, message);
        let expected = envelope::Envelope { origin, message, position: None };
        assert_eq!(envelope::decode(&encoded), Ok(expected), "{encoded:?}");
        // The same parts with a position made of the first bytes of the body.
        let epoch_len = 1 + usize::from(first) % crate::history::MAX_EPOCH_LEN;
        let epoch: String = body
            .iter()
            .take(epoch_len)
            .map(|&b| if b.is_ascii_alphanumeric() { b as char } else { 'x' })
            .collect();
        let offset = body.iter().fold(0u64, |o, &b| o.wrapping_mul(31).wrapping_add(u64::from(b)));
        if let Ok(epoch) = epoch.parse() {
            let position = crate::history::Position::new(epoch, offset % (crate::history::MAX_OFFSET + 1));
            let encoded = envelope::encode_positioned(origin, message, position);
            let expected = envelope::Envelope { origin, message, position: Some(position) };
            assert_eq!(envelope::decode(&encoded), Ok(expected), "{encoded:?}");
        }
    }
}

/// The compat JSON format: decoding never panics, gives a valid id, and what it gives
/// encodes and decodes back unchanged; `decode(encode(key, value, origin))` round-trips for
/// parts of the input (split at newlines) whenever the key is a valid id.
pub fn check_compat_decoder(data: &[u8]) {
    if let Ok(message) = compat::decode(data) {
        assert!(validate_id(&message.key).is_ok(), "decode gave the invalid key {:?}", message.key);
        let origin = message.origin.clone().unwrap_or_else(|| "node".into());
        let encoded = compat::encode(&message.key, &message.value, &origin);
        let again = compat::decode(&encoded);
        assert_eq!(again, Ok(compat::CompatMessage { origin: Some(origin), ..message }));
    }

    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let key = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    let origin = parts.next().unwrap_or_default();
    if validate_id(key).is_ok() {
        let encoded = compat::encode(key, value, origin);
        let decoded = compat::decode(&encoded);
        let expected =
            compat::CompatMessage { key: key.into(), value: value.into(), origin: Some(origin.into()) };
        assert_eq!(decoded, Ok(expected), "{}", String::from_utf8_lossy(&encoded));
    }
}

/// The subscriber's RESP parser: never panics; a reply it parses is consumed whole (at least
/// one byte, no more than given), is the same with more bytes behind it, and any cut of it
/// asks for more rather than giving something else; and a `message` built from parts of the
/// input (split at the first newline) parses back to those parts.
pub fn check_resp_parser(data: &[u8]) {
    if let Ok(Some((push, used))) = resp::parse(data) {
        assert!(used > 0 && used <= data.len(), "consumed {used} of {}", data.len());
        let mut longer = data[..used].to_vec();
        longer.extend_from_slice(b"*3\r\n");
        assert_eq!(resp::parse(&longer), Ok(Some((push, used))), "trailing bytes changed the reply");
        for cut in 0..used {
            assert_eq!(resp::parse(&data[..cut]), Ok(None), "a reply cut at {cut} of {used}");
        }
    }

    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (channel, payload) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let mut encoded = Vec::new();
    resp::command(&mut encoded, &[b"message", channel, payload]);
    assert_eq!(
        resp::parse(&encoded),
        Ok(Some((Push::Message { channel, payload }, encoded.len()))),
        "{}",
        String::from_utf8_lossy(&encoded)
    );
}
