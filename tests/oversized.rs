//! A message larger than the node pushes (`max_outbound_message_size`, by default
//! `max_message_size`) is refused where it enters, never queued: from the engine's API (an
//! error), from the HTTP API (413), from Redis (dropped and counted). The clients it was
//! meant for did nothing wrong: they stay open and receive the next message.

#[path = "support.rs"]
mod support;

use support::*;
use wspush::{ClusterConfig, Engine, Error, Message};

/// The limit the engine tests configure.
const MAX: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_send_or_broadcast_is_an_error_and_the_socket_stays_open() {
    let (engine, mut events) = start_engine(|c| c.max_outbound_message_size = Some(MAX));
    let mut ws = connect_id(addr(&engine), "a").await;
    let conn = events.open("a");

    let big = "x".repeat(MAX + 1);
    let too_large = |result: Result<(), Error>| match result {
        Err(Error::MessageTooLarge { size, max }) => (size, max),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    };
    assert_eq!(too_large(engine.send("a", Message::Text(&big))), (MAX + 1, MAX));
    assert_eq!(too_large(engine.broadcast(Message::Binary(big.as_bytes()))), (MAX + 1, MAX));
    assert_eq!(too_large(engine.send_to(conn, Message::Text(&big))), (MAX + 1, MAX));
    let error = engine.send("a", Message::Text(&big)).unwrap_err().to_string();
    assert_eq!(error, "the message is 1001 bytes, larger than max_outbound_message_size (1000 bytes)");

    // A message of exactly the limit is pushed, and is the first thing the socket receives.
    let fits = "y".repeat(MAX);
    engine.send("a", Message::Text(&fits)).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, fits);
    assert_eq!(engine.stats().connections, 1);
    assert_eq!(engine.stats().slow_consumer_disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_own_setting_the_outbound_limit_is_max_message_size() {
    let (engine, mut events) = start_engine(|c| c.max_message_size = MAX);
    let mut ws = connect_id(addr(&engine), "a").await;
    events.open("a");
    let big = "x".repeat(MAX + 1);
    assert!(matches!(engine.send("a", Message::Text(&big)), Err(Error::MessageTooLarge { .. })));
    engine.send("a", Message::Text("next")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_answers_413_to_a_body_over_the_outbound_limit() {
    let server = Server::start(&["--max-outbound-message-size", "1000"]);
    let mut ws = connect(&server.ws_url("a")).await;
    wait_connections(&server, 1);

    let big = "x".repeat(MAX + 1);
    for path in ["/socket/a", "/broadcast"] {
        let response = server.post(path, &big);
        assert_eq!(response.status(), 413, "POST {path}: {response:?}");
        assert_eq!(
            json(&response)["error"],
            "the body is larger than max_outbound_message_size (1000 bytes)",
            "POST {path}"
        );
    }
    let fits = "y".repeat(MAX);
    assert_eq!(server.post("/socket/a", &fits).status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, fits);
    assert_eq!(server_counter(&server, "connections"), 1);
}

/// An engine in cluster mode on `redis` with the compat channel `legacy:push`, and a
/// client of id "big" on it.
async fn cluster_client(redis: &RedisServer) -> (Engine, Ws) {
    let cluster = ClusterConfig {
        node_id: Some("receiver".into()),
        compat_channel: Some("legacy:push".into()),
        ..ClusterConfig::new(redis.url())
    };
    let (engine, mut events) = start_engine(|c| c.cluster = Some(cluster));
    let ws = connect_id(addr(&engine), "big").await;
    events.open("big");
    eventually_eq(TIMEOUT, "subscribers of the channels", (1, 1, 1), || {
        (redis.numsub("legacy:push"), redis.numsub("wspush:all"), redis.numsub("wspush:u:big"))
    });
    (engine, ws)
}

fn publish(redis: &RedisServer, channel: &str, payload: &[u8]) {
    let mut connection = RespConnection::connect(redis.port()).expect("cannot connect to Redis");
    let reply = connection.command(&[b"PUBLISH", channel.as_bytes(), payload]).expect("PUBLISH failed");
    assert_eq!(reply.int(), Some(1), "one node receives it");
}

/// An envelope (version 1, text) published by node `svc`.
fn envelope(text: &[u8]) -> Vec<u8> {
    [&b"\x01\x01\x03svc"[..], text].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_message_from_redis_is_dropped_and_counted_and_the_client_stays_open() {
    let redis = RedisServer::start();
    let (engine, mut ws) = cluster_client(&redis).await;
    let ten_mb = "v".repeat(10_000_000);
    let oversized = |engine: &Engine| engine.stats().cluster.expect("cluster mode").oversized_dropped;

    // The original JSON format on the compat channel.
    publish(&redis, "legacy:push", format!(r#"{{"KEY":"big","VALUE":"{ten_mb}"}}"#).as_bytes());
    publish(&redis, "legacy:push", br#"{"KEY":"big","VALUE":"after the compat one"}"#);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "after the compat one");
    assert_eq!(oversized(&engine), 1);

    // An envelope on the id's channel, then on the broadcast channel.
    publish(&redis, "wspush:u:big", &envelope(ten_mb.as_bytes()));
    publish(&redis, "wspush:u:big", &envelope(b"after the envelope"));
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "after the envelope");
    publish(&redis, "wspush:all", &envelope(ten_mb.as_bytes()));
    publish(&redis, "wspush:all", &envelope(b"after the broadcast"));
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "after the broadcast");

    let stats = engine.stats();
    assert_eq!(oversized(&engine), 3);
    assert_eq!((stats.connections, stats.slow_consumer_disconnects), (1, 0));
}
