//! What waits to be published to Redis is bounded in bytes (`redis_queue_bytes`), not only
//! in count: while Redis is unreachable, a client sending large messages fills the queue up
//! to the bound, and what would go over is dropped and counted, never held.

#[path = "support.rs"]
mod support;

use support::*;
use wspush::{ClusterConfig, Message};

const QUEUE_BYTES: usize = 4 << 20;
const MESSAGE: usize = 256 << 10;
const MESSAGES: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_waiting_for_an_unreachable_redis_are_bounded_in_bytes() {
    // Nothing listens there: the node runs degraded and queues its publishes.
    let cluster = ClusterConfig {
        queue_bytes: QUEUE_BYTES,
        ..ClusterConfig::new(format!("redis://127.0.0.1:{}", free_port()))
    };
    let (engine, mut events) = start_engine(|c| c.cluster = Some(cluster));
    let mut ws = connect_id(addr(&engine), "sender").await;
    let conn = events.open("sender");

    // 64 messages of 256 KiB: 16 MiB, 21 MiB as the base64 JSON published for them.
    for i in 0..MESSAGES {
        send_binary(&mut ws, &vec![i as u8; MESSAGE]).await;
    }
    // The host receives every one of them: only their publishing is refused.
    for i in 0..MESSAGES {
        let (_, text, data) = events.message_from(conn);
        assert!(!text);
        assert_eq!(data, vec![i as u8; MESSAGE]);
    }

    let cluster = engine.stats().cluster.expect("cluster mode");
    assert!(!cluster.connected);
    assert!(cluster.publish_dropped > 0, "nothing was dropped: {cluster:?}");
    let queued = cluster.publish_queued_bytes as usize;
    assert!(queued <= QUEUE_BYTES, "{queued} bytes queued, over redis_queue_bytes ({QUEUE_BYTES})");
    // Filled up to the bound, less than one publish short of it.
    assert!(queued > QUEUE_BYTES - 2 * MESSAGE, "only {queued} bytes queued: {cluster:?}");

    // The sender's socket is still open.
    engine.send("sender", Message::Text("still here")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "still here");
}
