//! The publisher: everything queued while a round trip is under way goes to Redis as the
//! next pipeline, on a connection of its own.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::{mpsc, watch};

use super::connect::{Endpoint, Reconnector, KEEPALIVE, RESPONSE_TIMEOUT};
use super::link::Outbound;
use super::stats::ClusterCounters;
use crate::stats::bump;

/// Most publishes in one pipeline.
const MAX_BATCH: usize = 4096;

/// Publishes what the link queues until the node stops. `subscriber_lost` changes when the
/// subscriber lost its connection: this one is then most likely broken too, and an idle
/// publisher would otherwise learn it only at its next ping.
pub(super) async fn publish_loop(
    endpoint: &Endpoint,
    mut outbound: mpsc::Receiver<Outbound>,
    counters: Arc<ClusterCounters>,
    mut subscriber_lost: watch::Receiver<u64>,
    stopped: watch::Receiver<bool>,
) {
    let unreachable = "cannot reach Redis to publish; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, counters.clone(), stopped);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(mut connection) = reconnect.connect_until_up(|| endpoint.publisher()).await else { return };
        reconnect.up();
        counters.publisher_up.store(true, Relaxed);
        tracing::info!("publisher connected to Redis");
        // Losses the subscriber saw before this connection are not this connection's.
        subscriber_lost.borrow_and_update();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            if batch.is_empty() {
                // An idle publisher still notices an outage (the subscriber's word, or its own
                // ping), so a batch sent after Redis returns goes out on a fresh connection.
                let stopping = tokio::select! {
                    received = outbound.recv_many(&mut batch, MAX_BATCH) => received == 0,
                    Ok(()) = subscriber_lost.changed() => break,
                    _ = keepalive.tick() => {
                        let ping = redis::cmd("PING");
                        match tokio::time::timeout(RESPONSE_TIMEOUT, ping.query_async::<Value>(&mut connection)).await {
                            Ok(Ok(_)) => continue,
                            _ => break,
                        }
                    }
                    _ = reconnect.stopped().changed() => true,
                };
                if stopping {
                    // Flush what was sent before the shutdown, then go.
                    while let Ok(item) = outbound.try_recv() {
                        batch.push(item);
                    }
                    if !batch.is_empty() {
                        send_batch(&mut connection, &mut batch, &counters).await;
                    }
                    counters.publisher_up.store(false, Relaxed);
                    return;
                }
            }
            if subscriber_lost.has_changed().unwrap_or(false) {
                break;
            }
            if !send_batch(&mut connection, &mut batch, &counters).await {
                break;
            }
        }
        counters.publisher_up.store(false, Relaxed);
        // Whoever waits on a receipt in the held batch hears now, not after the outage;
        // the publishes themselves wait for the next connection (still counted as queued).
        batch.retain_mut(|item| match item {
            Outbound::Publish { receipt, .. } => {
                if let Some(receipt) = receipt.take() {
                    receipt.set_receivers(None);
                }
                true
            }
            Outbound::CountSubscribers { receipt, .. } => {
                receipt.set_receivers(None);
                counters.publish_queued_bytes.fetch_sub(item.queued_bytes(), Relaxed);
                false
            }
        });
        tracing::warn!("publisher lost its Redis connection; reconnecting");
    }
}

/// Sends the whole batch as one pipeline and settles every receipt. False when the
/// connection failed (the batch is then counted as lost: at-most-once, never duplicated).
async fn send_batch(
    connection: &mut MultiplexedConnection,
    batch: &mut Vec<Outbound>,
    counters: &ClusterCounters,
) -> bool {
    let mut pipe = redis::pipe();
    for item in batch.iter() {
        match item {
            Outbound::Publish { channel, payload, .. } => pipe.cmd("PUBLISH").arg(channel).arg(payload),
            Outbound::CountSubscribers { channel, .. } => pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel),
        };
    }
    let result: redis::RedisResult<Vec<Value>> = pipe.query_async(connection).await;
    bump(&counters.publish_round_trips, 1);
    let ok = result.is_ok();
    let replies = result.unwrap_or_default();
    let mut replies = replies.into_iter();
    let mut published = 0;
    let mut failed = 0;
    let mut released = 0;
    for item in batch.drain(..) {
        released += item.queued_bytes();
        let reply = replies.next();
        match item {
            Outbound::Publish { receipt, .. } => {
                let receivers = match reply {
                    Some(Value::Int(n)) => Some(n.max(0) as usize),
                    _ => None,
                };
                if receivers.is_some() {
                    published += 1;
                } else {
                    failed += 1;
                }
                if let Some(receipt) = receipt {
                    receipt.set_receivers(receivers);
                }
            }
            Outbound::CountSubscribers { receipt, .. } => {
                let count = match reply {
                    Some(Value::Array(items)) => match items.get(1) {
                        Some(Value::Int(n)) => Some((*n).max(0) as usize),
                        _ => None,
                    },
                    _ => None,
                };
                receipt.set_receivers(count);
            }
        }
    }
    counters.publish_queued_bytes.fetch_sub(released, Relaxed);
    bump(&counters.published, published);
    bump(&counters.publish_failed, failed);
    ok
}
