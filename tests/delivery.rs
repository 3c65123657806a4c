//! Delivery through the in-process API: `send` to every socket of an id exactly once,
//! `broadcast` to everyone, per-sender order, inbound messages as events and `send_to`.
//! "Exactly once" is checked by sending a sentinel afterwards: the next message a socket
//! gets must be the sentinel.

#[path = "support.rs"]
mod support;

use std::sync::Arc;

use support::*;
use wspush::{Error, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_each_of_three_sockets_of_the_id_exactly_once() {
    let (engine, mut events) = start_engine(|_| {});
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(connect_id(addr(&engine), "456").await);
        events.open("456");
    }
    let mut other = connect_id(addr(&engine), "789").await;
    events.open("789");

    assert_eq!(send_counted(&engine, "456", Message::Text("order 456 shipped")), 3);
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "order 456 shipped");
    }

    engine.send("456", Message::Text("sentinel")).unwrap();
    engine.send("789", Message::Text("sentinel 789")).unwrap();
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "sentinel", "a socket got the message twice");
    }
    assert_eq!(recv_text(&mut other, TIMEOUT).await, "sentinel 789", "another id got the message");
    eventually_eq(TIMEOUT, "(connections, ids, messages_out)", (4, 2, 3 + 3 + 1), || {
        let stats = engine.stats();
        (stats.connections, stats.ids, stats.messages_out)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_messages_arrive_as_binary_with_the_exact_bytes() {
    let (engine, mut events) = start_engine(|_| {});
    let mut a = connect_id(addr(&engine), "bin").await;
    let mut b = connect_id(addr(&engine), "bin").await;
    events.open("bin");
    events.open("bin");
    let data: Vec<u8> = (0..=255u8).chain([0, 0xff, 0xfe]).collect();
    assert_eq!(send_counted(&engine, "bin", Message::Binary(&data)), 2);
    assert_eq!(recv_binary(&mut a, TIMEOUT).await, data);
    assert_eq!(recv_binary(&mut b, TIMEOUT).await, data);
    // Large enough for a 64-bit length.
    let big = vec![0xA5u8; 70_000];
    engine.send("bin", Message::Binary(&big)).unwrap();
    assert_eq!(recv_binary(&mut a, TIMEOUT).await, big);
    assert_eq!(recv_binary(&mut b, TIMEOUT).await, big);
}

#[test]
fn sending_to_an_id_without_sockets_reaches_zero() {
    let (engine, _events) = start_engine(|_| {});
    assert_eq!(send_counted(&engine, "nobody", Message::Text("lost")), 0);
    assert_eq!(engine.stats().messages_out, 0, "the receipt came after the message was handled");
}

#[test]
fn invalid_ids_are_refused() {
    let (engine, _events) = start_engine(|_| {});
    assert!(matches!(engine.send("", Message::Text("x")), Err(Error::InvalidId(_))));
    assert!(matches!(engine.send(&"x".repeat(129), Message::Text("x")), Err(Error::InvalidId(_))));
    assert!(matches!(engine.send("a/b", Message::Text("x")), Err(Error::InvalidId(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_50_sockets_over_50_ids_exactly_once() {
    let (engine, mut events) = start_engine(|_| {});
    let mut sockets = Vec::new();
    for i in 0..50 {
        sockets.push(connect_id(addr(&engine), &format!("user-{i}")).await);
    }
    for _ in 0..50 {
        events.any_open();
    }
    eventually_eq(TIMEOUT, "ids", 50, || engine.stats().ids);

    assert_eq!(broadcast_counted(&engine, Message::Text("maintenance at noon")), 50);
    for ws in &mut sockets {
        assert_eq!(recv_text(ws, TIMEOUT).await, "maintenance at noon");
    }
    engine.broadcast(Message::Binary(b"sentinel")).unwrap();
    for ws in &mut sockets {
        assert_eq!(recv_binary(ws, TIMEOUT).await, b"sentinel", "a socket got the broadcast twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_one_thread_arrive_in_order_on_every_socket() {
    let (engine, mut events) = start_engine(|_| {});
    let engine = Arc::new(engine);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect_id(addr(&engine), "ordered").await);
        events.open("ordered");
    }
    let sender = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            for i in 0..1000 {
                engine.send("ordered", Message::Text(&i.to_string())).unwrap();
            }
        })
    };
    for ws in &mut sockets {
        for i in 0..1000 {
            assert_eq!(recv_text(ws, TIMEOUT).await, i.to_string(), "out of order");
        }
    }
    sender.join().unwrap();
    engine.send("ordered", Message::Text("sentinel")).unwrap();
    for ws in &mut sockets {
        assert_eq!(recv_text(ws, TIMEOUT).await, "sentinel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_each_keep_their_order() {
    let (engine, mut events) = start_engine(|_| {});
    let engine = Arc::new(engine);
    let mut ws = connect_id(addr(&engine), "two").await;
    events.open("two");
    let senders: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                for i in 0..500 {
                    engine.send("two", Message::Text(&format!("{name}{i}"))).unwrap();
                }
            })
        })
        .collect();
    let (mut next_a, mut next_b) = (0, 0);
    for _ in 0..1000 {
        let text = recv_text(&mut ws, TIMEOUT).await;
        let (name, n) = text.split_at(1);
        let n: i32 = n.parse().unwrap();
        let next = if name == "a" { &mut next_a } else { &mut next_b };
        assert_eq!(n, *next, "sender {name} out of order");
        *next += 1;
    }
    for sender in senders {
        sender.join().unwrap();
    }
    assert_eq!((next_a, next_b), (500, 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_are_events_and_send_to_answers_only_that_socket() {
    let (engine, mut events) = start_engine(|_| {});
    let mut a = connect_id(addr(&engine), "456").await;
    let conn_a = events.open("456");
    let mut b = connect_id(addr(&engine), "456").await;
    let conn_b = events.open("456");
    assert_ne!(conn_a, conn_b);

    send_text(&mut a, "hello from a").await;
    assert_eq!(events.message_from(conn_a), ("456".to_owned(), true, b"hello from a".to_vec()));
    send_binary(&mut b, &[0, 1, 2, 0xff]).await;
    assert_eq!(events.message_from(conn_b), ("456".to_owned(), false, vec![0, 1, 2, 0xff]));

    engine.send_to(conn_a, Message::Text("reply to a")).unwrap();
    engine.send("456", Message::Text("sentinel")).unwrap();
    assert_eq!(recv_text(&mut a, TIMEOUT).await, "reply to a");
    assert_eq!(recv_text(&mut a, TIMEOUT).await, "sentinel");
    assert_eq!(recv_text(&mut b, TIMEOUT).await, "sentinel", "send_to reached another socket of the id");

    eventually_eq(TIMEOUT, "(messages_in, bytes_in)", (2, 12 + 4), || {
        let stats = engine.stats();
        (stats.messages_in, stats.bytes_in)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_closed_socket_is_ignored_and_close_sends_the_code() {
    let (engine, mut events) = start_engine(|_| {});
    let mut a = connect_id(addr(&engine), "c").await;
    let conn = events.open("c");
    engine.close(conn, 4000).unwrap();
    assert_eq!(expect_close(&mut a).await, 4000);
    drop(a);
    assert_eq!(events.close_of(conn), 4000);
    engine.send_to(conn, Message::Text("too late")).unwrap();

    let mut b = connect_id(addr(&engine), "c").await;
    let conn_b = events.open("c");
    assert_ne!(conn, conn_b, "connection handles are never reused");
    engine.send("c", Message::Text("fresh")).unwrap();
    assert_eq!(recv_text(&mut b, TIMEOUT).await, "fresh");
}
