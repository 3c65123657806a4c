//! Outbound: a server frame in, its compressed form out, deflated once per message and
//! window however many sockets it goes to.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::SYNC_TAIL;
use crate::extensions::MAX_WINDOW_BITS;
use crate::frame::{self, OpCode, Rsv};

/// Recent frames remembered with their compressed forms. A message's frame reaches its
/// sockets in one run of the worker, so the last few suffice: a plain and a `wspush.v1`
/// frame of the same message interleave, and a socket here and there has a smaller window.
const REMEMBERED: usize = 4;

/// The smallest window zlib can compress with (raw DEFLATE); a client asking for 8 gets
/// messages of up to 256 bytes compressed and longer ones as they are.
const MIN_DEFLATE_BITS: u8 = 9;

/// A worker's compressor of outbound frames.
///
/// Given an encoded server frame (unmasked, final, text or binary) and the window a socket
/// negotiated, [`compress`](Self::compress) returns the frame to write: compressed (RSV1 set)
/// or, when compressing does not pay, the frame itself. The result is remembered along with
/// the frame it came from (a clone of its `Bytes`, so the buffer cannot be freed and its
/// address reused while remembered): the next socket that gets the same frame with the same
/// window gets the same compressed `Bytes`, without deflating again.
///
/// A message no longer than a socket's window compresses the same whatever the window (no
/// back-reference can reach further than the message), so every socket shares the 15-bit
/// form of such messages; only longer ones are compressed apart per smaller window.
pub(crate) struct FrameCompressor {
    threshold: usize,
    level: Compression,
    /// A raw-DEFLATE compressor per window size, 9 to 15 bits, made when first needed.
    deflaters: [Option<Compress>; (MAX_WINDOW_BITS - MIN_DEFLATE_BITS + 1) as usize],
    remembered: [Option<Remembered>; REMEMBERED],
    next_slot: usize,
}

/// What [`FrameCompressor::compress`] gives one socket.
pub(crate) struct Compressed {
    /// The frame to write: compressed (RSV1 set), or the frame given when that does not pay.
    pub frame: Bytes,
    /// Whether this call ran deflate (the first socket to get the message with its window),
    /// rather than handing out what an earlier call made.
    pub deflated_now: bool,
}

struct Remembered {
    frame: Bytes,
    bits: u8,
    /// `None`: compressing did not pay, the frame goes as it is.
    compressed: Option<Bytes>,
}

impl FrameCompressor {
    /// A compressor deflating at `level` (1 to 9) that leaves payloads shorter than
    /// `threshold` bytes uncompressed.
    pub fn new(threshold: usize, level: u32) -> Self {
        Self {
            threshold,
            level: Compression::new(level),
            deflaters: Default::default(),
            remembered: Default::default(),
            next_slot: 0,
        }
    }

    /// The frame to write to a socket that negotiated permessage-deflate with
    /// `server_max_window_bits` = `window_bits`: `frame` compressed, or `frame` itself when
    /// it is not a data frame, is shorter than the threshold, or would not shrink.
    pub fn compress(&mut self, frame: &Bytes, window_bits: u8) -> Compressed {
        let as_it_is = || Compressed { frame: frame.clone(), deflated_now: false };
        let Some((opcode, payload_start)) = data_frame(frame) else {
            return as_it_is();
        };
        let payload_len = frame.len() - payload_start;
        if payload_len < self.threshold {
            return as_it_is();
        }
        let bits = if payload_len <= 1 << window_bits {
            MAX_WINDOW_BITS
        } else if window_bits >= MIN_DEFLATE_BITS {
            window_bits
        } else {
            return as_it_is();
        };
        let hit = self.remembered.iter().flatten().find(|entry| {
            entry.bits == bits && entry.frame.len() == frame.len() && entry.frame.as_ptr() == frame.as_ptr()
        });
        if let Some(entry) = hit {
            let frame = entry.compressed.clone().unwrap_or_else(|| frame.clone());
            return Compressed { frame, deflated_now: false };
        }
        let compressed = self.deflate(opcode, &frame[payload_start..], bits);
        self.remembered[self.next_slot] =
            Some(Remembered { frame: frame.clone(), bits, compressed: compressed.clone() });
        self.next_slot = (self.next_slot + 1) % REMEMBERED;
        Compressed { frame: compressed.unwrap_or_else(|| frame.clone()), deflated_now: true }
    }

    /// `payload` deflated on its own (no context taken over) into a frame with RSV1 set, or
    /// `None` when the compressed payload would not be shorter.
    fn deflate(&mut self, opcode: OpCode, payload: &[u8], bits: u8) -> Option<Bytes> {
        let level = self.level;
        let deflater = self.deflaters[usize::from(bits - MIN_DEFLATE_BITS)]
            .get_or_insert_with(|| Compress::new_with_window_bits(level, false, bits));
        deflater.reset();
        // Room for the payload and the sync tail: a deflate that needs more does not pay.
        let mut out = Vec::with_capacity(payload.len() + SYNC_TAIL.len());
        let status = deflater.compress_vec(payload, &mut out, FlushCompress::Sync).ok()?;
        let complete = status == Status::Ok
            && deflater.total_in() == payload.len() as u64
            && out.ends_with(&SYNC_TAIL)
            && out.len() < out.capacity();
        if !complete || out.len() - SYNC_TAIL.len() >= payload.len() {
            return None;
        }
        Some(frame::encode_frame(opcode, &out[..out.len() - SYNC_TAIL.len()], Rsv::RSV1))
    }
}

/// The opcode and payload offset of an unfragmented, uncompressed text or binary frame as
/// the server encodes it; `None` for anything else.
fn data_frame(frame: &[u8]) -> Option<(OpCode, usize)> {
    let opcode = match *frame.first()? {
        0x81 => OpCode::Text,
        0x82 => OpCode::Binary,
        _ => return None,
    };
    Some((opcode, frame::server_payload_start(frame)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Inflater;

    fn json(len: usize) -> String {
        let mut text = String::from("{\"items\":[");
        let mut i = 0;
        while text.len() < len - 2 {
            text.push_str(&format!("{{\"id\":{i},\"name\":\"user {i}\",\"online\":true}},"));
            i += 1;
        }
        text.truncate(len - 2);
        text.push_str("]}");
        text
    }

    /// The payload of a compressed server frame, inflated as a client would.
    fn inflate(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0xC1, "FIN, RSV1, text");
        let start = frame::server_payload_start(frame).unwrap();
        Inflater::new().inflate(&frame[start..], 1 << 20).unwrap().to_vec()
    }

    #[test]
    fn a_message_is_deflated_once_for_every_socket_with_the_same_window() {
        let mut compressor = FrameCompressor::new(256, 2);
        let text = json(1024);
        let frame = frame::encode(OpCode::Text, text.as_bytes());
        let first = compressor.compress(&frame, 15);
        assert!(first.deflated_now);
        let first = first.frame;
        assert!(first.len() < frame.len() / 3, "1 KiB of JSON shrinks: {} bytes", first.len());
        assert_eq!(inflate(&first), text.as_bytes());
        for _ in 0..1000 {
            let again = compressor.compress(&frame.clone(), 15);
            assert!(!again.deflated_now);
            assert_eq!(again.frame.as_ptr(), first.as_ptr(), "the same compressed frame is shared");
        }
        // A window of 10 bits (1 KiB) still holds the whole message: shared too.
        let narrower = compressor.compress(&frame, 10);
        assert!(!narrower.deflated_now);
        assert_eq!(narrower.frame.as_ptr(), first.as_ptr());
    }

    #[test]
    fn a_longer_message_is_deflated_apart_for_a_smaller_window_and_never_reaches_past_it() {
        let mut compressor = FrameCompressor::new(0, 2);
        let text = json(4096);
        let frame = frame::encode(OpCode::Text, text.as_bytes());
        let wide = compressor.compress(&frame, 15);
        let narrow = compressor.compress(&frame, 9);
        assert!(wide.deflated_now && narrow.deflated_now, "once per window");
        let (wide, narrow) = (wide.frame, narrow.frame);
        assert_ne!(wide.as_ptr(), narrow.as_ptr());
        // A 512-byte window inflater rejects any reference further back than 512 bytes.
        let start = frame::server_payload_start(&narrow).unwrap();
        let mut out = Vec::with_capacity(8192);
        let mut small = flate2::Decompress::new_with_window_bits(false, 9);
        let mut input = narrow[start..].to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        small.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
        assert_eq!(out, text.as_bytes());
        assert_eq!(inflate(&wide), text.as_bytes());
        // A 256-byte window (8 bits) cannot be compressed for: the frame goes as it is.
        assert_eq!(compressor.compress(&frame, 8).frame.as_ptr(), frame.as_ptr());
        let short = frame::encode(OpCode::Text, json(256).as_bytes());
        assert_eq!(compressor.compress(&short, 8).frame[0], 0xC1, "up to 256 bytes fit any window");
    }

    #[test]
    fn level_two_saves_more_than_the_quick_level_one_on_short_json() {
        let text = json(1024);
        let frame = frame::encode(OpCode::Text, text.as_bytes());
        let size = |level| {
            let compressed = FrameCompressor::new(0, level).compress(&frame, 15).frame;
            assert_eq!(inflate(&compressed), text.as_bytes(), "level {level}");
            compressed.len()
        };
        let sizes: Vec<usize> = (1..=9).map(size).collect();
        // Level 1 is fixed Huffman codes only; 2 builds codes for the message.
        assert!(sizes[1] < sizes[0], "bytes at levels 1 to 9: {sizes:?}");
    }

    #[test]
    fn short_incompressible_and_control_frames_go_as_they_are() {
        let mut compressor = FrameCompressor::new(256, 2);
        let short = frame::encode(OpCode::Text, json(255).as_bytes());
        let kept = compressor.compress(&short, 15);
        assert!(!kept.deflated_now, "below the threshold: not even tried");
        assert_eq!(kept.frame.as_ptr(), short.as_ptr());
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..2048)
            .map(|_| {
                // xorshift64: bytes deflate cannot shrink.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let noise = frame::encode(OpCode::Binary, &random);
        let tried = compressor.compress(&noise, 15);
        assert!(tried.deflated_now);
        assert_eq!(tried.frame.as_ptr(), noise.as_ptr());
        let again = compressor.compress(&noise, 15);
        assert!(!again.deflated_now, "remembered as not worth it");
        assert_eq!(again.frame.as_ptr(), noise.as_ptr());
        let ping = frame::encode(OpCode::Ping, b"");
        assert_eq!(compressor.compress(&ping, 15).frame, ping);
        let close = frame::encode_close(1000, "bye");
        assert_eq!(compressor.compress(&close, 15).frame, close);
    }

    #[test]
    fn frames_of_every_length_class_keep_their_bytes() {
        let mut compressor = FrameCompressor::new(0, 2);
        for len in [0usize, 1, 125, 126, 300, 65_535, 65_536, 200_000] {
            let text = json(len.max(4));
            let frame = frame::encode(OpCode::Text, text.as_bytes());
            let out = compressor.compress(&frame, 15).frame;
            if out[0] == 0xC1 {
                assert_eq!(inflate(&out), text.as_bytes(), "{len}");
            } else {
                assert_eq!(out, frame, "{len}");
            }
        }
    }
}
