//! `TlsStream` against a real rustls client over loopback TCP: what the `wss://`
//! integration tests cannot arrange (a record split across reads, a caller's buffer smaller
//! than a record, a full socket) and what they cannot see (the buffers a connection keeps).

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore};

use super::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// A server `TlsStream` and a rustls client, connected and past the handshake.
struct Pair {
    poll: Poll,
    events: Events,
    server: TlsStream,
    client: ClientConnection,
    client_tcp: TcpStream,
    /// Plaintext the client received.
    received: Vec<u8>,
    /// The client read the server's close_notify.
    client_closed: bool,
    /// What failed the client's side (an alert from the server).
    client_error: Option<rustls::Error>,
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    configs_with(rustls::DEFAULT_VERSIONS)
}

/// A server configuration and a client's that trusts it, the client offering `versions`.
fn configs_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = crate::tls::provider();
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// `stream` non-blocking for mio, its kernel send buffer `send_buffer` bytes if given (a
/// socket that fills quickly; the receiver's buffer stays as it is, or a small window stalls
/// loopback TCP on its persist timer).
fn non_blocking(stream: std::net::TcpStream, send_buffer: Option<usize>) -> TcpStream {
    if let Some(size) = send_buffer {
        socket2::SockRef::from(&stream).set_send_buffer_size(size).unwrap();
    }
    // As the acceptor sets it; and without it, small writes into a small socket wait for
    // delayed acknowledgements.
    stream.set_nodelay(true).unwrap();
    stream.set_nonblocking(true).unwrap();
    TcpStream::from_std(stream)
}

impl Pair {
    fn new() -> Pair {
        Pair::with_send_buffer(None)
    }

    fn with_send_buffer(send_buffer: Option<usize>) -> Pair {
        let (server_config, client_config) = configs();
        Pair::with(server_config, client_config, send_buffer)
    }

    fn with_configs(server_config: Arc<ServerConfig>, client_config: Arc<ClientConfig>) -> Pair {
        Pair::with(server_config, client_config, None)
    }

    fn with(
        server_config: Arc<ServerConfig>,
        client_config: Arc<ClientConfig>,
        send_buffer: Option<usize>,
    ) -> Pair {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client_std = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_std, _) = listener.accept().unwrap();
        let poll = Poll::new().unwrap();
        let mut server = TlsStream::new(server_config, non_blocking(server_std, send_buffer)).unwrap();
        let mut client_tcp = non_blocking(client_std, None);
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(server.tcp_mut(), Token(0), both).unwrap();
        poll.registry().register(&mut client_tcp, Token(1), both).unwrap();
        let client = ClientConnection::new(client_config, "localhost".try_into().unwrap()).unwrap();
        let mut pair = Pair {
            poll,
            events: Events::with_capacity(8),
            server,
            client,
            client_tcp,
            received: Vec::new(),
            client_closed: false,
            client_error: None,
        };
        pair.drive("the handshake", |p| {
            assert_would_block(p.server.read(&mut [0; 64]));
            !p.server.is_handshaking() && !p.client.is_handshaking()
        });
        pair
    }

    /// Runs the client's side, then `step` (the server's side), until `step` says done;
    /// waits for either socket between turns.
    fn drive(&mut self, what: &str, mut step: impl FnMut(&mut Pair) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.client_io();
            if step(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {what} (the client received {}, the server holds {} to send, the client's error: {:?})",
                self.received.len(),
                self.outgoing_held(),
                self.client_error,
            );
            self.poll.poll(&mut self.events, Some(Duration::from_millis(20))).unwrap();
        }
    }

    /// The client writes what it has and reads all the socket holds.
    fn client_io(&mut self) {
        while self.client.wants_write() {
            match self.client.write_tls(&mut self.client_tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("the client's write: {e}"),
            }
        }
        while self.client_error.is_none() {
            match self.client.read_tls(&mut self.client_tcp) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("the client's read: {e}"),
            }
            if let Err(e) = self.client.process_new_packets() {
                self.client_error = Some(e);
                return;
            }
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.client.reader().read(&mut chunk) {
                    Ok(0) => {
                        self.client_closed = true;
                        break;
                    }
                    Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("the client's plaintext: {e}"),
                }
            }
        }
    }

    /// `records` onto the client's socket as they are (a loopback socket takes a few).
    fn client_sends_raw(&mut self, records: &[u8]) {
        assert_eq!(self.client_tcp.write(records).unwrap(), records.len());
    }

    /// The client's `plaintext` as TLS records, not yet sent.
    fn client_seals(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.client.writer().write_all(plaintext).unwrap();
        let mut records = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut records).unwrap();
        }
        records
    }

    /// Reads the server until `WouldBlock`, `buf_len` bytes at a time, into `into`.
    fn server_reads(&mut self, buf_len: usize, into: &mut Vec<u8>) {
        let mut buf = vec![0u8; buf_len];
        loop {
            match self.server.read(&mut buf) {
                Ok(0) => panic!("the server read the end"),
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("the server's read: {e}"),
            }
        }
    }

    /// A message each way, checked; the server's end is idle after it.
    fn exchange(&mut self) {
        let records = self.client_seals(b"ping from the client");
        self.client_sends_raw(&records);
        let mut got = Vec::new();
        self.drive("the client's message", |p| {
            p.server_reads(4096, &mut got);
            got.len() >= 20
        });
        assert_eq!(got, b"ping from the client");
        assert_eq!(self.server.write(b"pong from the server").unwrap(), 20);
        self.drive("the server's message", |p| p.received.len() >= 20);
        assert_eq!(self.received, b"pong from the server");
        self.received.clear();
        assert_would_block(self.server.read(&mut [0; 64]));
    }

    /// The server's end alone, everything else dropped.
    fn into_server(self) -> TlsStream {
        self.server
    }

    /// Whether the server's connection holds any buffer of its own (rustls's state aside).
    fn holds_buffers(&self) -> bool {
        self.server.left.is_some()
    }

    /// Received bytes the server holds unprocessed.
    fn incoming_held(&self) -> usize {
        self.server.left.as_ref().map_or(0, |left| left.incoming.filled)
    }

    /// Plaintext the server holds for its caller.
    fn plaintext_held(&self) -> usize {
        self.server.left.as_ref().map_or(0, |left| left.plaintext.as_slice().len())
    }

    /// Records the server holds for its socket.
    fn outgoing_held(&self) -> usize {
        self.server.left.as_ref().map_or(0, |left| left.outgoing.as_slice().len())
    }
}

fn assert_would_block(result: io::Result<usize>) {
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("expected WouldBlock, got {other:?}"),
    }
}

#[test]
fn an_idle_connection_holds_no_buffers_after_traffic_both_ways() {
    let mut p = Pair::new();
    assert!(!p.holds_buffers(), "after the handshake");
    p.exchange();
    assert!(!p.holds_buffers(), "after the exchange");
}

#[test]
fn a_tls_1_2_client_is_served_the_same() {
    let (server_config, client_config) = configs_with(&[&rustls::version::TLS12]);
    let mut p = Pair::with_configs(server_config, client_config);
    assert_eq!(p.server.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    p.exchange();
    assert!(!p.holds_buffers());
    p.server.shutdown_write();
    p.drive("close_notify", |p| p.client_closed);
}

#[test]
fn a_record_split_across_reads_is_held_then_delivered_whole() {
    let mut p = Pair::new();
    let message = b"a record that arrives in two pieces";
    let records = p.client_seals(message);
    let half = records.len() / 2;
    p.client_sends_raw(&records[..half]);
    p.drive("the first half", |p| {
        assert_would_block(p.server.read(&mut [0; 4096]));
        p.incoming_held() == half
    });
    assert_eq!(p.plaintext_held(), 0);
    p.client_sends_raw(&records[half..]);
    let mut got = Vec::new();
    p.drive("the second half", |p| {
        p.server_reads(4096, &mut got);
        got.len() >= message.len()
    });
    assert_eq!(got, message);
    assert!(!p.holds_buffers());
}

#[test]
fn a_record_larger_than_the_callers_buffer_is_taken_in_pieces() {
    let mut p = Pair::new();
    let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    // Three records (the client splits at 16 KiB; these are whole messages, one each).
    let mut records = p.client_seals(&message);
    records.extend(p.client_seals(&message));
    records.extend(p.client_seals(&message));
    p.client_sends_raw(&records);
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    p.drive("three records", |p| {
        loop {
            match p.server.read(&mut buf) {
                Ok(n) => {
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                    // One record decrypted at a time: the rest of it waits, the next ones
                    // stay encrypted.
                    assert!(p.plaintext_held() < message.len());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        got.len() >= 3 * message.len()
    });
    assert_eq!(got, message.repeat(3));
    assert!(!p.holds_buffers());
}

#[test]
fn a_large_message_through_a_small_socket_arrives_whole_and_bounded() {
    let mut p = Pair::with_send_buffer(Some(4096));
    let message: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut offset = 0;
    let mut blocked = 0;
    p.drive("1 MiB to the client", |p| {
        while offset < message.len() {
            // Three slices per call, as the worker's writev gives them.
            let rest = &message[offset..];
            let (a, b) = rest.split_at(rest.len().min(1000));
            let (b, c) = b.split_at(b.len().min(30_000));
            match p.server.write_vectored(&[IoSlice::new(a), IoSlice::new(b), IoSlice::new(c)]) {
                Ok(n) => {
                    assert!(n <= SEND_BUFFER_LIMIT);
                    offset += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    blocked += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(p.outgoing_held() <= SEALED_LIMIT);
        }
        if offset == message.len() {
            match p.server.write_pending() {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        p.received.len() >= message.len()
    });
    assert!(blocked > 0, "the socket never filled");
    assert_eq!(p.received.len(), message.len());
    assert!(p.received == message, "the bytes differ");
    assert!(!p.server.has_pending());
    assert!(!p.holds_buffers());
}

#[test]
fn the_clients_close_notify_reads_as_the_end_after_its_data() {
    let mut p = Pair::new();
    p.client.writer().write_all(b"last words").unwrap();
    p.client.send_close_notify();
    let mut got = Vec::new();
    let mut end = false;
    p.drive("the data and close_notify", |p| {
        let mut buf = [0u8; 64];
        loop {
            match p.server.read(&mut buf) {
                Ok(0) => {
                    end = true;
                    return true;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert!(end);
    assert_eq!(got, b"last words");
    assert_eq!(p.server.read(&mut [0; 64]).unwrap(), 0, "the end stays the end");
}

#[test]
fn shutdown_write_sends_close_notify_behind_the_data() {
    let mut p = Pair::new();
    assert_eq!(p.server.write(b"goodbye").unwrap(), 7);
    p.server.shutdown_write();
    p.drive("the data and close_notify", |p| p.client_closed);
    assert_eq!(p.received, b"goodbye");
    assert!(p.client_error.is_none());
}

#[test]
fn a_forged_record_fails_the_connection_with_an_alert() {
    let mut p = Pair::new();
    // Application data the client's keys did not seal.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    forged.extend([0u8; 32]);
    p.client_sends_raw(&forged);
    let mut failed = None;
    p.drive("the failure", |p| {
        match p.server.read(&mut [0; 64]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            other => failed = Some(other),
        }
        true
    });
    let error = failed.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
    p.drive("the alert", |p| p.client_error.is_some());
    assert_eq!(
        p.client_error,
        Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac)),
        "the client is told why"
    );
    assert_eq!(p.server.read(&mut [0; 64]).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(p.server.write(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
}

/// What an idle `wss://` connection holds beyond a plain one, measured (BENCHMARKS.md breaks
/// it down): the stream's struct, boxed in `Transport`, and what rustls keeps allocated for
/// it (the two AEAD keys, the TLS 1.3 traffic state, its handshake deframer's span list and
/// its two chunk queues, kept for the connection's life). No I/O buffer: those are the
/// thread's.
#[test]
fn the_tls_state_is_measured() {
    let size = std::mem::size_of::<TlsStream>();
    // Tickets off: the session cache behind them is the server's (at most 256 sessions,
    // shared by every connection), not one connection's.
    let (mut server_config, client_config) = configs();
    Arc::get_mut(&mut server_config).unwrap().send_tls13_tickets = 0;
    // The first connection makes the thread's scratch buffers.
    Pair::with_configs(server_config.clone(), client_config.clone()).exchange();
    let before = crate::test_alloc::live();
    // The configurations outlive the measure (the client's, dropped, would count as freed).
    let mut p = Pair::with_configs(server_config.clone(), client_config.clone());
    p.exchange();
    let server = Box::new(p.into_server());
    let heap = crate::test_alloc::live() - before;
    eprintln!("TlsStream: {size} bytes; an idle TLS connection's heap (the box included): {heap} bytes");
    assert!(size <= 1152, "TlsStream takes {size} bytes");
    assert!(heap <= 3584, "an idle TLS connection holds {heap} bytes of heap");
    assert!(server.left.is_none());
}
