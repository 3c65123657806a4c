//! Cluster mode over a Redis Cluster (`redis+cluster://`, sharded pub/sub), over real
//! processes each test starts for itself: `redis-server --cluster-enabled yes` nodes on free
//! ports, made a cluster by the real `redis-cli --cluster create`. Three wspush nodes share
//! nothing but the cluster; each id's channel and history live on the master of its slot.
//! The tests check exactly-once delivery across the masters, through a master killed with
//! SIGKILL (its replica promoted) and through slots moved under load, without a node
//! restart.
//!
//! Nodes are in-process engines, clients tokio-tungstenite.

#[path = "support.rs"]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use support::*;
use wspush::{ClusterConfig, Config, Engine, Message, Position};

/// How long a failover may take: the cluster fails a master after
/// `CLUSTER_NODE_TIMEOUT_MS`, elects its replica, and the nodes find the new map (generous
/// for a loaded 2-core machine).
const FAILOVER: Duration = Duration::from_secs(45);

/// A wspush node over `cluster`, `configure` applied, healthy.
fn node(cluster: &RedisCluster, name: &str, configure: impl FnOnce(&mut Config)) -> Engine {
    let config = ClusterConfig { node_id: Some(name.into()), ..ClusterConfig::new(cluster.url()) };
    let mut config =
        Config { ws_listen: Some(any_port()), workers: 2, cluster: Some(config), ..Config::default() };
    configure(&mut config);
    let engine = Engine::start(config).expect("a node over a Redis Cluster starts");
    eventually(TIMEOUT, "the node reads the slot map and connects", || engine.is_healthy());
    engine
}

fn cluster_stats(engine: &Engine) -> wspush::ClusterStats {
    engine.stats().cluster.expect("cluster mode")
}

/// Waits until `count` connections on the master of `channel` subscribe it (sharded).
fn wait_shard_subscribers(cluster: &RedisCluster, channel: &str, count: i64) {
    eventually(FAILOVER, &format!("{count} sharded subscriber(s) of {channel}"), || {
        let master = cluster.node(cluster.master_of(channel));
        let reply = master.command(&["PUBSUB", "SHARDNUMSUB", channel]);
        reply.items().get(1).and_then(Resp::int) == Some(count)
    });
}

/// Reads `ws` (a v1 socket at `start`) up to the body `end`; every position must follow the
/// previous one: no gap, no repeat, no `!lost`. Returns the bodies in order.
async fn read_exactly_once(ws: &mut Ws, start: Position, what: &str) -> Vec<String> {
    let (mut bodies, mut at) = (Vec::new(), start);
    loop {
        let frame = recv_text(ws, FAILOVER).await;
        assert!(!frame.starts_with("!lost"), "{what}: history lost after {at}: {frame:?}");
        let (head, body) =
            frame.split_once('\n').unwrap_or_else(|| panic!("{what}: not a v1 frame: {frame:?}"));
        let position: Position = head.parse().unwrap_or_else(|_| panic!("{what}: not a position: {frame:?}"));
        assert_eq!(position, Position::new(at.epoch, at.offset + 1), "{what}: after {at}: {frame:?}");
        at = position;
        if body == "end" {
            return bodies;
        }
        bodies.push(body.to_owned());
    }
}

/// A `wspush.v1` socket on `engine` for each of `ids`, each at its `!pos` and subscribed on
/// its master.
async fn v1_sockets(cluster: &RedisCluster, engine: &Engine, ids: &[String]) -> Vec<(String, Ws, Position)> {
    let mut sockets = Vec::new();
    for id in ids {
        let mut ws = connect_v1(&format!("ws://{}/websocket/{id}", addr(engine))).await;
        let start = position_in(&recv_text(&mut ws, TIMEOUT).await, "!pos ");
        wait_shard_subscribers(cluster, &format!("wspush:u:{{{id}}}"), 1);
        sockets.push((id.clone(), ws, start));
    }
    sockets
}

/// Sends `end` to every socket's id through `sender`, then checks each socket got `m1` to
/// `m{sent}` (a [`Streamer`]'s messages) exactly once, in order, and then `end`.
async fn expect_every_message_once(
    sender: &Engine,
    sent: u64,
    sockets: &mut [(String, Ws, Position)],
    when: &str,
) {
    for (id, _, _) in sockets.iter() {
        send_retrying(sender, id, "end");
    }
    let expected: Vec<String> = (1..=sent).map(|i| format!("m{i}")).collect();
    for (id, ws, start) in sockets.iter_mut() {
        let bodies = read_exactly_once(ws, *start, id).await;
        assert_eq!(&bodies, &expected, "{id}: every message once, in order, {when}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_and_broadcast_reach_every_socket_once_across_three_masters() {
    let cluster = RedisCluster::start(3, 0);
    let nodes: Vec<Engine> = ["a", "b", "c"].iter().map(|name| node(&cluster, name, |_| {})).collect();
    // 30 ids, each with a socket on two of the three nodes.
    let ids: Vec<String> = (0..30).map(|i| format!("user{i}")).collect();
    let mut sockets: Vec<(String, usize, Ws)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for n in [i % 3, (i + 1) % 3] {
            sockets.push((id.clone(), n, connect(&format!("ws://{}/websocket/{id}", addr(&nodes[n]))).await));
        }
    }
    for id in &ids {
        wait_shard_subscribers(&cluster, &format!("wspush:u:{{{id}}}"), 2);
    }
    // The ids' channels are spread over every master.
    let homes: BTreeSet<u16> =
        ids.iter().map(|id| cluster.master_of(&format!("wspush:u:{{{id}}}"))).collect();
    assert_eq!(homes.len(), 3, "30 ids on fewer than 3 masters");

    // Every node sends to every id, then one broadcast from each node.
    for (n, engine) in nodes.iter().enumerate() {
        for id in &ids {
            send_retrying(engine, id, &format!("{id} from {n}"));
        }
    }
    eventually(TIMEOUT, "the broadcast channel is subscribed by the 3 nodes", || {
        let master = cluster.node(cluster.master_of("wspush:all"));
        master.command(&["PUBSUB", "SHARDNUMSUB", "wspush:all"]).items().get(1).and_then(Resp::int) == Some(3)
    });
    for (n, engine) in nodes.iter().enumerate() {
        engine.broadcast(Message::Text(&format!("everyone from {n}"))).expect("broadcast");
    }
    let received = join_all(sockets.iter_mut().map(|(id, n, ws)| async move {
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(recv_text(ws, TIMEOUT).await);
        }
        (id.clone(), *n, got)
    }))
    .await;
    for (id, n, mut got) in received {
        got.sort();
        let mut expected: Vec<String> = (0..3).map(|from| format!("{id} from {from}")).collect();
        expected.extend((0..3).map(|from| format!("everyone from {from}")));
        expected.sort();
        assert_eq!(got, expected, "the socket of {id} on node {n}");
    }
    for (_, _, ws) in &mut sockets {
        assert_no_message(ws, Duration::from_millis(200)).await;
    }
    let stats = cluster_stats(&nodes[0]);
    assert_eq!((stats.shards, stats.shards_up), (3, 3), "{stats:?}");
    assert!(stats.slot_map_refreshes >= 1, "{stats:?}");
    assert_eq!(stats.publish_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_to_its_replica_and_every_message_arrives_once_with_history() {
    let mut cluster = RedisCluster::start(3, 1);
    let history = |c: &mut Config| c.history_size = 10_000;
    let (a, b) = (node(&cluster, "a", history), node(&cluster, "b", history));
    // Two ids on different masters: one whose master is killed, one whose is not.
    let ids = ["u1", "u2", "u3", "u4", "u5", "u6"];
    let by_master: HashMap<u16, &str> =
        ids.iter().map(|id| (cluster.master_of(&format!("wspush:u:{{{id}}}")), *id)).collect();
    assert!(by_master.len() >= 2, "the ids are on one master");
    let mut masters: Vec<u16> = by_master.keys().copied().collect();
    masters.sort_unstable();
    let (victim_master, other_master) = (masters[0], masters[1]);
    let (victim, bystander) = (by_master[&victim_master], by_master[&other_master]);

    let mut sockets = Vec::new();
    for id in [victim, bystander] {
        let mut ws = connect_v1(&format!("ws://{}/websocket/{id}", addr(&a))).await;
        let start = position_in(&recv_text(&mut ws, TIMEOUT).await, "!pos ");
        wait_shard_subscribers(&cluster, &format!("wspush:u:{{{id}}}"), 1);
        sockets.push((id, ws, start));
    }

    let sender = Streamer::start(b, vec![victim.into(), bystander.into()]);
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill9(victim_master);
    eventually(FAILOVER, "the replica of the killed master is promoted", || {
        !cluster.masters().contains(&victim_master) && cluster.masters().len() == 3
    });
    eventually(FAILOVER, "node a follows the new map and is healthy again", || {
        a.is_healthy() && cluster_stats(&a).slot_map_changes >= 1
    });
    std::thread::sleep(Duration::from_millis(500));
    let (b, sent) = sender.stop();
    assert!(sent > 100, "only {sent} rounds were sent through the failover");
    for id in [victim, bystander] {
        send_retrying(&b, id, "end");
    }
    let expected: Vec<String> = (1..=sent).map(|i| format!("m{i}")).collect();
    for (id, ws, start) in &mut sockets {
        let bodies = read_exactly_once(ws, *start, id).await;
        assert_eq!(bodies.len(), expected.len(), "{id}: every message once");
        assert_eq!(&bodies, &expected, "{id}: in order");
    }
    assert!(cluster_stats(&a).resubscribes >= 1, "node a moved the victim's channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moved_under_load_lose_and_repeat_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let history = |c: &mut Config| c.history_size = 10_000;
    let (a, b) = (node(&cluster, "a", history), node(&cluster, "b", history));
    let ids: Vec<String> = (0..8).map(|i| format!("mover{i}")).collect();
    let mut sockets = v1_sockets(&cluster, &a, &ids).await;
    let sender = Streamer::start(b, ids.clone());
    // Each id's slot moves to the next master, keys and all, while the sends go on.
    let masters = cluster.masters();
    for id in &ids {
        let channel = format!("wspush:u:{{{id}}}");
        let from = cluster.master_of(&channel);
        let to = masters[(masters.iter().position(|&m| m == from).unwrap() + 1) % masters.len()];
        cluster.move_slot(cluster.slot_of(&channel), to);
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ok(3);
    for id in &ids {
        wait_shard_subscribers(&cluster, &format!("wspush:u:{{{id}}}"), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (b, sent) = sender.stop();
    expect_every_message_once(&b, sent, &mut sockets, "through the move").await;
    let stats = cluster_stats(&a);
    assert!(stats.resubscribes >= ids.len() as u64, "{stats:?}");
    assert!(stats.slot_map_changes >= 1, "{stats:?}");
}

#[test]
fn a_node_whose_cluster_does_not_answer_stays_degraded_then_finds_it() {
    let cluster = RedisCluster::start(3, 0);
    let dead = free_port();
    // The one seed that answers comes second: the first is tried, fails, and is skipped.
    let url = format!("redis+cluster://127.0.0.1:{dead},{}", &cluster.url()["redis+cluster://".len()..]);
    let config = ClusterConfig { node_id: Some("seeker".into()), ..ClusterConfig::new(url) };
    let engine =
        Engine::start(Config { ws_listen: Some(any_port()), cluster: Some(config), ..Config::default() })
            .expect("a node starts");
    eventually(TIMEOUT, "the node finds the cluster through its second seed", || engine.is_healthy());

    let lonely = ClusterConfig::new(format!("redis+cluster://127.0.0.1:{}", free_port()));
    let engine =
        Engine::start(Config { ws_listen: Some(any_port()), cluster: Some(lonely), ..Config::default() })
            .expect("a node starts while no seed answers (it retries)");
    eventually(TIMEOUT, "the node asks for the slot map again and again", || {
        cluster_stats(&engine).slot_map_refreshes >= 3
    });
    assert!(!engine.is_healthy(), "healthy without a cluster");
}

async fn assert_no_message(ws: &mut Ws, wait: Duration) {
    use futures_util::StreamExt;
    if let Ok(Some(message)) = tokio::time::timeout(wait, ws.next()).await {
        panic!("an unexpected message: {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_storm_is_subscribed_in_few_round_trips() {
    use futures_util::stream::{self, StreamExt};
    const IDS: usize = 3_000;
    let cluster = RedisCluster::start(3, 0);
    let engine = node(&cluster, "storm", |_| {});
    let before = cluster_stats(&engine);
    let address = addr(&engine);
    let sockets: Vec<Ws> = stream::iter(0..IDS)
        .map(|i| async move { connect(&format!("ws://{address}/websocket/storm{i}")).await })
        .buffer_unordered(256)
        .collect()
        .await;
    eventually(TIMEOUT, "every id of the storm is subscribed", || {
        cluster_stats(&engine).subscribed_channels == IDS as u64 + 1
    });
    let after = cluster_stats(&engine);
    let round_trips = after.subscribe_round_trips - before.subscribe_round_trips;
    let commands = after.subscribe_commands - before.subscribe_commands;
    eprintln!("{IDS} ids: {commands} SSUBSCRIBE commands in {round_trips} writes over 3 masters");
    // One SSUBSCRIBE per slot (each id is a slot of its own), written together.
    assert!(commands >= IDS as u64, "{commands} commands");
    assert!(round_trips <= 100, "{round_trips} round trips for {IDS} ids");
    // The ids' channels are on every master, each subscribed once.
    for master in cluster.masters() {
        let channels = cluster.node(master).command(&["PUBSUB", "SHARDCHANNELS", "wspush:u:*"]).items().len();
        assert!(channels > IDS / 4, "master {master} holds {channels} of {IDS} channels");
    }
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_added_then_removed_under_load_loses_and_repeats_nothing() {
    let mut cluster = RedisCluster::start(3, 0);
    let history = |c: &mut Config| c.history_size = 10_000;
    let (a, b) = (node(&cluster, "a", history), node(&cluster, "b", history));
    let ids: Vec<String> = (0..6).map(|i| format!("grow{i}")).collect();
    let mut sockets = v1_sockets(&cluster, &a, &ids).await;
    let sender = Streamer::start(b, ids.clone());
    // A fourth master joins and takes the ids' slots; then gives them back and leaves.
    let added = cluster.add_master();
    let homes: Vec<(u16, u16)> = ids
        .iter()
        .map(|id| {
            let channel = format!("wspush:u:{{{id}}}");
            (cluster.slot_of(&channel), cluster.master_of(&channel))
        })
        .collect();
    for (slot, _) in &homes {
        cluster.move_slot(*slot, added);
    }
    eventually(FAILOVER, "node a subscribes the ids on the new master", || cluster_stats(&a).shards == 4);
    for id in &ids {
        wait_shard_subscribers(&cluster, &format!("wspush:u:{{{id}}}"), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    for (slot, home) in &homes {
        cluster.move_slot(*slot, *home);
    }
    cluster.remove_master(added);
    cluster.wait_ok(3);
    eventually(FAILOVER, "node a drops its connection to the removed master", || {
        let stats = cluster_stats(&a);
        stats.shards == 3 && a.is_healthy()
    });
    for id in &ids {
        wait_shard_subscribers(&cluster, &format!("wspush:u:{{{id}}}"), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (b, sent) = sender.stop();
    expect_every_message_once(&b, sent, &mut sockets, "as the shard came and went").await;
}
