//! `https://` on the server's HTTP API (`--api-tls-cert`, `--api-tls-key`) and client
//! certificates (`--api-tls-client-ca`): a service with a certificate from that CA pushes;
//! one without a certificate, or with one from another CA, is refused in the TLS handshake
//! and reaches nothing. A bad CA file exits 2.

#[path = "support.rs"]
mod support;
#[path = "tls_support.rs"]
mod tls_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use support::*;
use tls_support::*;

/// One HTTP/1.1 request over TLS with `config`; the whole response, or the error that ended
/// the connection first.
fn https_request(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &str,
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => Ok(String::from_utf8_lossy(&response).into_owned()),
        Err(e) if !response.is_empty() => Err(format!("{e} after {:?}", String::from_utf8_lossy(&response))),
        Err(e) => Err(e.to_string()),
    }
}

fn push(id: &str, body: &str) -> String {
    format!(
        "POST /socket/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_services_with_a_certificate_from_the_client_ca_can_push() {
    let ca = TestCa::new();
    let clients = TestCa::new();
    let strangers = TestCa::new();
    let dir = scratch_dir("api-tls");
    let (cert, key) = ca.server_cert("wspush api").write(&dir, "api");
    let client_ca = dir.join("clients.pem");
    std::fs::write(&client_ca, clients.root_pem()).unwrap();
    let args = [
        "--api-tls-cert".to_owned(),
        cert.display().to_string(),
        "--api-tls-key".to_owned(),
        key.display().to_string(),
        "--api-tls-client-ca".to_owned(),
        client_ca.display().to_string(),
    ];
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(server
        .output()
        .contains(&format!("out| wspush: http api listening on https://{}", server.api_addr)));
    let mut ws = connect(&server.ws_url("456")).await;

    let service = clients.client_cert("billing");
    let response =
        https_request(server.api_addr, ca.client_config_with(Some(&service)), &push("456", "paid"))
            .expect("a service with a good certificate was refused");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(r#"{"id":"456","nodes":null,"sockets":1}"#), "{response}");
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "paid");

    let anonymous = https_request(server.api_addr, ca.client_config_with(None), &push("456", "anonymous"));
    let error = anonymous.expect_err("a client without a certificate was served");
    assert!(error.contains("CertificateRequired"), "{error}");
    let stranger = strangers.client_cert("stranger");
    let refused =
        https_request(server.api_addr, ca.client_config_with(Some(&stranger)), &push("456", "stranger"));
    let error = refused.expect_err("a certificate from another CA was accepted");
    assert!(error.contains("UnknownCA"), "{error}");

    // Neither reached the socket: the next message it gets is this one.
    let response =
        https_request(server.api_addr, ca.client_config_with(Some(&service)), &push("456", "sentinel"))
            .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "sentinel");
}

#[test]
fn a_bad_client_ca_or_a_lone_api_certificate_exits_2() {
    let ca = TestCa::new();
    let dir = scratch_dir("api-tls-bad");
    let (cert, key) = ca.server_cert("wspush api").write(&dir, "api");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (c, k, e) = (cert.display().to_string(), key.display().to_string(), empty.display().to_string());
    let listen = ["--ws-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"];
    let cases: [(Vec<&str>, String); 3] = [
        (
            vec!["--api-tls-cert", &c, "--api-tls-key", &k, "--api-tls-client-ca", &e],
            format!("wspush: invalid --api-tls-client-ca: {e}: no certificate in it\n"),
        ),
        (
            vec!["--api-tls-cert", &c],
            "wspush: invalid --api-tls-key: api_tls_cert needs api_tls_key too\n".into(),
        ),
        (
            vec!["--api-tls-client-ca", &c],
            "wspush: invalid --api-tls-client-ca: needs api_tls_cert and api_tls_key\n".into(),
        ),
    ];
    for (args, expected) in cases {
        let all: Vec<&str> = listen.iter().copied().chain(args.iter().copied()).collect();
        let run = run_server_binary(&all);
        assert_eq!(run.status.code(), Some(2), "{all:?}: {}", run.all());
        assert_eq!(run.stderr, expected, "{all:?}");
    }
}
