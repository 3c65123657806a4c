//! `Engine::register`: a host that accepts its own connections hands them to the engine,
//! either already upgraded (`Handshake::Done`) or for the engine to upgrade
//! (`Handshake::Perform`).

#[path = "support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use support::*;
use wspush::{Config, Engine, Error, Handshake, Message};

fn engine_without_listener() -> (Engine, Events) {
    let engine = Engine::start(Config { ws_listen: None, workers: 2, ..Config::default() }).unwrap();
    assert_eq!(engine.local_addr(), None);
    let events = Events::attach(&engine);
    (engine, events)
}

/// The host's own upgrade: reads the request head byte by byte (nothing after it) and
/// answers 101 with the accept key.
fn host_upgrade(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("reading the upgrade request");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let key = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
        })
        .expect("no Sec-WebSocket-Key in the request");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    stream.write_all(response.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_upgraded_by_the_host_is_registered_with_done() {
    let (engine, mut events) = engine_without_listener();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/host/route", listener.local_addr().unwrap());
    let host = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        host_upgrade(&mut stream);
        stream
    });
    let mut ws = connect(&url).await;
    let stream = host.join().unwrap();
    engine.register(stream, "registered", Handshake::Done).unwrap();
    let conn = events.open("registered");

    assert_eq!(send_counted(&engine, "registered", Message::Text("via register")), 1);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "via register");
    send_text(&mut ws, "from the client").await;
    assert_eq!(events.message_from(conn), ("registered".to_owned(), true, b"from the client".to_vec()));
    eventually_eq(TIMEOUT, "connections", 1, || engine.stats().connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_connection_registered_with_perform_is_upgraded_by_the_engine() {
    let (engine, mut events) = engine_without_listener();
    let engine = std::sync::Arc::new(engine);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // The path is the host's business: the id given to register decides.
    let url = format!("ws://{}/any/path/at/all", listener.local_addr().unwrap());
    let host = {
        let engine = std::sync::Arc::clone(&engine);
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            engine.register(stream, "performed", Handshake::Perform).unwrap();
        })
    };
    let mut ws = connect(&url).await;
    host.join().unwrap();
    events.open("performed");

    assert_eq!(send_counted(&engine, "performed", Message::Text("upgraded by the engine")), 1);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "upgraded by the engine");
}

#[test]
fn register_refuses_an_invalid_id() {
    let (engine, _events) = engine_without_listener();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (stream, _) = listener.accept().unwrap();
    assert!(matches!(engine.register(stream, "", Handshake::Done), Err(Error::InvalidId(_))));
    // The socket was closed.
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut byte = [0u8; 1];
    match client.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the refused socket is still open: {other:?}"),
    }
}
