//! A Redis Cluster's slot map, kept current: asked with `CLUSTER SLOTS` of the nodes known
//! (the last to answer first, then the masters of the map, then the seeds) every
//! [`REFRESH_EVERY`], and at once when a connection says it is stale (a `MOVED`, an
//! unasked `sunsubscribe`, a master that stopped answering). The publisher, the reader and
//! the subscriber route by it and follow its changes.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::{watch, Notify};

use super::connect::RESPONSE_TIMEOUT;
use super::endpoint::Endpoint;
use super::slots::{Node, SlotMap};
use super::stats::ClusterCounters;
use crate::stats::bump;

/// How often the map is asked for when nothing says it changed: a failover shows within
/// about this much after the cluster has promoted a replica.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Least time between two refreshes, however many connections ask.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(50);

/// The current slot map, shared by the backplane's tasks.
pub(super) struct Topology {
    map: watch::Sender<Option<Arc<SlotMap>>>,
    stale: Notify,
}

impl Topology {
    pub fn new() -> Self {
        Self { map: watch::channel(None).0, stale: Notify::new() }
    }

    /// The map as last read, `None` before the first answer.
    pub fn current(&self) -> Option<Arc<SlotMap>> {
        self.map.borrow().clone()
    }

    /// Changes whenever the map does.
    pub fn changes(&self) -> watch::Receiver<Option<Arc<SlotMap>>> {
        self.map.subscribe()
    }

    /// Something says the map is stale: it is asked for again now.
    pub fn refresh_soon(&self) {
        self.stale.notify_one();
    }

    /// A `MOVED` named `node` for `slot`: routed there from now on, ahead of the next map
    /// (which is asked for at once).
    pub fn moved(&self, slot: u16, node: Node) {
        self.map.send_if_modified(|map| match map {
            Some(current) if current.owner(slot) != Some(&node) => {
                let mut updated = SlotMap::clone(current);
                updated.moved(slot, node);
                *map = Some(Arc::new(updated));
                true
            }
            _ => false,
        });
        self.refresh_soon();
    }
}

/// Keeps `topology` current until the node stops.
pub(super) async fn keep_current(
    endpoint: &Endpoint,
    topology: &Topology,
    counters: Arc<ClusterCounters>,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(cluster) = endpoint.cluster() else { return };
    let seeds = cluster.seeds.clone();
    // The node that answered last, and a connection to it.
    let mut asked: Option<(Node, MultiplexedConnection)> = None;
    let mut logged_failure = false;
    loop {
        let mut candidates: Vec<Node> = asked.iter().map(|(node, _)| node.clone()).collect();
        if let Some(map) = topology.current() {
            candidates.extend(map.masters().iter().cloned());
        }
        candidates.extend(seeds.iter().cloned());
        candidates.dedup();
        let mut read = None;
        for node in candidates {
            let connection = match asked.take() {
                Some((last, connection)) if last == node => Some(connection),
                _ => endpoint.node_connection(&node.0, node.1).await.ok(),
            };
            let Some(mut connection) = connection else { continue };
            let question = redis::cmd("CLUSTER").arg("SLOTS").clone();
            let answer =
                tokio::time::timeout(RESPONSE_TIMEOUT, question.query_async::<Value>(&mut connection));
            if let Ok(Ok(reply)) = answer.await {
                match SlotMap::from_cluster_slots(&reply, &node.0) {
                    Ok(map) if !map.masters().is_empty() => {
                        read = Some(map);
                        asked = Some((node, connection));
                        break;
                    }
                    Ok(_) => {}
                    Err(reason) => tracing::warn!(node = %format!("{}:{}", node.0, node.1), %reason,
                        "a cluster node answered CLUSTER SLOTS with no slot map"),
                }
            }
        }
        bump(&counters.slot_map_refreshes, 1);
        match read {
            Some(map) => {
                logged_failure = false;
                let changed = topology.map.send_if_modified(|current| {
                    if current.as_deref() == Some(&map) {
                        return false;
                    }
                    *current = Some(Arc::new(map.clone()));
                    true
                });
                if changed {
                    bump(&counters.slot_map_changes, 1);
                    let masters: Vec<String> =
                        map.masters().iter().map(|(h, p)| format!("{h}:{p}")).collect();
                    tracing::info!(masters = ?masters, complete = map.is_complete(), "Redis Cluster slot map");
                }
            }
            None if !logged_failure => {
                logged_failure = true;
                tracing::warn!("no Redis Cluster node answered CLUSTER SLOTS; asking again");
            }
            None => {}
        }
        let gap = tokio::time::sleep(MIN_REFRESH_GAP);
        tokio::select! {
            () = gap => {}
            _ = stopped.changed() => return,
        }
        tokio::select! {
            () = topology.stale.notified() => {}
            () = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}
