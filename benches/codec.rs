//! Frame encoding, decoding and unmasking (`wspush::frame`), per payload size.
//!
//! Every message the engine pushes is encoded once (`encode_message`), and every frame a
//! client sends is decoded and unmasked in place. These are the per-byte costs under the
//! engine's throughput: if a 64 KiB payload encodes at a few GB/s, framing is never what
//! limits a node; if small frames cost hundreds of nanoseconds, it is what limits a chatty one.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wspush::frame::{apply_mask, encode, encode_masked, encode_message, Decoder, Frame, OpCode};
use wspush::Message;

/// Payload sizes: a tiny notification, a typical JSON event, a larger document, a bulk blob.
const SIZES: [usize; 4] = [16, 128, 1024, 64 * 1024];

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// ASCII text of `len` bytes (valid UTF-8, so it can be sent as a text message).
fn text(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// Server-side encoding: one allocation plus a copy of the payload, done once per message
/// whatever the number of target sockets.
fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let payload = text(size);
        group.throughput(Throughput::Bytes(size as u64));
        // The raw encoder, as used for any opcode.
        group.bench_with_input(BenchmarkId::new("binary", label(size)), &payload, |b, payload| {
            b.iter(|| encode(OpCode::Binary, black_box(payload.as_bytes())))
        });
        // What `Engine::send` calls: the message-level entry point.
        group.bench_with_input(
            BenchmarkId::new("encode_message_text", label(size)),
            &payload,
            |b, payload| b.iter(|| encode_message(Message::Text(black_box(payload.as_str())))),
        );
    }
    group.finish();
}

/// Decoding one complete masked client frame: header parsing, unmasking in place and, for
/// text, UTF-8 validation. This is what a worker does for every inbound message.
fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        let payload = text(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (name, opcode) in [("text", OpCode::Text), ("binary", OpCode::Binary)] {
            let wire = encode_masked(opcode, payload.as_bytes(), MASK, true);
            let mut buf = wire.clone();
            let mut decoder = Decoder::new(1 << 20);
            // Checked once, outside the timed loop: one call decodes the whole frame.
            match decoder.decode(&mut buf) {
                Ok(Some((consumed, Some(Frame::Message(message))))) => {
                    assert_eq!(consumed, wire.len(), "the whole frame is consumed");
                    assert_eq!(message.is_text(), opcode == OpCode::Text);
                    assert_eq!(message.as_bytes(), payload.as_bytes());
                }
                other => panic!("expected a complete {name} message, got {other:?}"),
            }
            // Decoding unmasks in place, so every iteration needs a fresh copy of the masked
            // frame: the copies are made in untimed setup, a small batch at a time so that
            // they stay in cache (L1 up to 1 KiB, L2 for 64 KiB), as a frame just read from a
            // socket is. The batch amortises the timer's overhead over its iterations.
            let batch = BatchSize::NumIterations(if size > 4096 { 2 } else { 16 });
            group.bench_with_input(BenchmarkId::new(name, label(size)), &wire, |b, wire| {
                let mut decoder = Decoder::new(1 << 20);
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| match decoder.decode(black_box(buf)) {
                        Ok(Some((consumed, Some(frame)))) => {
                            black_box(&frame);
                            consumed
                        }
                        _ => unreachable!("checked above"),
                    },
                    batch,
                )
            });
        }
    }
    group.finish();
}

/// Unmasking alone (XOR with the 4-byte key, 8 bytes at a time): the part of decoding that
/// grows with the payload.
fn bench_unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_mask");
    for size in [128, 4 * 1024, 64 * 1024] {
        let mut buf = text(size).into_bytes();
        group.throughput(Throughput::Bytes(size as u64));
        // Masking is its own inverse, so masking the same buffer over and over is fine.
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), MASK, 0))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode, bench_unmask);
criterion_main!(benches);
