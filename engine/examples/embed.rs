//! Hosting the engine in-process: accept WebSockets on 127.0.0.1:9001, print what clients
//! send, and push a message to id "456" every second.
//!
//! ```text
//! cargo run -p wspush --example embed
//! websocat ws://127.0.0.1:9001/websocket/456
//! ```

use std::time::Duration;

use wspush::{Config, Engine, Event, Message};

fn main() -> Result<(), wspush::Error> {
    let engine =
        Engine::start(Config { ws_listen: Some("127.0.0.1:9001".parse().unwrap()), ..Config::default() })?;
    engine.set_event_handler(|event: &Event<'_>| match event {
        Event::Open { conn, id } => println!("open {id} ({conn})"),
        Event::Message { id, message, .. } => println!("message from {id}: {message:?}"),
        Event::Close { id, code, .. } => println!("close {id} with {code}"),
    });
    println!("listening on ws://{}/websocket/{{id}}", engine.local_addr().unwrap());
    for n in 0.. {
        std::thread::sleep(Duration::from_secs(1));
        engine.send("456", Message::Text(&format!("tick {n}")))?;
    }
    Ok(())
}
