//! The subscriber on a Redis Cluster (sharded pub/sub): one connection per master, each
//! subscribed (`SSUBSCRIBE`) to the channels whose slots that master serves, and a
//! coordinator that keeps every channel the node wants on the master of its slot.
//!
//! The coordinator follows the slot map (`topology`): a channel whose slot moved (a
//! resharding, a replica promoted after its master failed, a shard added or removed) is
//! unsubscribed where it was and subscribed where it is now. A master also tells when it is
//! wrong: `MOVED` for a subscription sent to it, an unasked `sunsubscribe` when a slot it
//! served moved away; the channel is then re-homed once the map says where. With history on,
//! a new subscription's confirmation is the barrier after which its id's worker reads what it
//! missed meanwhile (`worker/live.rs`), so a move costs a catch-up, not a loss. A lost
//! connection voids every confirmation (the workers learn it from
//! `ClusterLink::subscription_losses`), so the other masters' connections confirm their
//! channels again at once rather than leaving their ids to wait.
//!
//! SSUBSCRIBE takes the channels of one slot per command, and each id is its own slot: a
//! connect storm becomes many commands, written together (one write, one round trip per
//! batch of changes), never one round trip per id.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::connect::{timed_out, Reconnector, KEEPALIVE, RESPONSE_TIMEOUT};
use super::endpoint::Endpoint;
use super::link::{Change, ClusterLink};
use super::routing::{route_received, Replies, Router, Workers};
use super::slots::{self, Node, SlotMap};
use super::subscription::Subscription;
use super::topology::Topology;
use crate::stats::bump;

/// Changes arriving together are gathered for up to this long (checked every
/// `COALESCE_STEP`), so a storm of connects is written in a few batches.
const COALESCE_STEP: Duration = Duration::from_millis(5);
const COALESCE_MAX: Duration = Duration::from_millis(50);
/// How often channels with no master (their slot unserved, or redirected) are placed again.
const REPLACE_EVERY: Duration = Duration::from_millis(200);

/// What the coordinator tells a master's connection.
#[derive(Debug)]
enum ShardOp {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
    /// Another connection was lost (every confirmation is void): confirm the channels
    /// this one holds again.
    Reconfirm,
}

/// What a master's connection tells the coordinator.
#[derive(Debug)]
enum Report {
    /// Connected, and what it was given when it connected is confirmed.
    Up(Node),
    /// The connection was lost (its confirmations are void).
    Lost(Node),
    /// The master does not serve these channels (any more): place them again.
    Orphaned(Node, Vec<Box<str>>),
}

struct Shard {
    ops: mpsc::UnboundedSender<ShardOp>,
    up: bool,
    task: tokio::task::JoinHandle<()>,
}

/// Keeps every channel the node wants subscribed on the master of its slot, until the node
/// stops.
pub(super) async fn subscribe_sharded(
    endpoint: Arc<Endpoint>,
    topology: Arc<Topology>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    link: Arc<ClusterLink>,
    workers: Workers,
    mut stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let mut shards: HashMap<Node, Shard> = HashMap::new();
    // Every channel wanted, and the master it is subscribed on (`None`: not placed yet).
    let mut home: HashMap<Box<str>, Option<Node>> = HashMap::new();
    home.insert(link.channels.all.as_str().into(), None);
    if let Some(compat) = &link.channels.compat {
        home.insert(compat.as_str().into(), None);
    }
    let mut maps = topology.changes();
    let mut replace = tokio::time::interval(REPLACE_EVERY);
    let shard_stopped = stopped.clone();
    let spawn = |node: &Node, shards: &mut HashMap<Node, Shard>| {
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(shard_loop(
            node.clone(),
            endpoint.clone(),
            link.clone(),
            Router::new(link.clone(), workers.clone()),
            ops_rx,
            report_tx.clone(),
            shard_stopped.clone(),
        ));
        shards.insert(node.clone(), Shard { ops, up: false, task });
    };
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { break };
                let map = topology.current();
                let mut batch = vec![change];
                while let Ok(change) = changes.try_recv() {
                    batch.push(change);
                }
                for change in batch {
                    match change {
                        Change::Subscribe(id) => {
                            let channel: Box<str> = link.channels.user(&id).into();
                            if !home.contains_key(&channel) {
                                home.insert(channel.clone(), None);
                                place(&channel, map.as_deref(), &link, &mut home, &mut shards, &spawn);
                            }
                        }
                        Change::Unsubscribe(id) => {
                            let channel: Box<str> = link.channels.user(&id).into();
                            if let Some(Some(node)) = home.remove(&channel) {
                                if let Some(shard) = shards.get(&node) {
                                    let _ = shard.ops.send(ShardOp::Unsubscribe(channel));
                                }
                            }
                        }
                    }
                }
            }
            Ok(()) = maps.changed() => {
                let map = maps.borrow_and_update().clone();
                if let Some(map) = map.as_deref() {
                    rehome(map, &link, &mut home, &mut shards, &spawn);
                    // A connection to every master, ready before the ids that will need it:
                    // a new id is then subscribed at once, as with one Redis.
                    for master in map.masters() {
                        if !shards.contains_key(master) {
                            spawn(master, &mut shards);
                        }
                    }
                }
            }
            report = reports.recv() => {
                let Some(report) = report else { break };
                match report {
                    Report::Up(node) => {
                        if let Some(shard) = shards.get_mut(&node) {
                            shard.up = true;
                        }
                    }
                    Report::Lost(node) => {
                        if let Some(shard) = shards.get_mut(&node) {
                            shard.up = false;
                        }
                        // Its confirmations are void, and so (to the workers) are all others:
                        // the other connections confirm theirs again.
                        for (other, shard) in &shards {
                            if *other != node {
                                let _ = shard.ops.send(ShardOp::Reconfirm);
                            }
                        }
                    }
                    Report::Orphaned(node, channels) => {
                        for channel in channels {
                            if let Some(placed) = home.get_mut(&channel) {
                                if placed.as_ref() == Some(&node) {
                                    *placed = None;
                                    bump(&counters.resubscribes, 1);
                                }
                            }
                        }
                        topology.refresh_soon();
                    }
                }
            }
            _ = replace.tick() => {
                let map = topology.current();
                let unplaced: Vec<Box<str>> =
                    home.iter().filter(|(_, node)| node.is_none()).map(|(channel, _)| channel.clone()).collect();
                for channel in unplaced {
                    place(&channel, map.as_deref(), &link, &mut home, &mut shards, &spawn);
                }
            }
            _ = stopped.changed() => break,
        }
        let unplaced = home.values().any(Option::is_none);
        let wanted: HashSet<&Node> = home.values().flatten().collect();
        let all_up = wanted.iter().all(|node| shards.get(*node).is_some_and(|shard| shard.up));
        counters.subscriber_up.store(!unplaced && all_up, Relaxed);
        counters.shards.store(shards.len() as u64, Relaxed);
        counters.shards_up.store(shards.values().filter(|shard| shard.up).count() as u64, Relaxed);
    }
    counters.subscriber_up.store(false, Relaxed);
    for (_, shard) in shards {
        drop(shard.ops);
        let _ = shard.task.await;
    }
}

/// Where `channel` belongs by `map`: the master of its slot (a classic channel, the compat
/// one: the first master, as a PUBLISH reaches every node).
fn master_for<'m>(channel: &str, map: &'m SlotMap, link: &ClusterLink) -> Option<&'m Node> {
    match link.channels.is_sharded(channel) {
        true => map.owner_of(channel.as_bytes()),
        false => map.masters().first(),
    }
}

/// Subscribes `channel` (not placed yet) on its master by `map`, starting that master's
/// connection if it has none.
fn place(
    channel: &str,
    map: Option<&SlotMap>,
    link: &ClusterLink,
    home: &mut HashMap<Box<str>, Option<Node>>,
    shards: &mut HashMap<Node, Shard>,
    spawn: &impl Fn(&Node, &mut HashMap<Node, Shard>),
) {
    let Some(node) = map.and_then(|map| master_for(channel, map, link)) else { return };
    if !shards.contains_key(node) {
        spawn(node, shards);
    }
    let _ = shards[node].ops.send(ShardOp::Subscribe(channel.into()));
    home.insert(channel.into(), Some(node.clone()));
}

/// The map changed: every channel whose master is another now moves there; connections to
/// nodes that are no longer masters end.
fn rehome(
    map: &SlotMap,
    link: &ClusterLink,
    home: &mut HashMap<Box<str>, Option<Node>>,
    shards: &mut HashMap<Node, Shard>,
    spawn: &impl Fn(&Node, &mut HashMap<Node, Shard>),
) {
    let mut moving = Vec::new();
    for (channel, placed) in home.iter() {
        let wanted = master_for(channel, map, link);
        if placed.as_ref() != wanted {
            moving.push((channel.clone(), placed.clone()));
        }
    }
    for (channel, from) in moving {
        if let Some(shard) = from.as_ref().and_then(|from| shards.get(from)) {
            let _ = shard.ops.send(ShardOp::Unsubscribe(channel.clone()));
        }
        home.insert(channel.clone(), None);
        bump(&link.counters.resubscribes, u64::from(from.is_some()));
        place(&channel, Some(map), link, home, shards, spawn);
    }
    shards.retain(|node, shard| {
        let keep = map.masters().contains(node);
        if !keep {
            shard.task.abort();
        }
        keep
    });
}

/// One master's connection: subscribed to the channels the coordinator gives it, until the
/// coordinator drops it or the node stops.
async fn shard_loop(
    node: Node,
    endpoint: Arc<Endpoint>,
    link: Arc<ClusterLink>,
    mut router: Router,
    mut ops: mpsc::UnboundedReceiver<ShardOp>,
    reports: mpsc::UnboundedSender<Report>,
    stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let address = format!("{}:{}", node.0, node.1);
    let unreachable = "cannot reach a Redis Cluster master to subscribe; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, counters.clone(), stopped);
    let auth = endpoint.node_auth();
    let mut state = ShardState {
        node: node.clone(),
        link: link.clone(),
        wanted: HashSet::new(),
        pending: HashSet::new(),
        confirmed: HashSet::new(),
        orphans: Vec::new(),
    };
    loop {
        let connected = reconnect.connect_until_up(|| {
            while let Ok(op) = ops.try_recv() {
                state.apply_offline(op);
            }
            let (open, address) = (endpoint.open_subscription(&node.0, node.1, &auth), &address);
            async move {
                let opened = tokio::time::timeout(RESPONSE_TIMEOUT, open).await.map_err(|_| timed_out())?;
                opened.map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))
            }
        });
        let Some(mut conn) = connected.await else { return };
        reconnect.up();
        state.pending.clear();
        state.confirmed.clear();
        let wanted: Vec<Box<str>> = state.wanted.iter().cloned().collect();
        let mut ok = state.write(&mut conn, wanted, Vec::new(), &reports).await.is_ok();
        let mut awaiting_pong = false;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut reported_up = false;
        while ok {
            if let Err(e) = route_received(&mut conn, &mut router, &mut awaiting_pong, &mut state) {
                tracing::warn!(master = %address, error = %e, "a Redis Cluster subscriber connection is unusable");
                break;
            }
            state.send_orphans(&reports);
            if !reported_up && state.pending.is_empty() {
                // Up once what it was given is confirmed; later subscriptions (new ids) being
                // confirmed do not make the node unhealthy meanwhile, as with one Redis.
                reported_up = true;
                let _ = reports.send(Report::Up(node.clone()));
            }
            if router.is_waiting() {
                router.wait_for_worker().await;
                continue;
            }
            tokio::select! {
                read = conn.fill() => ok = read.is_ok(),
                op = ops.recv() => {
                    let Some(op) = op else { return };
                    let mut batch = vec![op];
                    let started = tokio::time::Instant::now();
                    loop {
                        tokio::time::sleep(COALESCE_STEP).await;
                        let before = batch.len();
                        while let Ok(op) = ops.try_recv() {
                            batch.push(op);
                        }
                        if batch.len() == before || started.elapsed() >= COALESCE_MAX {
                            break;
                        }
                    }
                    let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
                    for op in batch {
                        match op {
                            ShardOp::Subscribe(channel) => {
                                unsubscribe.retain(|c| *c != channel);
                                if state.wanted.insert(channel.clone()) {
                                    subscribe.push(channel);
                                }
                            }
                            ShardOp::Unsubscribe(channel) => {
                                subscribe.retain(|c| *c != channel);
                                if state.wanted.remove(&channel) {
                                    state.pending.remove(&channel);
                                    if state.confirmed.remove(&channel) {
                                        counters.subscribed_channels.fetch_sub(1, Relaxed);
                                    }
                                    unsubscribe.push(channel);
                                }
                            }
                            ShardOp::Reconfirm => {
                                for channel in &state.confirmed {
                                    if let Some(id) = link.channels.id_of(channel) {
                                        router.confirm_subscribed(id.into());
                                    }
                                }
                            }
                        }
                    }
                    ok = state.write(&mut conn, subscribe, unsubscribe, &reports).await.is_ok();
                }
                _ = keepalive.tick() => {
                    // A PING unanswered by the next tick means a silently broken connection.
                    conn.queue(&[b"PING"]);
                    ok = !awaiting_pong && conn.flush().await.is_ok();
                    awaiting_pong = true;
                }
                _ = reconnect.stopped().changed() => return,
            }
        }
        // Every confirmation of this connection is void.
        router.connection_lost();
        let _ = reports.send(Report::Lost(node.clone()));
        counters.subscribed_channels.fetch_sub(state.confirmed.len() as u64, Relaxed);
        tracing::warn!(master = %address, "lost a Redis Cluster subscriber connection; reconnecting and resubscribing");
        if reconnect.pause().await {
            return;
        }
    }
}

/// The channels of one master's connection.
struct ShardState {
    node: Node,
    link: Arc<ClusterLink>,
    /// What the coordinator placed here.
    wanted: HashSet<Box<str>>,
    /// Subscribed on this connection, not confirmed yet.
    pending: HashSet<Box<str>>,
    /// Confirmed on this connection.
    confirmed: HashSet<Box<str>>,
    /// Channels the master said it does not serve, to hand back to the coordinator.
    orphans: Vec<Box<str>>,
}

impl ShardState {
    /// An op while disconnected: only what is wanted changes.
    fn apply_offline(&mut self, op: ShardOp) {
        match op {
            ShardOp::Subscribe(channel) => {
                self.wanted.insert(channel);
            }
            ShardOp::Unsubscribe(channel) => {
                self.wanted.remove(&channel);
            }
            ShardOp::Reconfirm => {}
        }
    }

    /// Writes the (un)subscriptions of `subscribe` and `unsubscribe` in one write: one
    /// SSUBSCRIBE per slot (a command takes one slot's channels), classic channels with
    /// SUBSCRIBE.
    async fn write(
        &mut self,
        conn: &mut Subscription,
        subscribe: Vec<Box<str>>,
        unsubscribe: Vec<Box<str>>,
        reports: &mpsc::UnboundedSender<Report>,
    ) -> std::io::Result<()> {
        let counters = &self.link.counters;
        let mut commands = 0;
        for (channels, sharded_name, classic_name, counter) in [
            (&subscribe, &b"SSUBSCRIBE"[..], &b"SUBSCRIBE"[..], &counters.subscribe_commands),
            (&unsubscribe, &b"SUNSUBSCRIBE"[..], &b"UNSUBSCRIBE"[..], &counters.unsubscribe_commands),
        ] {
            let mut by_slot: HashMap<Option<u16>, Vec<&[u8]>> = HashMap::new();
            for channel in channels {
                let slot = self.link.channels.is_sharded(channel).then(|| slots::slot_of(channel.as_bytes()));
                by_slot.entry(slot).or_default().push(channel.as_bytes());
            }
            for (slot, names) in by_slot {
                let mut args: Vec<&[u8]> = Vec::with_capacity(names.len() + 1);
                args.push(if slot.is_some() { sharded_name } else { classic_name });
                args.extend(names);
                conn.queue(&args);
                bump(counter, 1);
                commands += 1;
            }
        }
        self.pending.extend(subscribe);
        if commands > 0 {
            bump(&counters.subscribe_round_trips, 1);
        }
        let written = conn.flush().await;
        self.send_orphans(reports);
        written
    }

    fn send_orphans(&mut self, reports: &mpsc::UnboundedSender<Report>) {
        if !self.orphans.is_empty() {
            let _ = reports.send(Report::Orphaned(self.node.clone(), std::mem::take(&mut self.orphans)));
        }
    }

    fn orphan(&mut self, channel: Box<str>) {
        self.wanted.remove(&channel);
        self.pending.remove(&channel);
        if self.confirmed.remove(&channel) {
            self.link.counters.subscribed_channels.fetch_sub(1, Relaxed);
        }
        self.orphans.push(channel);
    }
}

impl Replies for ShardState {
    fn subscription(&mut self, channel: &[u8], subscribed: bool, _count: i64) -> bool {
        let Ok(channel) = std::str::from_utf8(channel) else { return false };
        let counters = &self.link.counters;
        if subscribed {
            if self.pending.remove(channel) && self.wanted.contains(channel) {
                self.confirmed.insert(channel.into());
                counters.subscribed_channels.fetch_add(1, Relaxed);
                return true;
            }
            return false;
        }
        // An `sunsubscribe` for a channel still wanted here was not asked for: its slot moved.
        // (One for a channel not wanted answers our own SUNSUBSCRIBE.)
        if self.wanted.contains(channel) && !self.pending.contains(channel) {
            self.orphan(channel.into());
        }
        false
    }

    fn error(&mut self, error: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(error);
        if let Some((slot, _, _)) = slots::redirect(&text) {
            // A subscription sent to a master that does not serve its slot.
            let moved: Vec<Box<str>> = self
                .pending
                .iter()
                .filter(|channel| slots::slot_of(channel.as_bytes()) == slot)
                .cloned()
                .collect();
            moved.into_iter().for_each(|channel| self.orphan(channel));
            return Ok(());
        }
        if text.starts_with("TRYAGAIN") || text.starts_with("CLUSTERDOWN") {
            // Which subscription it answers is not said: every unconfirmed one is placed again.
            let pending: Vec<Box<str>> = self.pending.iter().cloned().collect();
            pending.into_iter().for_each(|channel| self.orphan(channel));
            return Ok(());
        }
        Err(std::io::Error::other(format!("Redis refused: {text}")))
    }
}
