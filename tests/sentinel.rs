//! Cluster mode through Redis Sentinel (`redis+sentinel://`), over real processes each test
//! starts for itself: a master, its replica and three Sentinels (`redis-server --sentinel`),
//! all on free ports. The nodes ask the Sentinels for the master, follow a failover (the
//! `SENTINEL FAILOVER` command, and a master killed with SIGKILL) without a restart, are
//! unhealthy while they cannot deliver, and with history on lose and repeat nothing.
//!
//! Nodes are in-process engines (two per test, sharing nothing but Redis) and, for the
//! configuration errors, the real binary. Clients are tokio-tungstenite.

#[path = "support.rs"]
mod support;

use std::time::Duration;

use support::*;
use wspush::{ClusterConfig, Config, Engine, Position};

/// How long a failover may take, Sentinels' agreement and the nodes' reconnection included
/// (a master is down after 2 s without an answer; generous for a loaded 2-core machine).
const FAILOVER: Duration = Duration::from_secs(45);

/// A master, its replica and three Sentinels watching them.
struct SentinelSet {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<SentinelServer>,
}

impl SentinelSet {
    /// Starts the set and waits until every Sentinel knows the replica and the other
    /// Sentinels (without both, no failover can happen).
    fn start() -> SentinelSet {
        let master = RedisServer::start();
        let replica = RedisServer::start_replica_of(master.port());
        let sentinels: Vec<SentinelServer> = (0..3).map(|_| SentinelServer::start(master.port())).collect();
        for sentinel in &sentinels {
            eventually(FAILOVER, "every Sentinel knows the replica and the two other Sentinels", || {
                let replicas = sentinel.command(&["SENTINEL", "replicas", SENTINEL_MASTER]).items().len();
                let others = sentinel.command(&["SENTINEL", "sentinels", SENTINEL_MASTER]).items().len();
                replicas == 1 && others == 2
            });
        }
        SentinelSet { master, replica, sentinels }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// Makes `master` the server the Sentinels name master now: on a loaded machine they may
    /// have failed over on their own already (a master slow to answer looks down).
    fn settle(&mut self) {
        if self.sentinels[0].master_port() == Some(self.replica.port()) {
            std::mem::swap(&mut self.master, &mut self.replica);
        }
        self.wait_master(self.master.port());
    }

    /// Waits until every Sentinel names `port` master.
    fn wait_master(&self, port: u16) {
        for sentinel in &self.sentinels {
            eventually(FAILOVER, &format!("the Sentinels to name 127.0.0.1:{port} master"), || {
                sentinel.master_port() == Some(port)
            });
        }
    }
}

/// A cluster engine over the Sentinel set, `configure` applied, connected.
fn node(set: &SentinelSet, name: &str, configure: impl FnOnce(&mut Config)) -> Engine {
    let cluster = ClusterConfig { node_id: Some(name.into()), ..ClusterConfig::new(set.url()) };
    let mut config =
        Config { ws_listen: Some(any_port()), workers: 2, cluster: Some(cluster), ..Config::default() };
    configure(&mut config);
    let engine = Engine::start(config).expect("a cluster engine over Sentinels starts");
    eventually(TIMEOUT, "the node connects to the master the Sentinels name", || engine.is_healthy());
    engine
}

fn master_switches(engine: &Engine) -> u64 {
    engine.stats().cluster.expect("cluster mode").master_switches
}

/// Waits until `count` connections on `redis` subscribe `channel`.
fn wait_subscribers(redis: &RedisServer, channel: &str, count: i64) {
    eventually(FAILOVER, &format!("{count} subscriber(s) of {channel} on port {}", redis.port()), || {
        redis.numsub(channel) == count
    });
}

/// What a v1 socket received through a failover, read up to the message `end`.
#[derive(Debug, Default)]
struct Received {
    /// The bodies of the data frames, in order.
    bodies: Vec<String>,
    /// `!lost` signals: the history went back (writes the old master took after the
    /// replica's promotion, or never replicated, would not be on the new one).
    lost: usize,
}

/// Reads `ws` (a v1 socket at `start`) until the body `end`, checking that every position
/// is the one after the previous, or announced by `!lost`: no silent gap, no repeat.
async fn read_positions(ws: &mut Ws, start: Position) -> Received {
    let mut received = Received::default();
    let mut at = start;
    loop {
        let frame = recv_text(ws, FAILOVER).await;
        if frame.starts_with("!lost ") {
            at = position_in(&frame, "!lost ");
            received.lost += 1;
            continue;
        }
        let (head, body) = frame.split_once('\n').unwrap_or_else(|| panic!("not a v1 data frame: {frame:?}"));
        let position: Position = head.parse().unwrap_or_else(|_| panic!("not a position: {frame:?}"));
        assert_eq!(
            position,
            Position::new(at.epoch, at.offset + 1),
            "after {at}: {frame:?} (received {received:?})"
        );
        at = position;
        if body == "end" {
            return received;
        }
        received.bodies.push(body.to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_delivers_every_message_once_with_history() {
    let mut set = SentinelSet::start();
    let (a, b) = (node(&set, "a", |c| c.history_size = 10_000), node(&set, "b", |c| c.history_size = 10_000));
    set.settle();
    let mut v1 = connect_v1(&format!("ws://{}/websocket/u1", addr(&a))).await;
    let start = position_in(&recv_text(&mut v1, TIMEOUT).await, "!pos ");
    wait_subscribers(&set.master, "wspush:u:u1", 1);

    // Node b sends all through the failover, to node a's socket.
    let sender = Streamer::start(b, vec!["u1".into()]);
    std::thread::sleep(Duration::from_millis(300));
    // Asked of the last Sentinel in the URL: the one leading the failover is not the one the
    // nodes ask first.
    let reply = set.sentinels[2].command(&["SENTINEL", "FAILOVER", SENTINEL_MASTER]);
    assert_eq!(reply, Resp::Simple("OK".into()), "SENTINEL FAILOVER");
    set.wait_master(set.replica.port());
    eventually(FAILOVER, "node a follows the failover and is healthy again", || {
        master_switches(&a) >= 1 && a.is_healthy()
    });
    wait_subscribers(&set.replica, "wspush:u:u1", 1);
    std::thread::sleep(Duration::from_millis(500));
    let (b, sent) = sender.stop();
    assert!(master_switches(&b) >= 1, "node b followed the failover too");
    assert!(sent > 100, "only {sent} messages were sent through the failover");
    send_retrying(&b, "u1", "end");

    let received = read_positions(&mut v1, start).await;
    // The Sentinel announced the promotion before making it, and the nodes' writes waited
    // for the new master: it has every message, and each reached the socket once, in order.
    assert_eq!(received.lost, 0, "history lost through a planned failover: {received:?}");
    let expected: Vec<String> = (1..=sent).map(|i| format!("m{i}")).collect();
    assert_eq!(received.bodies, expected, "exactly once through the failover");
    // The history is on the new master, whole.
    assert_eq!(set.replica.command(&["XLEN", "wspush:h:u1"]).int(), Some(sent as i64 + 1));
}

/// Sends `label#1`, `label#2`, ... to `u1` through `sender` until the socket gets one (within
/// [`FAILOVER`]). History is off: delivery is at most once, and a loaded machine's Sentinels
/// may fail over once more (a master slow to answer looks down), losing a send made then; the
/// claim is that delivery resumes. Late copies of `earlier#k` sends are skipped; anything else
/// fails the test.
async fn delivered_eventually(sender: &Engine, ws: &mut Ws, label: &str, earlier: Option<&str>) {
    use futures_util::StreamExt;
    let deadline = std::time::Instant::now() + FAILOVER;
    for n in 1.. {
        assert!(std::time::Instant::now() < deadline, "no `{label}` reached the socket within {FAILOVER:?}");
        send_retrying(sender, "u1", &format!("{label}#{n}"));
        let wait_until = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(item) = tokio::time::timeout_at(wait_until, ws.next()).await {
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = item else {
                assert!(matches!(item, Some(Ok(_))), "the socket failed or ended: {item:?}");
                continue;
            };
            let text = text.to_string();
            if text.starts_with(&format!("{label}#")) {
                return;
            }
            let stray = earlier.is_some_and(|earlier| text.starts_with(&format!("{earlier}#")));
            assert!(stray, "an unexpected message while waiting for `{label}`: {text:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_and_delivery_resumes_with_health_degraded_meanwhile() {
    let mut set = SentinelSet::start();
    let (a, b) = (node(&set, "a", |_| {}), node(&set, "b", |_| {}));
    let mut ws = connect(&format!("ws://{}/websocket/u1", addr(&a))).await;
    set.settle();
    wait_subscribers(&set.master, "wspush:u:u1", 1);
    send_retrying(&b, "u1", "before");
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "before");

    set.settle();
    set.master.kill9();
    eventually(FAILOVER, "node a is unhealthy without a master", || !a.is_healthy());
    set.wait_master(set.replica.port());
    eventually(FAILOVER, "both nodes follow the new master and are healthy", || {
        a.is_healthy() && b.is_healthy() && master_switches(&a) >= 1 && master_switches(&b) >= 1
    });
    wait_subscribers(&set.replica, "wspush:u:u1", 1);
    delivered_eventually(&b, &mut ws, "after", None).await;

    // The old master comes back (as master, until the Sentinels make it a replica): the
    // nodes keep to the one the Sentinels name.
    set.master.restart();
    eventually(FAILOVER, "the Sentinels turn the old master into a replica", || {
        // The Sentinels' reconfiguration closes the server's client connections (ours too).
        let role = RespConnection::connect(set.master.port()).and_then(|mut c| c.command(&[b"ROLE"]));
        role.is_ok_and(|role| role.items().first().and_then(Resp::text).as_deref() == Some("slave"))
    });
    delivered_eventually(&b, &mut ws, "later", Some("after")).await;
    assert_eq!(set.master.numsub("wspush:u:u1"), 0, "no node subscribes on the demoted master");
}

#[test]
fn bad_sentinel_urls_exit_2_naming_the_setting_and_the_fault() {
    for (url, fault) in [
        ("redis+sentinel://127.0.0.1:26379", "no master name"),
        ("redis+sentinel://127.0.0.1:port/mymaster", "the port is not a number"),
        ("redis+sentinel://127.0.0.1/mymaster?password=x", "unknown parameter `password`"),
        ("redis+sentinel://127.0.0.1:0/mymaster", "the port is not a number"),
        ("redis+cluster://127.0.0.1:7000/3", "database 0 only"),
    ] {
        let out = run_server_binary(&["--redis", url]);
        assert_eq!(out.status.code(), Some(2), "wspush --redis {url}: {out:?}");
        let all = out.all();
        assert!(
            all.contains("redis") && all.contains(fault),
            "wspush --redis {url} does not say `{fault}`:\n{all}"
        );
    }
}

#[test]
fn a_node_whose_sentinels_do_not_answer_stays_degraded_and_says_why() {
    let dead = free_port();
    let url = format!("redis+sentinel://127.0.0.1:{dead}/mymaster");
    let cluster = ClusterConfig { node_id: Some("lonely".into()), ..ClusterConfig::new(url) };
    let engine =
        Engine::start(Config { ws_listen: Some(any_port()), cluster: Some(cluster), ..Config::default() })
            .expect("a node starts while its Sentinels are unreachable (it retries)");
    assert!(!engine.is_healthy(), "healthy without a master");
    // It keeps trying: a Sentinel set that appears later is found without a restart.
    let master = RedisServer::start();
    let sentinel = SentinelServer::start_on(dead, master.port());
    eventually(FAILOVER, "the node finds the master once a Sentinel answers", || engine.is_healthy());
    drop(sentinel);
}
