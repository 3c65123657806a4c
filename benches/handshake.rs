//! The WebSocket upgrade (`wspush::handshake`): parsing the HTTP request, computing
//! `Sec-WebSocket-Accept`, writing the `101 Switching Protocols` response.
//!
//! Every connection pays this once, on the acceptor thread, which does it for the whole
//! node. It bounds how fast a node takes a reconnect storm (every client of a restarted node
//! coming back at once): at 2 µs per upgrade one acceptor handles about 500,000 per second
//! before TCP and the kernel are counted.
//!
//! Run with `cargo bench --bench handshake`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wspush::handshake::{accept_key, parse_request, switching_protocols, Limits};

/// The engine's default limits (`Config::default()`: 8 KiB head, 32 headers).
const LIMITS: Limits = Limits { max_header_bytes: 8 * 1024, max_headers: 32 };

/// What Chrome sends to open `new WebSocket("wss://push.example.com/websocket/user-4567?token=…")`
/// from a page of app.example.com (about 560 bytes).
const BROWSER: &str = "GET /websocket/user-4567?token=eyJhbGciOiJIUzI1NiJ9.c3ViNDU2.abc HTTP/1.1\r\n\
Host: push.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// The least a conforming client sends (what the load generator and most libraries send).
const MINIMAL: &str = "GET /websocket/456 HTTP/1.1\r\n\
Host: localhost:8081\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));

    for (name, request) in [("parse_request/browser", BROWSER), ("parse_request/minimal", MINIMAL)] {
        // Checked once, outside the timed loop: the request is a complete, valid upgrade.
        let (parsed, consumed) = parse_request(request.as_bytes(), &LIMITS)
            .expect("a valid upgrade request")
            .expect("a complete request head");
        assert_eq!(consumed, request.len());
        assert_eq!(parsed.key, KEY);
        // Parsing and validating the head (httparse, then the RFC 6455 checks), and copying
        // the headers out for the authorizer: the acceptor's work per connection.
        group.bench_function(name, |b| b.iter(|| parse_request(black_box(request.as_bytes()), &LIMITS)));
    }

    // SHA-1 and base64 of the key: the only cryptography of a plain upgrade.
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    group.bench_function("accept_key", |b| b.iter(|| accept_key(black_box(KEY))));

    // The whole `101` response (which includes `accept_key`).
    let (request, _) = parse_request(MINIMAL.as_bytes(), &LIMITS).unwrap().unwrap();
    assert!(switching_protocols(&request).starts_with(b"HTTP/1.1 101 "));
    group.bench_function("switching_protocols", |b| b.iter(|| switching_protocols(black_box(&request))));

    group.finish();
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
