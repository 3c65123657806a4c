//! The publisher: everything queued while a round trip is under way goes to Redis as the
//! next pipeline, on a connection of its own.
//!
//! With history on, sends are appends (`EVALSHA append`, design §2.3) in the same pipelines
//! and queue order as the publishes. An append whose pipeline failed stays, keeps its seq
//! and goes first on the next connection: the script applies a seq once, so with a Redis
//! that persists every write (AOF `appendfsync always`) an append is applied exactly once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::{mpsc, watch};

use super::connect::{Reconnector, KEEPALIVE, RESPONSE_TIMEOUT};
use super::endpoint::Endpoint;
use super::envelope;
use super::link::{ClusterLink, Outbound};
use super::reader::load_script;
use super::scripts::{self, AppendItem, AppendShared, Appended, APPEND, MAX_APPENDS_PER_CALL, READ};
use super::slots;
use super::topology::Topology;
use crate::history::Epoch;
use crate::stats::bump;

/// Most publishes in one pipeline.
pub(super) const MAX_BATCH: usize = 4096;

/// Publishes what the link queues until the node stops. `subscriber_lost` changes when the
/// subscriber lost its connection: this one is then most likely broken too, and an idle
/// publisher would otherwise learn it only at its next ping.
pub(super) async fn publish_loop(
    endpoint: &Endpoint,
    mut outbound: mpsc::Receiver<Outbound>,
    link: Arc<ClusterLink>,
    mut subscriber_lost: watch::Receiver<u64>,
    stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let unreachable = "cannot reach Redis to publish; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, counters.clone(), stopped);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next_seq = 1;
    let history = link.history_size > 0;
    let mut master_changes = endpoint.master_changes();
    loop {
        // A failover announced from here on replaces the connection about to be opened: a
        // PUBLISH to a demoted master would reach none of the nodes, which follow the new one.
        master_changes.borrow_and_update();
        let connect = || {
            hold_queued(&mut outbound, &mut batch, &link);
            async move {
                let mut connection = endpoint.publisher().await.map_err(|e| e.to_string())?;
                // A new connection may be to a Redis that restarted with no scripts. Loaded
                // only with history on: history off talks to Redis exactly as before.
                if history {
                    load_script(&mut connection, &APPEND).await?;
                    load_script(&mut connection, &READ).await?;
                }
                Ok::<_, String>(connection)
            }
        };
        let Some(mut connection) = reconnect.connect_until_up(connect).await else { return };
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
                    Ok(()) = master_changes.changed() => break,
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
                        assign_seqs(&mut batch, &link, &mut next_seq);
                        send_batch(&mut connection, &mut batch, &link, None).await;
                    }
                    counters.publisher_up.store(false, Relaxed);
                    return;
                }
            }
            if subscriber_lost.has_changed().unwrap_or(false) || master_changes.has_changed().unwrap_or(false)
            {
                break;
            }
            let stopping = *reconnect.stopped().borrow();
            if let Some(until) = endpoint.writes_paused_until().filter(|_| !stopping) {
                // A failover is under way: the batch waits for the new master (or, if the
                // failover is slow or aborted, goes to this one when the pause ends). A
                // stop ends the wait; its change is watched on a copy, so the loop above
                // still sees it.
                let mut stop = reconnect.stopped().clone();
                tokio::select! {
                    () = tokio::time::sleep_until(until) => continue,
                    Ok(()) = master_changes.changed() => break,
                    _ = stop.changed() => {}
                }
            }
            assign_seqs(&mut batch, &link, &mut next_seq);
            if !send_batch(&mut connection, &mut batch, &link, None).await {
                break;
            }
        }
        counters.publisher_up.store(false, Relaxed);
        hold_queued(&mut outbound, &mut batch, &link);
        tracing::warn!("publisher lost its Redis connection; reconnecting");
    }
}

/// While Redis is unreachable: moves what the link queued into the held batch
/// ([`take_queued`]) and settles every receipt held, so whoever waits on one hears now, not
/// after the outage. The publishes themselves wait for the next connection (still counted
/// as queued); presence queries are answered with no count and dropped. Called when the
/// connection is lost and before each attempt to reconnect: an append enqueued just before
/// the publisher saw the loss (while it still looked up, so its receipt went with it) is
/// caught by one or the other.
fn hold_queued(outbound: &mut mpsc::Receiver<Outbound>, batch: &mut Vec<Outbound>, link: &ClusterLink) {
    take_queued(outbound, batch);
    settle_waiting(batch);
    batch.retain(|item| {
        let Outbound::CountSubscribers { receipt, .. } = item else { return true };
        receipt.set_receivers(None);
        link.counters.publish_queued_bytes.fetch_sub(item.queued_bytes(), Relaxed);
        false
    });
}

/// Moves what the link queued into `batch`, in order, up to `MAX_BATCH` items in all.
pub(super) fn take_queued(outbound: &mut mpsc::Receiver<Outbound>, batch: &mut Vec<Outbound>) {
    while batch.len() < MAX_BATCH {
        let Ok(item) = outbound.try_recv() else { break };
        batch.push(item);
    }
}

/// Settles the receipts of publishes and appends that wait for another round (with no
/// count), so no sender waits on an outage; the items themselves stay.
pub(super) fn settle_waiting(batch: &mut [Outbound]) {
    for item in batch {
        if let Outbound::Publish { receipt, .. } | Outbound::Append { receipt, .. } = item {
            if let Some(receipt) = receipt.take() {
                receipt.set_receivers(None);
            }
        }
    }
}

/// Gives each append of `batch` its seq the first time it is sent (and counts the others,
/// sent again). Called once per attempt, before the batch is written.
pub(super) fn assign_seqs(batch: &mut [Outbound], link: &ClusterLink, next_seq: &mut u64) {
    for item in batch {
        let Outbound::Append { seq, .. } = item else { continue };
        if *seq == 0 {
            // Assigned here, in queue order, not at enqueue: two threads enqueueing at once
            // would otherwise reach Redis out of seq order, and the script would take the
            // later one for a retry.
            *seq = *next_seq;
            *next_seq += 1;
        } else {
            bump(&link.counters.history_append_retried, 1);
        }
    }
}

/// One script call for a run of appends (all of `run` are `Outbound::Append`, with seqs).
fn append_call(run: &[Outbound], link: &ClusterLink) -> redis::Cmd {
    // The names and heads the items borrow, built first.
    let mut names = Vec::with_capacity(run.len());
    for item in run {
        let Outbound::Append { id, binary, .. } = item else { unreachable!("a run of appends") };
        let head = envelope::encode_head(link.node_id(), !*binary);
        names.push((link.channels.history(id), link.channels.history_meta(id), link.channels.user(id), head));
    }
    let items: Vec<AppendItem<'_>> = run
        .iter()
        .zip(&names)
        .map(|(item, (stream, meta, channel, head))| {
            let Outbound::Append { binary, body, seq, .. } = item else { unreachable!("a run of appends") };
            AppendItem {
                stream,
                meta,
                channel,
                head,
                binary: *binary,
                body,
                fresh_epoch: Epoch::random(),
                seq: *seq,
            }
        })
        .collect();
    let publish = if link.channels.sharded { "SPUBLISH" } else { "PUBLISH" };
    let shared = AppendShared {
        size: link.history_size,
        ttl_ms: link.history_ttl_ms,
        seq_field: &link.seq_field,
        publish,
    };
    scripts::append_command(&shared, &items)
}

/// Sends the whole batch (its appends' seqs assigned: [`assign_seqs`]) as one pipeline and
/// settles every receipt. False when the connection failed: publishes in it are counted as
/// lost (at-most-once, never duplicated); appends not known to be applied stay in `batch`,
/// in order, for the next connection (their receipts settled now, with no position).
///
/// On a Redis Cluster (`topology`), the batch is one master's share: a command Redis
/// redirected (`MOVED`, `ASK`) or could not run yet (`TRYAGAIN`, `CLUSTERDOWN`) ran nowhere,
/// so it stays in `batch` too, publishes included, and the topology learns of it.
pub(super) async fn send_batch(
    connection: &mut MultiplexedConnection,
    batch: &mut Vec<Outbound>,
    link: &ClusterLink,
    topology: Option<&Topology>,
) -> bool {
    let counters = &*link.counters;
    let sharded = link.channels.sharded;
    let mut pipe = redis::pipe();
    let mut appends = false;
    // How many items of `batch` each command of the pipeline carries, in order: runs of
    // appends go in one script call each (up to MAX_APPENDS_PER_CALL).
    let mut spans: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < batch.len() {
        match &batch[i] {
            Outbound::Publish { channel, payload, .. } => {
                let publish = if link.channels.is_sharded(channel) { "SPUBLISH" } else { "PUBLISH" };
                pipe.cmd(publish).arg(&**channel).arg(&**payload);
                spans.push(1);
                i += 1;
            }
            Outbound::CountSubscribers { channel, .. } => {
                let numsub = if link.channels.is_sharded(channel) { "SHARDNUMSUB" } else { "NUMSUB" };
                pipe.cmd("PUBSUB").arg(numsub).arg(&**channel);
                spans.push(1);
                i += 1;
            }
            Outbound::Append { id, .. } => {
                appends = true;
                // On a Redis Cluster one call writes the keys of one slot only.
                let slot = sharded.then(|| slots::slot_of(link.channels.history(id).as_bytes()));
                let run = batch[i..]
                    .iter()
                    .take(MAX_APPENDS_PER_CALL)
                    .take_while(|item| match item {
                        Outbound::Append { id, .. } => slot
                            .is_none_or(|slot| slots::slot_of(link.channels.history(id).as_bytes()) == slot),
                        _ => false,
                    })
                    .count();
                pipe.add_command(append_call(&batch[i..i + run], link));
                spans.push(run);
                i += run;
            }
        }
    }
    if appends || sharded {
        // One script's error (NOSCRIPT, OOM) must not hide the replies of the others,
        // which say which appends were applied.
        pipe.ignore_errors();
    }
    let result: redis::RedisResult<Vec<Value>> = pipe.query_async(connection).await;
    bump(&counters.publish_round_trips, 1);
    let mut ok = result.is_ok();
    let replies = result.unwrap_or_default();
    let mut replies = replies.into_iter();
    let mut published = 0;
    let mut failed = 0;
    let mut released = 0;
    let mut retained = Vec::new();
    let mut items = batch.drain(..);
    for span in spans {
        let reply = replies.next();
        let call: Vec<Outbound> = items.by_ref().take(span).collect();
        let redirected = match (topology, &reply) {
            (Some(topology), Some(reply)) => redirected(reply, topology),
            _ => false,
        };
        if redirected
            && matches!(call.first(), Some(Outbound::Publish { .. } | Outbound::CountSubscribers { .. }))
        {
            // Not run: sent again where the slot is now.
            retained.extend(call);
            continue;
        }
        let appended = match call.first() {
            Some(Outbound::Append { .. }) => {
                let not_run = reply.as_ref().is_some_and(scripts::is_not_run);
                if reply.is_none() || not_run {
                    // Not known to be applied (no reply: the connection failed, some of the
                    // call may have run) or known not to have run: sent again, first, on the
                    // next connection (or, redirected, on this one to where the slot is).
                    ok &= redirected;
                    for mut item in call {
                        if let Outbound::Append { receipt, seq, .. } = &mut item {
                            if let Some(receipt) = receipt.take() {
                                receipt.set_receivers(None);
                            }
                            if not_run {
                                // Nothing of it ran, while a later call may have: a new seq,
                                // or the script would take it for one already applied.
                                *seq = 0;
                            }
                        }
                        retained.push(item);
                    }
                    continue;
                }
                // An error reply (a full Redis) or a reply of no script of ours: not
                // retried, it would fail again.
                reply.as_ref().and_then(|reply| scripts::parse_appends(reply, span).ok())
            }
            _ => None,
        };
        let mut appended = appended.map(Vec::into_iter);
        let mut reply = reply;
        for item in call {
            released += item.queued_bytes();
            match item {
                Outbound::Append { receipt, .. } => {
                    let receivers = match appended.as_mut().and_then(Iterator::next) {
                        Some(Appended::Applied { receivers, position }) => {
                            bump(&counters.history_appends, 1);
                            published += 1;
                            if let Some(receipt) = &receipt {
                                receipt.set_position(position);
                            }
                            Some(receivers)
                        }
                        Some(Appended::Duplicate) => {
                            bump(&counters.history_append_duplicates, 1);
                            None
                        }
                        None => {
                            failed += 1;
                            None
                        }
                    };
                    if let Some(receipt) = receipt {
                        receipt.set_receivers(receivers);
                    }
                }
                Outbound::Publish { receipt, .. } => {
                    let receivers = match reply.take() {
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
                    let count = match reply.take() {
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
    }
    drop(items);
    *batch = retained;
    counters.publish_queued_bytes.fetch_sub(released, Relaxed);
    bump(&counters.published, published);
    bump(&counters.publish_failed, failed);
    ok
}

/// Whether `reply` says the command ran nowhere because of where its slot is: the topology
/// learns where (a `MOVED`), or that it should look again (`ASK`, `TRYAGAIN`, `CLUSTERDOWN`).
fn redirected(reply: &Value, topology: &Topology) -> bool {
    if let Some((slot, node, ask)) = scripts::redirect_of(reply) {
        match ask {
            // A migration under way: retried until the slot has moved (then a MOVED).
            true => topology.refresh_soon(),
            false => topology.moved(slot, node),
        }
        return true;
    }
    let waiting = matches!(reply, Value::ServerError(e) if matches!(e.code(), "TRYAGAIN" | "CLUSTERDOWN"));
    if waiting {
        topology.refresh_soon();
    }
    waiting
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::mpsc;

    use super::*;
    use crate::cluster::test_redis::{Running, TestRedis, TIMEOUT};
    use crate::history::Position;
    use crate::receipt::{Collector, SelfCount};
    use crate::{Message, Receipt};

    fn append_with_receipt(running: &Running, id: &str, body: &str, tx: &mpsc::Sender<(String, Receipt)>) {
        let (tx, body_owned) = (tx.clone(), body.to_owned());
        let receipt =
            Collector::for_receipt(1, SelfCount::Include, move |r| tx.send((body_owned, r)).unwrap());
        running.link.append(id, Message::Text(body), Some(Arc::new(receipt))).unwrap();
    }

    #[test]
    fn an_outage_settles_the_receipts_of_what_is_queued_and_holds_it_in_order() {
        // No Redis needed: this is what the publisher does once it knows Redis is gone.
        let config = super::super::ClusterConfig {
            history_size: 10,
            ..super::super::ClusterConfig::new("redis://127.0.0.1:1")
        };
        let (link, _ends) = ClusterLink::new(&config, 1 << 20);
        let (queue, mut outbound) = tokio::sync::mpsc::channel(2 * MAX_BATCH);
        let (settled, settlements) = mpsc::channel();
        let queued = MAX_BATCH + 10;
        for n in 0..queued {
            let settled = settled.clone();
            let receipt =
                Collector::for_receipt(1, SelfCount::Include, move |r| settled.send((n, r)).unwrap());
            let body = b"x".to_vec();
            let receipt = Some(Arc::new(receipt));
            queue
                .try_send(Outbound::Append {
                    id: format!("id{n}").into(),
                    binary: false,
                    body,
                    seq: 0,
                    receipt,
                })
                .unwrap();
        }
        // A batch the lost connection was about to send stays first.
        let mut batch =
            vec![Outbound::Append { id: "held".into(), binary: false, body: vec![], seq: 3, receipt: None }];

        hold_queued(&mut outbound, &mut batch, &link);

        assert_eq!(batch.len(), MAX_BATCH, "held up to one pipeline's worth");
        let ids: Vec<&str> = batch
            .iter()
            .map(|item| match item {
                Outbound::Append { id, receipt: None, .. } => &**id,
                _ => panic!("an append whose receipt was not taken"),
            })
            .collect();
        let expected: Vec<String> =
            std::iter::once("held".to_owned()).chain((0..MAX_BATCH - 1).map(|n| format!("id{n}"))).collect();
        assert_eq!(ids, expected, "in queue order, after what was held");
        let heard: Vec<(usize, Receipt)> = settlements.try_iter().collect();
        assert_eq!(heard.len(), MAX_BATCH - 1, "every receipt held is settled at once");
        assert!(
            heard.iter().all(|(_, r)| r.position().is_none() && r.nodes.is_none()),
            "no position, no count"
        );
        let mut left = 0;
        while outbound.try_recv().is_ok() {
            left += 1;
        }
        assert_eq!(left, queued - (MAX_BATCH - 1), "the rest waits in the queue for the next attempt");
    }

    #[test]
    fn appends_get_contiguous_offsets_per_id_and_are_published_positioned() {
        let redis = TestRedis::start();
        let mut subscriber = redis.connection();
        let mut pubsub = subscriber.as_pubsub();
        pubsub.psubscribe("t:u:*").unwrap();
        pubsub.set_read_timeout(Some(TIMEOUT)).unwrap();
        let running = Running::start(&redis.url(), 1000);
        let counters = running.link.counters.clone();
        running.wait_until("the publisher is up", || counters.publisher_up.load(Relaxed));

        let (tx, rx) = mpsc::channel();
        for n in 0..10_000 {
            let id = format!("id{}", n % 100);
            append_with_receipt(&running, &id, &format!("{id}/{}", n / 100 + 1), &tx);
        }
        // Every receipt has its position: the k-th message of an id has offset k.
        let mut positions: HashMap<String, Position> = HashMap::new();
        let mut epochs = HashMap::new();
        for _ in 0..10_000 {
            let (body, receipt) = rx.recv_timeout(TIMEOUT).expect("every receipt settles");
            let position = receipt.position().unwrap_or_else(|| panic!("{body} has no position"));
            let (id, k) = body.split_once('/').unwrap();
            assert_eq!(position.offset, k.parse::<u64>().unwrap(), "{body}");
            assert_eq!(*epochs.entry(id.to_owned()).or_insert(position.epoch), position.epoch, "{body}");
            assert_eq!(receipt.nodes, Some(1), "the test's subscriber got it");
            positions.insert(body, position);
        }
        // What Redis published is the version 2 envelope with the same position.
        for _ in 0..10_000 {
            let message = pubsub.get_message().expect("every append is published");
            let payload = message.get_payload_bytes();
            let envelope = envelope::decode(payload).unwrap();
            let Message::Text(body) = envelope.message else { panic!("text was sent") };
            assert_eq!(envelope.origin, "me");
            assert_eq!(message.get_channel_name(), format!("t:u:{}", body.split_once('/').unwrap().0));
            assert_eq!(envelope.position, Some(positions[body]), "{body}");
        }
        assert_eq!(counters.history_appends.load(Relaxed), 10_000);
        assert_eq!(counters.published.load(Relaxed), 10_000);
        let round_trips = counters.publish_round_trips.load(Relaxed);
        assert!(round_trips < 2_000, "pipelined: {round_trips} round trips");
        assert_eq!(counters.publish_queued_bytes.load(Relaxed), 0);
    }

    #[test]
    fn a_full_queue_refuses_an_append_and_sends_nothing() {
        let redis = TestRedis::start();
        let config = crate::ClusterConfig {
            history_size: 10,
            queue_bytes: 100,
            ..crate::ClusterConfig::new(redis.url())
        };
        // No publisher runs: the queue only fills.
        let (link, _ends) = ClusterLink::new(&config, 1 << 20);
        link.append("a", Message::Text("x"), None).unwrap();
        let (tx, rx) = mpsc::channel();
        let receipt = Arc::new(Collector::for_receipt(1, SelfCount::Include, move |r| tx.send(r).unwrap()));
        let big = "y".repeat(50);
        assert!(matches!(link.append("a", Message::Text(&big), Some(receipt)), Err(crate::Error::QueueFull)));
        assert!(rx.try_recv().is_err(), "a refused append leaves its receipt to the caller");
        assert_eq!(link.counters.publish_dropped.load(Relaxed), 1);
        assert_eq!(link.counters.publish_queued_bytes.load(Relaxed), 1 + 1 + 64);
    }

    /// Redis with AOF `appendfsync always` killed twice while appends stream in: after the
    /// reconnections, every append is in its id's history exactly once, in send order, with
    /// no gap, in the same epoch.
    #[test]
    fn appends_survive_redis_restarts_exactly_once() {
        const IDS: usize = 20;
        const SENDS: usize = 6_000;
        let mut redis = TestRedis::start_aof();
        let running = Running::start(&redis.url(), 100_000);
        let counters = running.link.counters.clone();
        running.wait_until("the publisher is up", || counters.publisher_up.load(Relaxed));
        for n in 0..SENDS {
            if n == SENDS / 3 || n == 2 * SENDS / 3 {
                redis.kill9();
                redis.restart();
            }
            let id = format!("id{}", n % IDS);
            running.link.append(&id, Message::Text(&format!("{}", n / IDS)), None).unwrap();
        }
        let mut con = redis.connection();
        running.wait_until("every append is applied", || {
            counters.publish_queued_bytes.load(Relaxed) == 0
                && (0..IDS).all(|i| {
                    let top: Option<u64> =
                        redis::cmd("HGET").arg(format!("t:m:id{i}")).arg("s").query(&mut con).unwrap();
                    top.is_some_and(|top| top >= (SENDS / IDS) as u64)
                })
        });
        for i in 0..IDS {
            let entries: Vec<(String, Vec<(String, String)>)> =
                redis::cmd("XRANGE").arg(format!("t:h:id{i}")).arg("-").arg("+").query(&mut con).unwrap();
            assert_eq!(entries.len(), SENDS / IDS, "id{i}: every append once");
            for (k, (entry_id, fields)) in entries.iter().enumerate() {
                assert_eq!(entry_id, &format!("{}-0", k + 1), "id{i}: contiguous offsets");
                assert_eq!(fields, &[("t".to_owned(), k.to_string())], "id{i}: in send order, no duplicate");
            }
        }
        assert!(counters.history_append_retried.load(Relaxed) > 0, "appends were retried");
        // An append applied whose reply was lost is retried and found applied.
        let applied =
            counters.history_appends.load(Relaxed) + counters.history_append_duplicates.load(Relaxed);
        assert_eq!(applied as usize, SENDS, "each applied once, or found applied");
    }
}

/// Redis's CPU for appends against plain publishes: a measurement, not a check
/// (`cargo test -p wspush --lib redis_cpu -- --ignored --nocapture`).
#[cfg(test)]
mod measure {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::cluster::test_redis::{Running, TestRedis};
    use crate::Message;

    /// utime + stime of a process, in clock ticks (100 per second on Linux).
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn run(history: bool, count: usize) -> (u64, std::time::Duration) {
        let redis = TestRedis::start();
        let running = Running::start(&redis.url(), if history { 100 } else { 0 });
        let counters = running.link.counters.clone();
        running.wait_until("the publisher is up", || counters.publisher_up.load(Relaxed));
        let body = "x".repeat(100);
        let before = cpu_ticks(redis.pid());
        let started = std::time::Instant::now();
        for n in 0..count {
            let id = format!("id{}", n % 1000);
            if history {
                while running.link.append(&id, Message::Text(&body), None).is_err() {
                    std::thread::yield_now();
                }
            } else {
                running.link.publish_send(&id, Message::Text(&body), None);
            }
        }
        running.wait_until("all published", || counters.published.load(Relaxed) as usize >= count);
        (cpu_ticks(redis.pid()) - before, started.elapsed())
    }

    #[test]
    #[ignore = "a measurement; run with --ignored --nocapture"]
    fn redis_cpu_of_appends_and_publishes() {
        let count = 100_000;
        let (publish_ticks, publish_time) = run(false, count);
        let (append_ticks, append_time) = run(true, count);
        println!(
            "redis-server CPU for {count} messages of 100 B to 1,000 ids: plain PUBLISH {} ms ({publish_time:?} wall), \
             append.lua (history_size 100) {} ms ({append_time:?} wall)",
            publish_ticks * 10,
            append_ticks * 10
        );
    }
}
