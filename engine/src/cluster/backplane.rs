//! The backplane: a current-thread tokio runtime running the [publisher](super::publisher),
//! the [subscriber](super::subscriber) and, with history on, the [reader](super::reader),
//! each on a Redis connection of its own that it reconnects on its own; and, with Sentinels,
//! the [watch on the master](super::sentinel) that has them all reconnect after a failover.
//! On a Redis Cluster the same three work per master, routed by the [slot map](super::topology).
//!
//! Worker 0 hosts it between its passes (`worker::HostedTask`): a message from Redis for one
//! of worker 0's sockets is read and written on one thread, with no wake-up of another.
//! While worker 0 is busy with a burst, a helper thread of its own runs it instead, so Redis
//! is read as fast as it writes.

use std::sync::Arc;

use tokio::sync::watch;

use super::endpoint::Endpoint;
use super::link::{ClusterLink, LinkEnds};
use super::publisher::publish_loop;
use super::reader::{read_loop, read_sharded};
use super::routing::{Router, Workers};
use super::sentinel::follow_failovers;
use super::sharded_publisher::publish_sharded;
use super::sharded_subscriber::subscribe_sharded;
use super::subscriber::subscribe_loop;
use super::topology::{keep_current, Topology};
use super::ClusterConfig;
use crate::worker::{HostedTask, Task};
use crate::Error;

/// The running backplane: the way to stop it.
pub(crate) struct Backplane {
    stop: watch::Sender<bool>,
}

impl Backplane {
    /// Starts the backplane on worker 0 of `shards`. Redis need not be reachable: the node
    /// runs degraded and retries.
    pub fn start(
        config: &ClusterConfig,
        link: Arc<ClusterLink>,
        ends: LinkEnds,
        shards: Workers,
    ) -> Result<Self, Error> {
        let endpoint = Endpoint::of(config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the backplane runtime", e))?;
        let (stop, stopped) = watch::channel(false);
        let router = Router::new(link.clone(), shards.clone());
        tracing::info!(node_id = link.node_id(), redis = %config.redacted_url(), "cluster mode");
        let task: Task = if endpoint.cluster().is_some() {
            Box::pin(run_sharded(endpoint, link, ends, shards.clone(), stopped))
        } else {
            Box::pin(run_single(endpoint, link, ends, router, stopped))
        };
        shards.host(HostedTask { runtime, task })?;
        Ok(Self { stop })
    }

    /// Tells the backplane to flush what is queued (briefly) and close its connections; it
    /// has ended when worker 0's thread has.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

/// The backplane on one Redis (or the master its Sentinels name).
async fn run_single(
    endpoint: Endpoint,
    link: Arc<ClusterLink>,
    LinkEnds { outbound, changes, reads }: LinkEnds,
    router: Router,
    stopped: watch::Receiver<bool>,
) {
    // The subscriber reads all the time, so it sees a dropped connection first and tells
    // the publisher, which may have nothing to send for a while.
    let (lost, lost_seen) = watch::channel(0u64);
    let publisher = publish_loop(&endpoint, outbound, link.clone(), lost_seen, stopped.clone());
    // History reads have a connection of their own, only with history on.
    let reader = async {
        if link.history_enabled() {
            read_loop(&endpoint, reads, link.clone(), stopped.clone()).await;
        }
    };
    // With Sentinels: which server is master, followed (nothing for one Redis).
    let failovers = follow_failovers(&endpoint, link.counters.clone(), stopped.clone());
    let subscriber = subscribe_loop(&endpoint, changes, &link, router, lost, stopped.clone());
    tokio::join!(publisher, reader, subscriber, failovers);
}

/// The backplane on a Redis Cluster: the slot map kept current, and the publisher, the
/// reader and the subscriber routing by it.
async fn run_sharded(
    endpoint: Endpoint,
    link: Arc<ClusterLink>,
    LinkEnds { outbound, changes, reads }: LinkEnds,
    workers: Workers,
    stopped: watch::Receiver<bool>,
) {
    let endpoint = Arc::new(endpoint);
    let topology = Arc::new(Topology::new());
    let map = keep_current(&endpoint, &topology, link.counters.clone(), stopped.clone());
    let publisher = publish_sharded(&endpoint, &topology, outbound, link.clone(), stopped.clone());
    let reader = async {
        if link.history_enabled() {
            read_sharded(&endpoint, &topology, reads, link.clone(), stopped.clone()).await;
        }
    };
    let subscriber = subscribe_sharded(
        endpoint.clone(),
        topology.clone(),
        changes,
        link.clone(),
        workers,
        stopped.clone(),
    );
    // The map's task runs until the stop; the others end on their own.
    tokio::join!(map, publisher, reader, subscriber);
}

impl Drop for Backplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}
