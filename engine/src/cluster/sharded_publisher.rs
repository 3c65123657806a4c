//! The publisher on a Redis Cluster: what is queued is split by the master of each item's
//! slot and sent to every master at once, one pipeline each (`publisher::send_batch`), so a
//! batch costs one round trip however many shards it touches. Items a master redirected or
//! could not reach stay, in order, for the next round, which routes them by the map as it is
//! then.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{mpsc, watch};

use super::endpoint::Endpoint;
use super::link::{ClusterLink, Outbound};
use super::node_pool::NodePool;
use super::publisher::{assign_seqs, send_batch, settle_waiting, take_queued, MAX_BATCH};
use super::scripts::{APPEND, READ};
use super::slots::{Node, SlotMap};
use super::topology::Topology;

/// The wait before items that could not go (a master unreachable, a slot migrating) are
/// tried again: the map is asked for meanwhile.
const RETRY_AFTER: Duration = Duration::from_millis(20);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Publishes what the link queues, by slot, until the node stops.
pub(super) async fn publish_sharded(
    endpoint: &Endpoint,
    topology: &Topology,
    mut outbound: mpsc::Receiver<Outbound>,
    link: Arc<ClusterLink>,
    mut stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let history = link.history_enabled();
    let mut pool = NodePool::new(endpoint, if history { vec![&APPEND, &READ] } else { Vec::new() });
    let mut batch: Vec<Outbound> = Vec::with_capacity(MAX_BATCH);
    let mut next_seq = 1;
    let mut retry_after = RETRY_AFTER;
    let mut maps = topology.changes();
    // Whether the last round reached every master it had items for.
    let mut last_round_sent = true;
    loop {
        let stopping = *stopped.borrow();
        if batch.is_empty() && !stopping {
            let map_known = maps.borrow_and_update().as_ref().is_some_and(|map| map.is_complete());
            counters.publisher_up.store(map_known && last_round_sent, Relaxed);
            tokio::select! {
                received = outbound.recv_many(&mut batch, MAX_BATCH) => if received == 0 { return },
                Ok(()) = maps.changed() => continue,
                _ = stopped.changed() => {}
            }
        } else {
            take_queued(&mut outbound, &mut batch);
        }
        let stopping = *stopped.borrow();
        let Some(map) = topology.current() else {
            counters.publisher_up.store(false, Relaxed);
            settle_waiting(&mut batch);
            if stopping {
                return;
            }
            tokio::select! {
                _ = maps.changed() => {}
                _ = stopped.changed() => {}
            }
            continue;
        };
        pool.keep_only(map.masters());
        assign_seqs(&mut batch, &link, &mut next_seq);
        let (shares, unserved) = split_by_master(std::mem::take(&mut batch), &map, &link);
        let mut sends = Vec::with_capacity(shares.len());
        let mut unreachable = Vec::new();
        for (node, share) in shares {
            match pool.get(&node).await {
                Ok(connection) => sends.push((node, connection, share)),
                Err(e) => {
                    tracing::debug!(node = %format!("{}:{}", node.0, node.1), error = %e, "cannot reach a Redis Cluster master");
                    unreachable.push((node, share));
                }
            }
        }
        let results = join_all(sends.into_iter().map(|(node, mut connection, mut share)| {
            let link = &link;
            async move {
                let ok = send_batch(&mut connection, &mut share, link, Some(topology)).await;
                (node, ok, share)
            }
        }))
        .await;
        // What goes again next round, in the order it came (each id's items are in one share).
        let mut all_sent = unreachable.is_empty() && unserved.is_empty();
        for (node, ok, left) in results {
            if !ok {
                pool.forget(&node);
                all_sent = false;
            }
            all_sent &= left.is_empty();
            batch.extend(left);
        }
        for (node, share) in unreachable {
            pool.forget(&node);
            batch.extend(share);
        }
        batch.extend(unserved);
        last_round_sent = all_sent || batch.is_empty();
        counters.publisher_up.store(last_round_sent && map.is_complete(), Relaxed);
        if batch.is_empty() {
            retry_after = RETRY_AFTER;
            if stopping {
                return;
            }
            continue;
        }
        if stopping {
            // A stopping node does not wait for a cluster that cannot take its last items.
            settle_waiting(&mut batch);
            return;
        }
        topology.refresh_soon();
        settle_waiting(&mut batch);
        tokio::select! {
            () = tokio::time::sleep(retry_after) => {}
            _ = stopped.changed() => {}
        }
        retry_after = (retry_after * 2).min(MAX_RETRY_AFTER);
    }
}

/// `batch` split by the master of each item's slot (publishes on classic channels go to any
/// master: Redis Cluster relays a PUBLISH to every node), and the items whose slot has no
/// master now.
fn split_by_master(
    batch: Vec<Outbound>,
    map: &SlotMap,
    link: &ClusterLink,
) -> (Vec<(Node, Vec<Outbound>)>, Vec<Outbound>) {
    let mut shares: Vec<(Node, Vec<Outbound>)> = Vec::new();
    let mut unserved = Vec::new();
    for item in batch {
        let owner = match &item {
            Outbound::Publish { channel, .. } | Outbound::CountSubscribers { channel, .. }
                if !link.channels.is_sharded(channel) =>
            {
                map.masters().first()
            }
            Outbound::Publish { channel, .. } | Outbound::CountSubscribers { channel, .. } => {
                map.owner_of(channel.as_bytes())
            }
            Outbound::Append { id, .. } => map.owner_of(link.channels.history(id).as_bytes()),
        };
        match owner {
            Some(node) => match shares.iter_mut().find(|(n, _)| n == node) {
                Some((_, share)) => share.push(item),
                None => shares.push((node.clone(), vec![item])),
            },
            None => unserved.push(item),
        }
    }
    (shares, unserved)
}
