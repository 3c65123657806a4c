//! Properties of the frame decoder over random input: what a client encodes (random text
//! and binary messages, cut into random fragments with pings between them, under random
//! masks) decodes back to the same messages however the byte stream is cut into reads;
//! and random bytes never make it panic.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use wspush::frame::{encode_masked, Decoder, OpCode};
use wspush::fuzzing::Outcome as Decoded;

const MAX: usize = 1 << 20;

/// A message as a client sends it.
#[derive(Debug, Clone)]
struct Sent {
    text: bool,
    payload: Vec<u8>,
    /// Where the payload is cut into fragments (sorted, may repeat: empty fragments).
    cuts: Vec<Index>,
    /// One mask per fragment, cycled.
    masks: Vec<[u8; 4]>,
    /// A ping sent after each non-final fragment, when present (cycled).
    pings: Vec<Option<Vec<u8>>>,
}

fn payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        8 => any::<String>().prop_map(|text| (true, text.into_bytes())),
        8 => vec(any::<u8>(), 0..300).prop_map(|data| (false, data)),
        // The 16-bit and 64-bit length classes.
        1 => vec(any::<char>(), 100..20_000)
            .prop_map(|chars| (true, chars.into_iter().collect::<String>().into_bytes())),
        1 => (126usize..70_000, any::<u8>()).prop_map(|(len, seed)| {
            (false, (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect())
        }),
    ]
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        payload(),
        vec(any::<Index>(), 0..5),
        vec(any::<[u8; 4]>(), 1..6),
        vec(proptest::option::of(vec(any::<u8>(), 0..=125)), 1..4),
    )
        .prop_map(|((text, payload), cuts, masks, pings)| Sent { text, payload, cuts, masks, pings })
}

/// The wire bytes of `messages` and what decoding them must give.
fn encode_all(messages: &[Sent]) -> (Vec<u8>, Vec<Decoded>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for message in messages {
        let len = message.payload.len();
        let mut cuts: Vec<usize> = message.cuts.iter().map(|cut| cut.index(len + 1)).collect();
        cuts.sort_unstable();
        cuts.push(len);
        let mut start = 0;
        for (i, &end) in cuts.iter().enumerate() {
            let last = i + 1 == cuts.len();
            let opcode = match (i, message.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let mask = message.masks[i % message.masks.len()];
            wire.extend(encode_masked(opcode, &message.payload[start..end], mask, last));
            if last {
                expected.push(if message.text {
                    Decoded::Text(String::from_utf8(message.payload.clone()).unwrap())
                } else {
                    Decoded::Binary(message.payload.clone())
                });
            } else {
                expected.push(Decoded::Fragment);
                if let Some(ping) = &message.pings[i % message.pings.len()] {
                    wire.extend(encode_masked(OpCode::Ping, ping, mask, true));
                    expected.push(Decoded::Ping(ping.clone()));
                }
            }
            start = end;
        }
    }
    (wire, expected)
}

/// Feeds `wire` in reads of the sizes in `reads` (cycled) as a shard does: append the
/// read to what is pending, decode while frames complete, drop what they consumed. Returns
/// what was decoded up to the first error, that error's close code, and how many bytes the
/// pending buffer and the decoder still held.
fn feed_in_reads(wire: &[u8], reads: &[usize]) -> (Vec<Decoded>, Option<u16>, usize, usize) {
    let mut decoder = Decoder::new(MAX);
    let mut pending = Vec::new();
    let mut decoded = Vec::new();
    let mut reads = reads.iter().cycle();
    let mut fed = 0;
    while fed < wire.len() {
        let size = (*reads.next().unwrap()).clamp(1, wire.len() - fed);
        pending.extend_from_slice(&wire[fed..fed + size]);
        fed += size;
        let mut pos = 0;
        while pos < pending.len() {
            let available = pending.len() - pos;
            match decoder.decode(&mut pending[pos..]) {
                Ok(None) => break,
                Ok(Some((consumed, frame))) => {
                    assert!(consumed > 0 && consumed <= available);
                    decoded.push(Decoded::from(frame));
                    pos += consumed;
                }
                Err(error) => {
                    return (decoded, Some(error.close_code), pending.len() - pos, decoder.buffered_len())
                }
            }
        }
        pending.drain(..pos);
    }
    (decoded, None, pending.len(), decoder.buffered_len())
}

/// [`feed_in_reads`] of a stream of whole frames: everything it holds is decoded, nothing
/// is left over.
fn decode_in_reads(wire: &[u8], reads: &[usize]) -> Result<Vec<Decoded>, u16> {
    let (decoded, error, pending, buffered) = feed_in_reads(wire, reads);
    if let Some(code) = error {
        return Err(code);
    }
    assert_eq!(pending, 0, "{pending} bytes left over");
    assert_eq!(buffered, 0);
    Ok(decoded)
}

fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![Just(vec![usize::MAX]), Just(vec![1]), vec(1usize..16, 1..20), vec(1usize..5000, 1..20),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn what_is_encoded_decodes_back_in_any_reads(messages in vec(sent(), 1..6), reads in reads()) {
        let (wire, expected) = encode_all(&messages);
        prop_assert_eq!(decode_in_reads(&wire, &reads), Ok(expected));
    }

    #[test]
    fn control_frames_between_messages_come_back(
        pings in vec((any::<bool>(), vec(any::<u8>(), 0..=125), any::<[u8; 4]>()), 1..10),
        code in prop_oneof![Just(1000u16), 1007u16..=1011, 3000u16..5000],
        reason in "\\PC{0,30}",
        reads in reads(),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (ping, payload, mask) in &pings {
            let opcode = if *ping { OpCode::Ping } else { OpCode::Pong };
            wire.extend(encode_masked(opcode, payload, *mask, true));
            let payload = payload.clone();
            expected.push(if *ping { Decoded::Ping(payload) } else { Decoded::Pong(payload) });
        }
        let mut close = code.to_be_bytes().to_vec();
        close.extend_from_slice(reason.as_bytes());
        close.truncate(125);
        // Cut at a char boundary, as a sender must.
        let reason = String::from_utf8_lossy(&close[2..]).trim_end_matches('\u{FFFD}').to_owned();
        close.truncate(2 + reason.len());
        wire.extend(encode_masked(OpCode::Close, &close, [1, 2, 3, 4], true));
        expected.push(Decoded::Close(Some(code), reason));
        prop_assert_eq!(decode_in_reads(&wire, &reads), Ok(expected));
    }

    #[test]
    fn invalid_text_fails_with_1007_however_it_arrives(
        before in vec(sent(), 0..3),
        prefix in "\\PC{0,50}",
        bad in prop_oneof![
            Just(vec![0xFFu8]),
            Just(vec![0xC0, 0x80]),
            Just(vec![0xED, 0xA0, 0x80]),
            Just(vec![0xF4, 0x90, 0x80, 0x80]),
        ],
        suffix_len in 0usize..200,
        fragmented in any::<bool>(),
        reads in reads(),
    ) {
        let (mut wire, _) = encode_all(&before);
        let mut payload = prefix.into_bytes();
        payload.extend_from_slice(&bad);
        payload.extend(std::iter::repeat_n(b'x', suffix_len));
        if fragmented {
            wire.extend(encode_masked(OpCode::Text, &payload[..1], [9, 9, 9, 9], false));
            wire.extend(encode_masked(OpCode::Continuation, &payload[1..], [7, 7, 7, 7], true));
        } else {
            wire.extend(encode_masked(OpCode::Text, &payload, [9, 9, 9, 9], true));
        }
        prop_assert_eq!(decode_in_reads(&wire, &reads), Err(1007));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes (biased towards plausible headers) through every check the fuzz
    /// target makes: whole and chunked decoding agree, nothing panics, nothing is
    /// consumed twice or buffered past the maximum.
    #[test]
    fn random_bytes_never_panic(mut bytes in vec(any::<u8>(), 0..400), plausible in any::<bool>()) {
        if plausible && bytes.len() >= 2 {
            bytes[0] &= 0x8F;
            bytes[1] |= 0x80;
        }
        wspush::fuzzing::check_frame_decoder(&bytes);
    }

    /// Valid frames followed by random bytes: the frames still come out, then whatever
    /// the garbage amounts to, without a panic.
    #[test]
    fn garbage_after_valid_frames_never_panics(
        messages in vec(sent(), 1..3),
        garbage in vec(any::<u8>(), 0..200),
        reads in reads(),
    ) {
        let (mut wire, expected) = encode_all(&messages);
        let valid = wire.len();
        wire.extend_from_slice(&garbage);
        let mut decoder = Decoder::new(MAX);
        let mut buf = wire.clone();
        let mut start = 0;
        let mut decoded = Vec::new();
        while let Ok(Some((consumed, frame))) = decoder.decode(&mut buf[start..]) {
            decoded.push(Decoded::from(frame));
            start += consumed;
        }
        prop_assert!(start >= valid);
        prop_assert_eq!(&decoded[..expected.len()], &expected[..]);
        let _ = feed_in_reads(&wire, &reads);
    }
}
