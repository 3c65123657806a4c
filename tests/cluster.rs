//! Cluster mode over a real Redis: fleets of `wspush` processes (and, in-process, two
//! engines) sharing nothing but a `redis-server` each test starts for itself on a free
//! port. Checked as a user would: what each client receives (exactly once: a sentinel sent
//! afterwards must be the next message), what the HTTP answers say, what Redis itself
//! reports, what `redis-cli` sees and publishes, and how the nodes ride out a Redis that
//! dies and comes back.
//!
//! Subscriptions are asynchronous: before publishing from another node a test waits for
//! `GET /presence/{id}` (PUBSUB NUMSUB) to show the nodes that hold the id.

#[path = "support.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use wspush::{ClusterConfig, Config, Engine, Error, Message, Presence, Receipt};

/// How long a node may take to come back once Redis is back (its reconnect backoff tops
/// out at 5 s; generous for a loaded 2-core machine).
const RECOVERY: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Fleets of server processes.

/// Starts `wspush --redis URL --node-id NODE_ID EXTRA...` and waits for its cluster
/// startup line (after the two listener lines [`Server::start`] waits for).
fn start_node(redis_url: &str, node_id: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--redis", redis_url, "--node-id", node_id];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let line = format!("wspush: cluster node {node_id} via {redis_url}");
    eventually(TIMEOUT, &format!("the startup line `{line}`"), || server.output().contains(&line));
    server
}

/// One Redis and the nodes using it. The nodes are dropped (stopped) before Redis.
struct Fleet {
    nodes: Vec<Server>,
    redis: RedisServer,
}

/// A Redis and one node per name (each with `extra` flags), all of them healthy.
fn fleet(names: &[&str], extra: &[&str]) -> Fleet {
    let redis = RedisServer::start();
    let nodes: Vec<Server> = names.iter().map(|name| start_node(&redis.url(), name, extra)).collect();
    for node in &nodes {
        wait_healthy(node, TIMEOUT);
    }
    Fleet { nodes, redis }
}

/// `GET /healthz`: the status code and `status` of the body.
fn health(node: &Server) -> (u16, String) {
    let response = node.get("/healthz");
    let status = json(&response)["status"].as_str().unwrap_or("").to_owned();
    (response.status(), status)
}

fn wait_healthy(node: &Server, timeout: Duration) {
    eventually_eq(timeout, "GET /healthz", (200, "ok".to_owned()), || health(node));
}

fn wait_degraded(node: &Server, timeout: Duration) {
    eventually_eq(timeout, "GET /healthz", (503, "degraded".to_owned()), || health(node));
}

/// `GET /presence/{id}`, parsed.
fn presence(node: &Server, id: &str) -> Value {
    let response = node.get(&format!("/presence/{id}"));
    assert_eq!(response.status(), 200, "{response:?}");
    json(&response)
}

/// Waits until `node` reports `nodes` nodes subscribed to `id` (this one included).
fn wait_presence_nodes(node: &Server, id: &str, nodes: u64) {
    eventually_eq(TIMEOUT, &format!("the nodes of {id:?} in GET /presence"), Some(nodes), || {
        presence(node, id)["nodes"].as_u64()
    });
}

/// A counter of the `cluster` object of `GET /stats`.
fn cluster_counter(node: &Server, name: &str) -> u64 {
    server_counter(node, &format!("cluster.{name}"))
}

/// `POST path` with a text body; must answer 200 with JSON.
fn post_json(node: &Server, path: &str, body: &str) -> Value {
    let response = node.post(path, body);
    assert_eq!(response.status(), 200, "POST {path}: {response:?}");
    json(&response)
}

fn assert_alive_and_no_panic(node: &mut Server, name: &str) {
    assert!(node.wait_exit(Duration::ZERO).is_none(), "node {name} exited:\n{}", node.output());
    assert!(!node.output().contains("panicked"), "node {name} panicked:\n{}", node.output());
}

// ---------------------------------------------------------------------------------------
// In-process engines.

fn cluster_engine(redis: &RedisServer, node_id: &str, ws_listen: bool) -> Engine {
    let cluster = ClusterConfig { node_id: Some(node_id.into()), ..ClusterConfig::new(redis.url()) };
    let config = Config {
        ws_listen: ws_listen.then(any_port),
        workers: 2,
        command_queue_capacity: 1 << 17,
        cluster: Some(cluster),
        ..Config::default()
    };
    Engine::start(config).expect("a cluster engine starts")
}

fn engine_presence(engine: &Engine, id: &str) -> Presence {
    let (tx, rx) = mpsc::channel();
    engine
        .presence(id, move |presence| {
            let _ = tx.send(presence);
        })
        .expect("presence failed");
    rx.recv_timeout(TIMEOUT).expect("no answer to presence")
}

fn engine_receipt(engine: &Engine, id: &str, message: Message<'_>) -> Receipt {
    let (tx, rx) = mpsc::channel();
    engine
        .send_with_receipt(id, message, move |receipt| {
            let _ = tx.send(receipt);
        })
        .expect("send failed");
    rx.recv_timeout(TIMEOUT).expect("no receipt for send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_in_process_deliver_a_send_to_the_id_on_both_exactly_once() {
    let redis = RedisServer::start();
    let (a, b) = (cluster_engine(&redis, "engine-a", true), cluster_engine(&redis, "engine-b", true));
    let (mut events_a, mut events_b) = (Events::attach(&a), Events::attach(&b));
    eventually(TIMEOUT, "both engines connected to Redis", || a.is_healthy() && b.is_healthy());
    assert_eq!((a.node_id(), b.node_id()), (Some("engine-a"), Some("engine-b")));

    let mut ws_a = connect_id(addr(&a), "456").await;
    let mut ws_b = connect_id(addr(&b), "456").await;
    events_a.open("456");
    events_b.open("456");
    eventually_eq(TIMEOUT, "presence of 456 on engine a", Presence { sockets: 1, nodes: Some(2) }, || {
        engine_presence(&a, "456")
    });
    assert_eq!(engine_presence(&b, "456"), Presence { sockets: 1, nodes: Some(2) });
    assert_eq!(redis.numsub("wspush:u:456"), 2, "Redis does not see both engines subscribed");

    let receipt = engine_receipt(&a, "456", Message::Text("order 456 shipped"));
    assert_eq!(receipt, Receipt { sockets: 1, nodes: Some(1), position: None });
    assert_eq!(recv_text(&mut ws_a, TIMEOUT).await, "order 456 shipped");
    assert_eq!(recv_text(&mut ws_b, TIMEOUT).await, "order 456 shipped");
    // Engine a got its own publish back from Redis and skipped it.
    eventually_eq(TIMEOUT, "own_skipped of engine a", 1, || a.stats().cluster.unwrap().own_skipped);

    let data = [0u8, 1, 2, 0xfe, 0xff];
    assert_eq!(
        engine_receipt(&b, "456", Message::Binary(&data)),
        Receipt { sockets: 1, nodes: Some(1), position: None }
    );
    assert_eq!(recv_binary(&mut ws_a, TIMEOUT).await, data, "binary must cross the fleet unchanged");
    assert_eq!(recv_binary(&mut ws_b, TIMEOUT).await, data);
    a.send("456", Message::Text("sentinel")).unwrap();
    assert_eq!(recv_text(&mut ws_a, TIMEOUT).await, "sentinel", "a socket got a message twice");
    assert_eq!(recv_text(&mut ws_b, TIMEOUT).await, "sentinel", "a socket got a message twice");

    // Nobody holds the id: no socket here, no other node.
    assert_eq!(
        engine_receipt(&a, "nobody", Message::Text("lost")),
        Receipt { sockets: 0, nodes: Some(0), position: None }
    );
    let (stats_a, stats_b) = (a.stats().cluster.unwrap(), b.stats().cluster.unwrap());
    assert_eq!((stats_a.malformed_envelopes, stats_b.malformed_envelopes), (0, 0));
    assert!(stats_a.connected && stats_b.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_redis_url_authenticates_and_a_wrong_one_keeps_the_node_degraded() {
    let redis = RedisServer::start();
    assert_eq!(redis.command(&["CONFIG", "SET", "requirepass", "s3cret"]), Resp::Simple("OK".into()));
    let engine = |node_id: &str, password: &str| {
        let url = format!("redis://:{password}@127.0.0.1:{}", redis.port());
        let cluster = ClusterConfig { node_id: Some(node_id.into()), ..ClusterConfig::new(url) };
        let config =
            Config { ws_listen: Some(any_port()), workers: 2, cluster: Some(cluster), ..Config::default() };
        Engine::start(config).expect("a cluster engine starts")
    };
    let (a, b, wrong) = (engine("a", "s3cret"), engine("b", "s3cret"), engine("wrong", "nope"));
    eventually(TIMEOUT, "both nodes authenticated", || a.is_healthy() && b.is_healthy());

    let mut ws = connect_id(addr(&b), "pw-1").await;
    eventually_eq(TIMEOUT, "nodes of pw-1 seen from a", Some(1), || engine_presence(&a, "pw-1").nodes);
    a.send("pw-1", Message::Text("through an authenticated Redis")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "through an authenticated Redis");
    let wrong_stats = wrong.stats().cluster.unwrap();
    assert!(!wrong.is_healthy() && !wrong_stats.connected, "a wrong password must leave the node degraded");
    assert_eq!(wrong_stats.subscribed_channels, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_redis_larger_than_a_worker_queue_waits_for_room_instead_of_being_dropped() {
    const BURST: usize = 5_000;
    let redis = RedisServer::start();
    let sender = cluster_engine(&redis, "burst-sender", false);
    // A receiver whose workers queue at most 16 commands: the burst must wait for room.
    let cluster = ClusterConfig { node_id: Some("tiny-queues".into()), ..ClusterConfig::new(redis.url()) };
    let receiver = Engine::start(Config {
        ws_listen: Some(any_port()),
        workers: 1,
        command_queue_capacity: 16,
        cluster: Some(cluster),
        ..Config::default()
    })
    .expect("a cluster engine starts");
    let mut ws = connect_id(addr(&receiver), "burst").await;
    eventually_eq(TIMEOUT, "nodes of burst", Some(1), || engine_presence(&sender, "burst").nodes);

    for n in 0..BURST {
        sender.send("burst", Message::Text(&n.to_string())).expect("the sender queues it");
    }
    for n in 0..BURST {
        assert_eq!(recv_text(&mut ws, TIMEOUT).await, n.to_string(), "message {n} of the burst");
    }
    let stats = receiver.stats().cluster.unwrap();
    assert_eq!((stats.delivery_dropped, stats.received), (0, BURST as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_sends_are_pipelined_into_few_round_trips() {
    const SENDS: u64 = 100_000;
    let redis = RedisServer::start();
    let sender = cluster_engine(&redis, "sender", false);
    let receiver = cluster_engine(&redis, "receiver", true);
    let mut events = Events::attach(&receiver);
    let mut ws = connect_id(addr(&receiver), "p-7").await;
    events.open("p-7");
    eventually(TIMEOUT, "the sender connected to Redis", || sender.is_healthy());
    eventually_eq(TIMEOUT, "nodes of p-7", Some(1), || engine_presence(&sender, "p-7").nodes);
    let before = sender.stats().cluster.unwrap();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    for n in 0..SENDS {
        let (id, text) = (format!("p-{}", n % 1000), n.to_string());
        loop {
            match sender.send(&id, Message::Text(&text)) {
                Ok(()) => break,
                // A worker's queue is full for a moment: let it drain (counted, not lost).
                Err(Error::QueueFull) if Instant::now() < deadline => thread::yield_now(),
                Err(e) => panic!("send {n} failed: {e}"),
            }
        }
    }
    let queued = started.elapsed();
    eventually_eq(Duration::from_secs(30), "publishes Redis accepted", SENDS, || {
        sender.stats().cluster.unwrap().published - before.published
    });
    let after = sender.stats().cluster.unwrap();
    let round_trips = after.publish_round_trips - before.publish_round_trips;
    eprintln!(
        "{SENDS} sends queued in {queued:?}, published in {:?} with {round_trips} round trips",
        started.elapsed()
    );
    assert_eq!((after.publish_dropped, after.publish_failed), (0, 0), "{after:?}");
    assert!(round_trips < SENDS / 10, "{round_trips} round trips for {SENDS} publishes: not pipelined");

    // The receiver holds p-7: it got every 1000th message, in order, each once.
    for n in (7..SENDS).step_by(1000) {
        assert_eq!(recv_text(&mut ws, TIMEOUT).await, n.to_string(), "lost, duplicated or reordered");
    }
    sender.send("p-7", Message::Text("sentinel")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "sentinel");
}

// ---------------------------------------------------------------------------------------
// Fleets of the server binary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_third_node_reaches_the_id_on_both_other_nodes_exactly_once() {
    let fleet = fleet(&["node-a", "node-b", "node-c"], &[]);
    let [a, b, c] = &fleet.nodes[..] else { unreachable!() };
    let mut on_a = connect(&a.ws_url("456")).await;
    let mut on_b = connect(&b.ws_url("456")).await;
    let mut other = connect(&b.ws_url("457")).await;
    wait_presence_nodes(c, "456", 2);
    wait_presence_nodes(c, "457", 1);
    assert_eq!(presence(a, "456"), json!({"id": "456", "sockets": 1, "nodes": 2}));

    let answer = post_json(c, "/socket/456", "order 456 shipped");
    assert_eq!(answer, json!({"id": "456", "sockets": 0, "nodes": 2}));
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "order 456 shipped");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "order 456 shipped");

    post_json(c, "/socket/456", "sentinel");
    post_json(c, "/socket/457", "sentinel 457");
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "sentinel", "the socket on node a got it twice");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "sentinel", "the socket on node b got it twice");
    assert_eq!(recv_text(&mut other, TIMEOUT).await, "sentinel 457", "another id got the message");
    eventually_eq(TIMEOUT, "publishes of node c", 3, || cluster_counter(c, "published"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_client_on_every_node_exactly_once() {
    let fleet = fleet(&["node-a", "node-b", "node-c"], &[]);
    let [a, b, c] = &fleet.nodes[..] else { unreachable!() };
    let mut clients = vec![
        connect(&a.ws_url("a-1")).await,
        connect(&a.ws_url("a-2")).await,
        connect(&b.ws_url("b-1")).await,
        connect(&c.ws_url("c-1")).await,
    ];
    wait_connections(a, 2);
    wait_connections(b, 1);
    wait_connections(c, 1);
    assert_eq!(fleet.redis.numsub("wspush:all"), 3, "every node listens for broadcasts");

    assert_eq!(post_json(c, "/broadcast", "maintenance at noon"), json!({"sockets": 1, "nodes": 2}));
    for ws in &mut clients {
        assert_eq!(recv_text(ws, TIMEOUT).await, "maintenance at noon");
    }
    assert_eq!(post_json(a, "/broadcast", "sentinel"), json!({"sockets": 2, "nodes": 2}));
    for ws in &mut clients {
        assert_eq!(recv_text(ws, TIMEOUT).await, "sentinel", "a client got the broadcast twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_from_a_node_holding_the_id_reaches_each_socket_once_and_skips_its_own_echo() {
    let fleet = fleet(&["node-a", "node-b"], &[]);
    let [a, b] = &fleet.nodes[..] else { unreachable!() };
    let mut on_a = connect(&a.ws_url("456")).await;
    let mut on_b = connect(&b.ws_url("456")).await;
    wait_presence_nodes(a, "456", 2);
    let skipped = cluster_counter(a, "own_skipped");

    assert_eq!(post_json(a, "/socket/456", "from a"), json!({"id": "456", "sockets": 1, "nodes": 1}));
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "from a");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "from a");
    // Node a receives its own publish from Redis and must skip it, not deliver it again.
    eventually_eq(TIMEOUT, "own_skipped of node a", skipped + 1, || cluster_counter(a, "own_skipped"));

    assert_eq!(post_json(b, "/socket/456", "sentinel"), json!({"id": "456", "sockets": 1, "nodes": 1}));
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "sentinel", "node a delivered its own echo");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "sentinel", "node b got the message twice");
    assert_eq!(cluster_counter(a, "malformed_envelopes") + cluster_counter(b, "malformed_envelopes"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_prefix_keeps_two_fleets_on_one_redis_apart() {
    let redis = RedisServer::start();
    let shop_a = start_node(&redis.url(), "shop-a", &["--redis-prefix", "shop:"]);
    let shop_b = start_node(&redis.url(), "shop-b", &["--redis-prefix", "shop:"]);
    let other = start_node(&redis.url(), "other", &[]);
    let mut on_shop_b = connect(&shop_b.ws_url("456")).await;
    let mut on_other = connect(&other.ws_url("456")).await;
    wait_presence_nodes(&shop_a, "456", 1);
    wait_presence_nodes(&other, "456", 1);
    assert_eq!((redis.numsub("shop:u:456"), redis.numsub("shop:all")), (1, 2));
    assert_eq!((redis.numsub("wspush:u:456"), redis.numsub("wspush:all")), (1, 1));

    assert_eq!(post_json(&shop_a, "/socket/456", "for the shop")["nodes"], 1);
    assert_eq!(recv_text(&mut on_shop_b, TIMEOUT).await, "for the shop");
    assert_eq!(post_json(&other, "/socket/456", "for the other fleet")["nodes"], 0);
    assert_eq!(recv_text(&mut on_other, TIMEOUT).await, "for the other fleet", "fleets are not apart");
    post_json(&shop_a, "/socket/456", "sentinel");
    assert_eq!(recv_text(&mut on_shop_b, TIMEOUT).await, "sentinel", "fleets are not apart");
}

// ---------------------------------------------------------------------------------------
// The original design's JSON format on the compatibility channel.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_json_published_with_redis_cli_reaches_every_socket_and_malformed_payloads_are_counted() {
    let fleet = fleet(&["node-a", "node-b"], &["--compat-channel", "legacy:push"]);
    let [a, b] = &fleet.nodes[..] else { unreachable!() };
    let mut tabs = vec![
        connect(&a.ws_url("456")).await,
        connect(&a.ws_url("456")).await,
        connect(&b.ws_url("456")).await,
    ];
    let mut other = connect(&b.ws_url("789")).await;
    wait_connections(a, 2);
    wait_connections(b, 2);
    let port = fleet.redis.port();

    let receivers = redis_cli(port, &["PUBLISH", "legacy:push", r#"{"KEY":456,"VALUE":"aaaa"}"#]);
    assert_eq!(receivers.trim(), "2", "both nodes listen on the compat channel");
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "aaaa");
    }

    redis_cli(port, &["PUBLISH", "legacy:push", r#"{"KEY":456,"VALUE":"#]);
    for node in [a, b] {
        eventually_eq(TIMEOUT, "malformed_compat", 1, || cluster_counter(node, "malformed_compat"));
    }
    // The nodes keep working: the next valid message (KEY as a string this time) arrives,
    // and nothing arrived in between.
    redis_cli(port, &["PUBLISH", "legacy:push", r#"{"KEY":"456","VALUE":"after the bad one"}"#]);
    redis_cli(port, &["PUBLISH", "legacy:push", r#"{"KEY":789,"VALUE":"for 789"}"#]);
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "after the bad one", "a socket got a message twice");
    }
    assert_eq!(recv_text(&mut other, TIMEOUT).await, "for 789", "another id got the message");
    for node in [a, b] {
        assert_eq!(cluster_counter(node, "malformed_compat"), 1);
        assert_eq!(health(node), (200, "ok".to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_publish_mirrors_text_sends_in_the_original_format_without_double_delivery() {
    let fleet = fleet(&["node-a", "node-b"], &["--compat-channel", "legacy:push", "--compat-publish"]);
    let [a, b] = &fleet.nodes[..] else { unreachable!() };
    let legacy = RedisCliSubscriber::start(fleet.redis.port(), &["legacy:push"]);
    let mut on_a = connect(&a.ws_url("456")).await;
    let mut on_b = connect(&b.ws_url("456")).await;
    wait_presence_nodes(a, "456", 2);

    assert_eq!(post_json(a, "/socket/456", "hello legacy")["nodes"], 1);
    let mirrored = legacy.expect_message("the send mirrored in the original format");
    assert_eq!(mirrored.channel, "legacy:push");
    let mirrored: Value = serde_json::from_slice(&mirrored.payload).expect("the mirror is JSON");
    assert_eq!(mirrored, json!({"KEY": 456, "VALUE": "hello legacy", "WSPUSH_NODE": "node-a"}));
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "hello legacy");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "hello legacy");

    // Binary messages have no place in the original format: not mirrored.
    let response =
        a.http("POST", "/socket/456", &[("Content-Type", "application/octet-stream")], b"\x00\x01");
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(recv_binary(&mut on_a, TIMEOUT).await, b"\x00\x01");
    assert_eq!(recv_binary(&mut on_b, TIMEOUT).await, b"\x00\x01");

    post_json(b, "/socket/456", "sentinel");
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "sentinel", "node a delivered a message twice");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "sentinel", "node b delivered the mirror too");
    let next = legacy.expect_message("the sentinel mirrored");
    assert_eq!(serde_json::from_slice::<Value>(&next.payload).unwrap()["WSPUSH_NODE"], "node-b", "{next:?}");
    for node in [a, b] {
        assert_eq!(cluster_counter(node, "malformed_compat"), 0);
    }
}

// ---------------------------------------------------------------------------------------
// Messages from clients, published for backend services.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_are_published_on_the_inbound_channel_unless_switched_off() {
    use base64::Engine as _;
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), "node-a", &[]);
    let b = start_node(&redis.url(), "node-b", &["--no-inbound"]);
    let c = start_node(&redis.url(), "node-c", &["--inbound-channel", "backend:in"]);
    for node in [&a, &b, &c] {
        wait_healthy(node, TIMEOUT);
    }
    let backend = RedisCliSubscriber::start(redis.port(), &["wspush:inbound", "backend:in", "wspush:all"]);
    let mut on_a = connect(&a.ws_url("456")).await;
    let mut on_b = connect(&b.ws_url("456")).await;
    let mut on_c = connect(&c.ws_url("c-7")).await;

    send_text(&mut on_a, "hello").await;
    let message = backend.expect_message("the text message from node a");
    assert_eq!(message.channel, "wspush:inbound");
    let published: Value = serde_json::from_slice(&message.payload).expect("inbound messages are JSON");
    assert_eq!(published, json!({"id": "456", "node": "node-a", "data": "hello"}));

    let data = [0u8, 1, 2, 0xfd, 0xfe, 0xff];
    send_binary(&mut on_a, &data).await;
    let message = backend.expect_message("the binary message from node a");
    let published: Value = serde_json::from_slice(&message.payload).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    assert_eq!(published, json!({"id": "456", "node": "node-a", "data": encoded, "encoding": "base64"}));

    send_text(&mut on_c, "to the backend").await;
    let message = backend.expect_message("the message from node c");
    assert_eq!(message.channel, "backend:in");
    let published: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(published, json!({"id": "c-7", "node": "node-c", "data": "to the backend"}));

    // Node b publishes nothing for its client: once it has read the message, a broadcast
    // from b (same publisher, so after anything b published before) is the next thing seen.
    send_text(&mut on_b, "quiet please").await;
    eventually_eq(TIMEOUT, "messages_in of node b", 1, || server_counter(&b, "messages_in"));
    post_json(&b, "/broadcast", "marker");
    let message = backend.expect_message("node b's broadcast");
    assert_eq!(message.channel, "wspush:all", "node b published its client's message: {message:?}");
    eventually_eq(TIMEOUT, "publishes of node b (the broadcast only)", 1, || {
        cluster_counter(&b, "published")
    });
    // Inbound messages are not delivered to other clients.
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "marker");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "marker");
    assert_eq!(recv_text(&mut on_c, TIMEOUT).await, "marker");
    assert!(backend.next_message(Duration::from_millis(200)).is_none(), "an extra message was published");
}

// ---------------------------------------------------------------------------------------
// Redis failures.

/// Raises its flag when dropped: a background loop stops even if the test fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Reads text messages until `marker`; returns those before it.
async fn read_until(ws: &mut Ws, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let text = recv_text(ws, TIMEOUT).await;
        if text == marker {
            return before;
        }
        before.push(text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_redis_killed_during_a_stream_of_sends_and_restarted() {
    let mut fleet = fleet(&["node-a", "node-b"], &[]);
    let (a_api, a_ws, b_ws) =
        (fleet.nodes[0].api_addr, fleet.nodes[0].ws_url("789"), fleet.nodes[1].ws_url("456"));
    let mut on_b = connect(&b_ws).await;
    let mut on_a = connect(&a_ws).await;
    wait_presence_nodes(&fleet.nodes[0], "456", 1);
    wait_presence_nodes(&fleet.nodes[1], "789", 1);

    // A stream of sends from node a to the client on node b, paced (not synchronised);
    // `sent` counts the answered ones.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let sent = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (stop, sent) = (stop.0.clone(), sent.clone());
        thread::spawn(move || {
            let mut answers = Vec::new();
            for n in 1.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = http_request(a_api, "POST", "/socket/456", &[], format!("msg-{n}").as_bytes());
                answers.push(response.map(|r| (r.status(), r.text())).unwrap_or_else(|e| (0, e.to_string())));
                sent.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
            answers
        })
    };
    let first = recv_text(&mut on_b, TIMEOUT).await;
    assert!(first.starts_with("msg-"), "{first}");

    fleet.redis.kill9();
    let killed_at = sent.load(Ordering::Relaxed);
    for node in &fleet.nodes {
        wait_degraded(node, TIMEOUT);
    }
    // Some sends are made while Redis is down (each may wait for its receipt).
    let down_at = sent.load(Ordering::Relaxed);
    eventually(TIMEOUT * 2, "3 sends answered while Redis is down", || {
        sent.load(Ordering::Relaxed) >= down_at + 3
    });
    fleet.redis.restart();
    let restarted = Instant::now();
    let restarted_at = sent.load(Ordering::Relaxed);
    for node in &fleet.nodes {
        wait_healthy(node, RECOVERY);
    }
    eprintln!("both nodes healthy {:?} after Redis restarted", restarted.elapsed());
    drop(stop);
    let answers = stream.join().unwrap();
    let during_outage = &answers[killed_at..restarted_at];
    eprintln!("answers while Redis was down: {during_outage:?}");
    assert!(
        during_outage.iter().all(|(status, _)| *status != 0),
        "the API stopped answering: {during_outage:?}"
    );

    // Subscriptions are back, in both directions, with no node restarted.
    let answer = post_json(&fleet.nodes[0], "/socket/456", "after recovery");
    assert_eq!(answer, json!({"id": "456", "sockets": 0, "nodes": 1}), "node a's publish after recovery");
    let answer = post_json(&fleet.nodes[1], "/socket/789", "after recovery, from b");
    assert_eq!(answer, json!({"id": "789", "sockets": 0, "nodes": 1}), "node b's publish after recovery");
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, "after recovery, from b");
    let got = read_until(&mut on_b, "after recovery").await;

    // At most once: what arrived came in order, and nothing twice.
    let numbers: Vec<u64> = std::iter::once(&first)
        .chain(&got)
        .map(|text| {
            text.strip_prefix("msg-").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}"))
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "duplicated or reordered: {numbers:?}");
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    eprintln!("{} sends, {ok} answered 200, {} delivered", answers.len(), numbers.len());
    assert!(numbers.iter().all(|&n| n as usize <= answers.len()), "a message no one sent: {numbers:?}");

    for (node, name) in fleet.nodes.iter_mut().zip(["a", "b"]) {
        assert!(cluster_counter(node, "reconnects") >= 1, "node {name} did not count its reconnect");
        assert_alive_and_no_panic(node, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_before_redis_run_degraded_then_join_the_fleet_when_it_starts() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut a = start_node(&url, "node-a", &[]);
    let mut b = start_node(&url, "node-b", &[]);
    wait_degraded(&a, TIMEOUT);
    wait_degraded(&b, TIMEOUT);
    assert_eq!(json(&a.get("/healthz"))["node_id"], "node-a");
    assert_eq!(server_stats(&a)["cluster"]["connected"], false);
    // Without Redis a node still serves its own sockets; it reached no other node.
    let mut on_b = connect(&b.ws_url("456")).await;
    wait_connections(&b, 1);
    assert_eq!(post_json(&b, "/socket/456", "local only"), json!({"id": "456", "sockets": 1, "nodes": null}));
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "local only");

    let _redis = RedisServer::start_on(port).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    wait_healthy(&a, RECOVERY);
    wait_healthy(&b, RECOVERY);
    eprintln!("both nodes healthy {:?} after Redis started", started.elapsed());

    assert_eq!(post_json(&a, "/socket/456", "now clustered"), json!({"id": "456", "sockets": 0, "nodes": 1}));
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "now clustered");
    post_json(&a, "/socket/456", "sentinel");
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, "sentinel");
    assert_alive_and_no_panic(&mut a, "a");
    assert_alive_and_no_panic(&mut b, "b");
}

// ---------------------------------------------------------------------------------------
// The command line.

/// Runs `wspush ARGS` (on free ports) and checks it exits 2 with a message naming one of
/// `names`.
fn refused(args: &[&str], names: &[&str]) {
    let mut all_args = vec!["--ws-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"];
    all_args.extend_from_slice(args);
    let out = run_server_binary(&all_args);
    let all = out.all();
    assert_eq!(out.status.code(), Some(2), "wspush {args:?}: {out:?}");
    assert!(names.iter().any(|name| all.contains(name)), "wspush {args:?} does not name {names:?}:\n{all}");
    assert!(!all.contains("unexpected argument"), "wspush does not know {args:?}:\n{all}");
}

#[test]
fn redis_only_flags_without_redis_exit_2_naming_the_flag() {
    for args in [
        &["--redis-prefix", "shop:"][..],
        &["--node-id", "node-a"],
        &["--compat-channel", "legacy"],
        &["--compat-publish"],
        &["--redis-queue-limit", "10"],
        &["--inbound-channel", "in"],
        &["--no-inbound"],
    ] {
        refused(args, &[args[0]]);
    }
}

#[test]
fn bad_cluster_settings_exit_2_naming_the_setting() {
    let url = "redis://127.0.0.1:1";
    refused(&["--redis", "not a url"], &["--redis", "redis"]);
    refused(&["--redis", url, "--compat-publish"], &["--compat-publish", "compat_publish"]);
    refused(&["--redis", url, "--node-id", &"n".repeat(65)], &["--node-id", "node_id"]);
    refused(&["--redis", url, "--redis-queue-limit", "0"], &["--redis-queue-limit", "redis_queue_limit"]);
}
