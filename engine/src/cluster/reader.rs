//! The history reader: reads of ids' histories (design §4.2), on a connection of its own
//! so a burst of resumes never waits behind publishes. Requests are pipelined, at most
//! [`MAX_PAGE`] `EVALSHA read` per round trip with at most [`MAX_IN_FLIGHT`] round trips
//! under way; each request is answered exactly once, with its page or why there is none.

use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use tokio::sync::{mpsc, watch};

use super::connect::Reconnector;
use super::endpoint::Endpoint;
use super::link::ClusterLink;
use super::node_pool::NodePool;
use super::scripts::{self, MAX_PAGE, READ};
use super::slots::Node;
use super::topology::Topology;
use crate::history::Page;
use crate::stats::bump;

/// Most reads waiting for the reader; more are refused ([`ClusterLink::read_history`]
/// returns false). Ids are at most `MAX_ID_LEN` bytes, so this bounds the queue's bytes too.
pub(crate) const MAX_QUEUED_READS: usize = 16_384;

/// Most pipelines of reads under way at once.
const MAX_IN_FLIGHT: usize = 4;

/// Called once with the answer to a read, in the backplane task: it must not block (hand
/// the page to a worker's queue, a channel, ...).
pub(crate) type ReadReply = Box<dyn FnOnce(Result<Page, ReadFailed>) + Send>;

/// One read of an id's history.
pub(crate) struct ReadRequest {
    pub id: Box<str>,
    /// The first offset wanted (0: only the position).
    pub from: u64,
    /// Most entries wanted (at most [`MAX_PAGE`] are returned).
    pub count: usize,
    pub reply: ReadReply,
}

/// Why a read has no page. Either way the caller may try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadFailed {
    /// Redis was unreachable, or the connection failed with the read under way.
    #[error("Redis is unreachable")]
    Unavailable,
    /// Redis answered something that is not a page (an error reply, a foreign key).
    #[error("Redis answered the read with no page")]
    BadReply,
}

/// Reads what the link queues until the node stops, reconnecting with backoff; while
/// Redis is unreachable every read is answered [`ReadFailed::Unavailable`] at once.
pub(super) async fn read_loop(
    endpoint: &Endpoint,
    mut requests: mpsc::Receiver<ReadRequest>,
    link: Arc<ClusterLink>,
    stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let unreachable = "cannot reach Redis to read history; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, counters.clone(), stopped);
    let mut master_changes = endpoint.master_changes();
    loop {
        master_changes.borrow_and_update();
        let connection = tokio::select! {
            connection = reconnect.connect_until_up(|| open(endpoint)) => connection,
            () = fail_all(&mut requests, &link) => None,
        };
        let Some(connection) = connection else { return };
        reconnect.up();
        tracing::info!("history reader connected to Redis");
        let mut in_flight = FuturesUnordered::new();
        let mut broken = false;
        loop {
            if broken && in_flight.is_empty() {
                break;
            }
            let mut batch = Vec::new();
            tokio::select! {
                received = requests.recv_many(&mut batch, MAX_PAGE), if !broken && in_flight.len() < MAX_IN_FLIGHT => {
                    if received == 0 {
                        return;
                    }
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for request in &batch {
                        let (stream, meta) = (link.channels.history(&request.id), link.channels.history_meta(&request.id));
                        pipe.add_command(scripts::read_command(&stream, &meta, request.from, request.count, link.history_ttl_ms));
                    }
                    bump(&counters.history_reads, batch.len() as u64);
                    bump(&counters.history_read_round_trips, 1);
                    let mut connection = connection.clone();
                    in_flight.push(async move {
                        let result: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut connection).await;
                        (batch, result)
                    });
                }
                Some((batch, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    broken |= !answer(batch, result, &link);
                }
                // A demoted master may be behind the new one: finish what is in flight, then
                // read from the new master.
                Ok(()) = master_changes.changed(), if !broken => broken = true,
                _ = reconnect.stopped().changed() => {
                    // Answered (dropped) with the runtime: a stopping node has no one to answer.
                    return;
                }
            }
        }
        tracing::warn!("history reader lost its Redis connection; reconnecting");
    }
}

/// A connection with the read script loaded.
async fn open(endpoint: &Endpoint) -> Result<redis::aio::MultiplexedConnection, String> {
    let mut connection = endpoint.publisher().await.map_err(|e| e.to_string())?;
    load_script(&mut connection, &READ).await?;
    Ok(connection)
}

/// `SCRIPT LOAD`s `script` and checks Redis names it by the SHA this build computed.
pub(super) async fn load_script(
    connection: &mut redis::aio::MultiplexedConnection,
    script: &scripts::Script,
) -> Result<(), String> {
    let sha: String = script.load().query_async(connection).await.map_err(|e| e.to_string())?;
    if sha != script.sha {
        return Err(format!("Redis named a script {sha}, this build expects {}", script.sha));
    }
    Ok(())
}

/// Answers every read of a pipeline; false when the connection should be replaced (it
/// failed, or Redis lost the script).
fn answer(batch: Vec<ReadRequest>, result: redis::RedisResult<Vec<Value>>, link: &ClusterLink) -> bool {
    let counters = &link.counters;
    let (ok, replies) = match result {
        Ok(replies) => (true, replies),
        Err(_) => (false, Vec::new()),
    };
    let mut healthy = ok;
    let mut replies = replies.into_iter();
    for request in batch {
        let page = match replies.next() {
            None => Err(ReadFailed::Unavailable),
            Some(reply) if scripts::is_noscript(&reply) => {
                healthy = false;
                Err(ReadFailed::Unavailable)
            }
            Some(reply) => scripts::parse_read(reply).map_err(|_| ReadFailed::BadReply),
        };
        if page.is_err() {
            bump(&counters.history_read_failed, 1);
        }
        (request.reply)(page);
    }
    healthy
}

/// The reader on a Redis Cluster: each pipeline goes to the master of its reads' slots
/// (the reads of a batch split by master); a read whose master is unknown or unreachable is
/// answered [`ReadFailed::Unavailable`] (its worker asks again with backoff) and the map is
/// asked for again.
pub(super) async fn read_sharded(
    endpoint: &Endpoint,
    topology: &Topology,
    mut requests: mpsc::Receiver<ReadRequest>,
    link: Arc<ClusterLink>,
    mut stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let mut pool = NodePool::new(endpoint, vec![&READ]);
    let mut in_flight = FuturesUnordered::new();
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            received = requests.recv_many(&mut batch, MAX_PAGE), if in_flight.len() < MAX_IN_FLIGHT => {
                if received == 0 {
                    return;
                }
                let Some(map) = topology.current() else {
                    fail(batch, &link);
                    continue;
                };
                let mut shares: Vec<(Node, Vec<ReadRequest>)> = Vec::new();
                let mut unserved = Vec::new();
                for request in batch {
                    match map.owner_of(link.channels.history(&request.id).as_bytes()) {
                        Some(node) => match shares.iter_mut().find(|(n, _)| n == node) {
                            Some((_, share)) => share.push(request),
                            None => shares.push((node.clone(), vec![request])),
                        },
                        None => unserved.push(request),
                    }
                }
                if !unserved.is_empty() {
                    topology.refresh_soon();
                    fail(unserved, &link);
                }
                for (node, share) in shares {
                    let mut connection = match pool.get(&node).await {
                        Ok(connection) => connection,
                        Err(_) => {
                            topology.refresh_soon();
                            fail(share, &link);
                            continue;
                        }
                    };
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for request in &share {
                        let (stream, meta) = (link.channels.history(&request.id), link.channels.history_meta(&request.id));
                        pipe.add_command(scripts::read_command(&stream, &meta, request.from, request.count, link.history_ttl_ms));
                    }
                    bump(&counters.history_reads, share.len() as u64);
                    bump(&counters.history_read_round_trips, 1);
                    in_flight.push(async move {
                        let result: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut connection).await;
                        (node, share, result)
                    });
                }
            }
            Some((node, share, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Ok(replies) = &result {
                    for reply in replies {
                        match scripts::redirect_of(reply) {
                            Some((slot, to, false)) => topology.moved(slot, to),
                            Some((_, _, true)) => topology.refresh_soon(),
                            None => {}
                        }
                    }
                }
                if !answer(share, result, &link) {
                    pool.forget(&node);
                    topology.refresh_soon();
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Answers every read of `batch` [`ReadFailed::Unavailable`].
fn fail(batch: Vec<ReadRequest>, link: &ClusterLink) {
    for request in batch {
        bump(&link.counters.history_read_failed, 1);
        (request.reply)(Err(ReadFailed::Unavailable));
    }
}

/// Answers every read [`ReadFailed::Unavailable`] as it comes; never returns.
async fn fail_all(requests: &mut mpsc::Receiver<ReadRequest>, link: &ClusterLink) {
    while let Some(request) = requests.recv().await {
        bump(&link.counters.history_read_failed, 1);
        (request.reply)(Err(ReadFailed::Unavailable));
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::mpsc;

    use super::*;
    use crate::cluster::test_redis::{Running, TestRedis, TIMEOUT};
    use crate::history::Position;
    use crate::Message;

    fn read(running: &Running, id: &str, from: u64, count: usize) -> Result<Page, ReadFailed> {
        let (tx, rx) = mpsc::channel();
        let reply: ReadReply = Box::new(move |page| tx.send(page).unwrap());
        assert!(running.link.read_history(id, from, count, reply), "the read queue has room");
        rx.recv_timeout(TIMEOUT).expect("every read is answered")
    }

    #[test]
    fn reads_return_pages_and_positions() {
        let redis = TestRedis::start();
        let running = Running::start(&redis.url(), 1000);
        running.wait_until("the reader is up", || read(&running, "x", 0, 1).is_ok());
        for n in 1..=300 {
            running.link.append("r", Message::Text(&n.to_string()), None).unwrap();
        }
        let counters = running.link.counters.clone();
        let failed_before = counters.history_read_failed.load(Relaxed);
        running.wait_until("the appends are applied", || counters.history_appends.load(Relaxed) == 300);
        let first = read(&running, "r", 1, 1000).unwrap();
        assert_eq!((first.top, first.entries.len()), (300, MAX_PAGE), "a page is at most {MAX_PAGE}");
        assert!(first.reaches(Position::new(first.epoch, 0)));
        for (i, entry) in first.entries.iter().enumerate() {
            assert_eq!((entry.offset, &entry.body[..]), (i as u64 + 1, (i + 1).to_string().as_bytes()));
        }
        let rest = read(&running, "r", 257, 256).unwrap();
        assert_eq!(
            rest.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            (257..=300).collect::<Vec<_>>()
        );
        assert_eq!(rest.epoch, first.epoch);
        let position = read(&running, "r", 0, 256).unwrap();
        assert_eq!((position.epoch, position.top, position.entries.len()), (first.epoch, 300, 0));
        assert_eq!(counters.history_read_failed.load(Relaxed), failed_before);
    }

    #[test]
    fn a_burst_of_reads_is_pipelined() {
        let redis = TestRedis::start();
        let running = Running::start(&redis.url(), 1000);
        running.wait_until("the reader is up", || read(&running, "x", 0, 1).is_ok());
        let counters = running.link.counters.clone();
        let round_trips_before = counters.history_read_round_trips.load(Relaxed);
        let (tx, rx) = mpsc::channel();
        for n in 0..10_000 {
            let id = format!("b{}", n % 1000);
            let tx = tx.clone();
            let reply_id = id.clone();
            let reply: ReadReply = Box::new(move |page| tx.send((reply_id, page)).unwrap());
            assert!(running.link.read_history(&id, 0, 1, reply), "16,384 reads fit in the queue");
        }
        let mut epochs = HashMap::new();
        for _ in 0..10_000 {
            let (id, page) = rx.recv_timeout(TIMEOUT).expect("every read is answered");
            let page = page.expect("Redis is up");
            assert_eq!((page.top, page.entries.len()), (0, 0), "a silent id");
            assert_eq!(
                *epochs.entry(id).or_insert(page.epoch),
                page.epoch,
                "one epoch per id, made by the first read"
            );
        }
        assert_eq!(epochs.len(), 1000);
        let round_trips = counters.history_read_round_trips.load(Relaxed) - round_trips_before;
        assert!(round_trips <= 10_000 / MAX_PAGE as u64 * 3, "{round_trips} round trips for 10,000 reads");
        assert!(counters.history_reads.load(Relaxed) >= 10_000);
    }

    #[test]
    fn reads_fail_while_redis_is_down_and_succeed_after_it_returns() {
        let mut redis = TestRedis::start();
        let running = Running::start(&redis.url(), 1000);
        running.wait_until("the reader is up", || read(&running, "x", 0, 1).is_ok());
        redis.kill9();
        // The connection is found broken by the read itself, or already: either way no page.
        assert_eq!(read(&running, "x", 0, 1), Err(ReadFailed::Unavailable));
        assert!(running.link.counters.history_read_failed.load(Relaxed) >= 1);
        redis.restart();
        running.wait_until("the reader reconnected", || read(&running, "x", 0, 1).is_ok());
    }
}
