//! Hosting the engine in-process: accept WebSockets, print what clients send, and push a
//! message to id "456" every second. Give a Redis URL to join a fleet: two of these on
//! different ports with the same Redis deliver every tick to the sockets of both.
//!
//! ```text
//! cargo run -p wspush --example embed                                # ws://127.0.0.1:9001
//! cargo run -p wspush --example embed -- 9002 redis://127.0.0.1:6379 # a second node
//! websocat ws://127.0.0.1:9001/websocket/456
//! ```

use std::time::Duration;

use wspush::{ClusterConfig, Config, Engine, Event, Message};

fn main() -> Result<(), wspush::Error> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(9001, |p| p.parse().expect("the first argument is a port"));
    let engine = Engine::start(Config {
        ws_listen: Some(([127, 0, 0, 1], port).into()),
        cluster: args.next().map(ClusterConfig::new),
        ..Config::default()
    })?;
    engine.set_event_handler(|event: &Event<'_>| match event {
        Event::Open { conn, id } => println!("open {id} ({conn})"),
        Event::Message { id, message, .. } => println!("message from {id}: {message:?}"),
        Event::Close { id, code, .. } => println!("close {id} with {code}"),
    });
    println!("listening on ws://{}/websocket/{{id}}", engine.local_addr().unwrap());
    for n in 0.. {
        std::thread::sleep(Duration::from_secs(1));
        engine.send("456", Message::Text(&format!("tick {n} from port {port}")))?;
    }
    Ok(())
}
