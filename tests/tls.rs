//! `wss://` on the server's WebSocket listener (`--tls-cert`, `--tls-key`): a
//! tokio-tungstenite client with rustls trusting only the test's own CA (the server's file
//! is a chain: leaf and intermediate), a certificate reload on SIGHUP under live
//! connections, a bad file refused at start (exit 2) and at reload (the old certificate
//! kept), and failed or stalled TLS handshakes that cost the acceptor nothing.

#[path = "support.rs"]
mod support;
#[path = "tls_support.rs"]
mod tls_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use support::*;
use tls_support::*;

fn tls_args(cert: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    vec!["--tls-cert".into(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()]
}

fn start(args: &[String], more: &[&str]) -> Server {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(more);
    Server::start(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_gets_pushes_large_ones_included_and_its_echo() {
    let ca = TestCa::new();
    let dir = scratch_dir("wss-pushes");
    let served = ca.server_cert("wspush one");
    let (cert, key) = served.write(&dir, "server");
    let server = start(&tls_args(&cert, &key), &["--echo"]);
    assert_eq!(server.ws_scheme, "wss");
    assert!(server
        .output()
        .contains(&format!("out| wspush: websocket listening on wss://{}/websocket/", server.ws_addr)));

    let mut ws = connect_wss(&server.ws_url("456"), ca.client_config()).await;
    assert_eq!(peer_leaf(&ws), served.leaf, "the server showed another certificate");
    wait_connections(&server, 1);

    let response = server.post("/socket/456", "order 456 shipped");
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(json(&response)["sockets"].as_u64(), Some(1));
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "order 456 shipped");

    // Larger than a TLS record (16 KiB) and than what rustls takes at once (64 KiB): the
    // message crosses many records and writable wake-ups.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let response = server.http("POST", "/socket/456", &[("Content-Type", "application/octet-stream")], &big);
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(recv_binary(&mut ws, TIMEOUT).await, big);

    send_text(&mut ws, "caf\u{e9} over TLS").await;
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "caf\u{e9} over TLS");

    send_close(&mut ws, 1000, "bye").await;
    assert_eq!(expect_close(&mut ws).await, 1000);
    wait_connections(&server, 0);
    assert_eq!(server_counter(&server, "handshake_failures.tls"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_the_old_ones() {
    let ca = TestCa::new();
    let dir = scratch_dir("wss-reload");
    let first = ca.server_cert("wspush first");
    let (cert, key) = first.write(&dir, "server");
    let server = start(&tls_args(&cert, &key), &[]);

    let mut old = connect_wss(&server.ws_url("live"), ca.client_config()).await;
    assert_eq!(peer_leaf(&old), first.leaf);

    // A certificate manager renews the files, then signals.
    let second = ca.server_cert("wspush second");
    second.write(&dir, "server");
    send_signal(server.pid(), SIGHUP).unwrap();
    eventually(TIMEOUT, "the reload's log line", || server.output().contains("TLS certificate reloaded"));

    let mut new = connect_wss(&server.ws_url("live"), ca.client_config()).await;
    assert_eq!(peer_leaf(&new), second.leaf, "a new connection still got the old certificate");
    wait_connections(&server, 2);
    let response = server.post("/socket/live", "after the reload");
    assert_eq!(json(&response)["sockets"].as_u64(), Some(2), "{response:?}");
    assert_eq!(recv_text(&mut old, TIMEOUT).await, "after the reload", "the old connection broke");
    assert_eq!(recv_text(&mut new, TIMEOUT).await, "after the reload");

    // A bad renewal: the key of another certificate. Refused, logged, the second kept.
    let stray = ca.server_cert("stray");
    write_atomically(&key, stray.key_pem.as_bytes());
    send_signal(server.pid(), SIGHUP).unwrap();
    let refusal = format!(
        "SIGHUP: TLS certificate reload refused, the old certificate stays: invalid setting `tls_key`: {}: \
         the key does not belong to the first certificate of {}",
        key.display(),
        cert.display()
    );
    eventually(TIMEOUT, "the refusal's log line", || server.output().contains(&refusal));
    // And a file that is not PEM at all.
    write_atomically(&cert, b"not a certificate\n");
    send_signal(server.pid(), SIGHUP).unwrap();
    let refusal = format!(
        "SIGHUP: TLS certificate reload refused, the old certificate stays: invalid setting `tls_cert`: {}: \
         no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
        cert.display()
    );
    eventually(TIMEOUT, "the second refusal's log line", || server.output().contains(&refusal));

    let mut third = connect_wss(&server.ws_url("live"), ca.client_config()).await;
    assert_eq!(peer_leaf(&third), second.leaf, "a refused reload replaced the certificate");
    wait_connections(&server, 3);
    let response = server.post("/socket/live", "still serving");
    assert_eq!(json(&response)["sockets"].as_u64(), Some(3), "{response:?}");
    for ws in [&mut old, &mut new, &mut third] {
        assert_eq!(recv_text(ws, TIMEOUT).await, "still serving");
    }
    assert_eq!(server.output().matches("TLS certificate reloaded").count(), 1);
}

/// SIGHUP's number on Linux.
const SIGHUP: i32 = 1;

#[test]
fn unusable_tls_files_exit_2_naming_the_file_and_the_fault() {
    let ca = TestCa::new();
    let dir = scratch_dir("wss-bad-files");
    let good = ca.server_cert("good");
    let (cert, key) = good.write(&dir, "good");
    let other = ca.server_cert("other");
    let (_, other_key) = other.write(&dir, "other");
    let missing = dir.join("missing.crt");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let cert_only_key = dir.join("cert-as-key.pem");
    std::fs::write(&cert_only_key, &good.chain_pem).unwrap();
    let (c, k, ok, g, m, ck) = (
        cert.display().to_string(),
        key.display().to_string(),
        other_key.display().to_string(),
        garbage.display().to_string(),
        missing.display().to_string(),
        cert_only_key.display().to_string(),
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--tls-cert", &m, "--tls-key", &k],
            format!("wspush: invalid --tls-cert: {m}: No such file or directory (os error 2)\n"),
        ),
        (
            vec!["--tls-cert", &g, "--tls-key", &k],
            format!(
                "wspush: invalid --tls-cert: {g}: no certificate in it (expected PEM \
                 `-----BEGIN CERTIFICATE-----` blocks)\n"
            ),
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &ck],
            format!(
                "wspush: invalid --tls-key: {ck}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1): \
                 no items found\n"
            ),
        ),
        (
            vec!["--tls-cert", &c, "--tls-key", &ok],
            format!(
                "wspush: invalid --tls-key: {ok}: the key does not belong to the first certificate of {c}\n"
            ),
        ),
        (vec!["--tls-cert", &c], "wspush: invalid --tls-key: tls_cert needs tls_key too\n".to_owned()),
    ];
    for (args, expected) in cases {
        for check in [false, true] {
            let mut all = vec!["--ws-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"];
            all.extend_from_slice(&args);
            if check {
                all.push("--check");
            }
            let run = run_server_binary(&all);
            assert_eq!(run.status.code(), Some(2), "{all:?}: {}", run.all());
            assert_eq!(run.stderr, expected, "{all:?}");
            assert_eq!(run.stdout, "", "{all:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_stalled_tls_handshakes_are_counted_and_hold_up_no_one() {
    let ca = TestCa::new();
    let dir = scratch_dir("wss-handshakes");
    let (cert, key) = ca.server_cert("wspush").write(&dir, "server");
    let server = start(&tls_args(&cert, &key), &["--handshake-timeout", "2s"]);

    // Plain HTTP to the TLS port: not a TLS record. The server answers with an alert and
    // closes.
    let mut plain = TcpStream::connect(server.ws_addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    plain.write_all(upgrade_request("/websocket/x", "").as_bytes()).unwrap();
    let answer = read_to_close(&mut plain).unwrap();
    assert_eq!(answer.first(), Some(&0x15), "expected a TLS alert record, got {answer:?}");
    eventually_eq(TIMEOUT, "handshake_failures.tls", 1, || server_counter(&server, "handshake_failures.tls"));

    // A ClientHello that never ends (a record announcing 16 KiB, then a byte at a time) and
    // a connection that sends nothing: both wait, and a real client is served meanwhile.
    let mut stalled = TcpStream::connect(server.ws_addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01]).unwrap();
    let silent = TcpStream::connect(server.ws_addr).unwrap();
    let mut ws = connect_wss(&server.ws_url("served"), ca.client_config()).await;
    wait_connections(&server, 1);
    assert_eq!(server.post("/socket/served", "while others stall").status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "while others stall");

    // At the handshake timeout both are closed: no HTTP can be said before TLS is up.
    stalled.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    assert_eq!(stalled.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    let mut silent = silent;
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    eventually_eq(TIMEOUT, "handshake_failures.timeout", 2, || {
        server_counter(&server, "handshake_failures.timeout")
    });

    // More than the handshake's byte budget (32 KiB) before it completes: refused at once.
    let mut flood = TcpStream::connect(server.ws_addr).unwrap();
    flood.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Handshake records of 16 KiB each (fragments of one huge ClientHello).
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.extend(std::iter::once(0x01).chain(std::iter::repeat_n(0, 0x4000 - 1)));
    for _ in 0..3 {
        if flood.write_all(&record).is_err() {
            break;
        }
    }
    let _ = read_to_close(&mut flood);
    eventually_eq(TIMEOUT, "handshake_failures.tls", 2, || server_counter(&server, "handshake_failures.tls"));
}
