//! History and exact resume in cluster mode, over a real `redis-server` each test starts for
//! itself: Redis gives every send its position, every node (the sender's included) delivers
//! it from the publish in one order, a client resumes on any node with `?since=`, a node
//! catches up what its sockets missed while its subscription was down, and a Redis that
//! comes back empty is announced (`!lost`, close 4410), never a silent gap.
//!
//! Nodes are in-process engines (two per test, as two processes would be: they share
//! nothing but Redis) and, for the HTTP API, the real binary. Clients are tokio-tungstenite.

#[path = "support.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wspush::{ClusterConfig, Config, Engine, Message, Position};

/// How long a node may take to come back once Redis is back (its reconnect backoff tops
/// out at 5 s; generous for a loaded 2-core machine).
const RECOVERY: Duration = Duration::from_secs(30);

/// A cluster engine with history on (`size` messages per id).
fn node(redis: &RedisServer, name: &str, size: usize) -> Engine {
    node_with(redis, name, |config| config.history_size = size)
}

/// A cluster engine with history on (100 messages per id, 2 workers), `configure` applied,
/// connected to Redis.
fn node_with(redis: &RedisServer, name: &str, configure: impl FnOnce(&mut Config)) -> Engine {
    let cluster = ClusterConfig { node_id: Some(name.into()), ..ClusterConfig::new(redis.url()) };
    let mut config = Config {
        ws_listen: Some(any_port()),
        workers: 2,
        history_size: 100,
        cluster: Some(cluster),
        ..Config::default()
    };
    configure(&mut config);
    let engine = Engine::start(config).expect("a cluster engine with history starts");
    eventually(TIMEOUT, "the node connects to Redis", || engine.is_healthy());
    engine
}

/// Sends and waits for the receipt; its position, if Redis gave one.
fn send_positioned(engine: &Engine, id: &str, text: &str) -> Option<Position> {
    let (tx, rx) = mpsc::channel();
    engine
        .send_with_receipt(id, Message::Text(text), move |receipt| {
            let _ = tx.send(receipt.position);
        })
        .expect("send_with_receipt failed");
    rx.recv_timeout(TIMEOUT).expect("no receipt")
}

fn url(engine: &Engine, id: &str, since: Option<Position>) -> String {
    let addr = addr(engine);
    match since {
        Some(since) => format!("ws://{addr}/websocket/{id}?since={since}"),
        None => format!("ws://{addr}/websocket/{id}"),
    }
}

/// Connects a v1 client and waits for its `!pos`: from then on the id is live on that node
/// (subscribed, and its position read after the subscription took effect).
async fn live_v1(engine: &Engine, id: &str) -> (Ws, Position) {
    let mut ws = connect_v1(&url(engine, id, None)).await;
    let position = position_in(&recv_text(&mut ws, TIMEOUT).await, "!pos ");
    (ws, position)
}

/// A v1 data frame `E:O\nBODY` split.
fn split_v1(frame: &str) -> (Position, &str) {
    let (head, body) = frame.split_once('\n').unwrap_or_else(|| panic!("not a v1 data frame: {frame:?}"));
    (head.parse().unwrap_or_else(|_| panic!("not a position head: {frame:?}")), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_positions_every_send_and_every_node_delivers_it_once_in_that_order() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a", 100), node(&redis, "b", 100));
    let (mut on_b, start) = live_v1(&b, "u1").await;
    assert_eq!(start.offset, 0, "a new id's history starts at 0");
    let (mut on_a, start_a) = live_v1(&a, "u1").await;
    assert_eq!(start_a, start, "both nodes read the same position from Redis");
    let mut plain_on_a = connect(&url(&a, "u1", None)).await;
    let e = start.epoch;
    for i in 1..=50u64 {
        let position = send_positioned(&a, "u1", &format!("m{i}")).expect("a position from Redis");
        assert_eq!(position, Position::new(e, i));
    }
    for i in 1..=50u64 {
        assert_eq!(recv_text(&mut on_b, TIMEOUT).await, format!("{e}:{i}\nm{i}"), "other node");
        assert_eq!(recv_text(&mut on_a, TIMEOUT).await, format!("{e}:{i}\nm{i}"), "the sender's node");
    }
    // The plain socket may have joined after the first sends (it waited for the id to go
    // live): it gets a contiguous tail, in order, once each.
    let first: u64 = recv_text(&mut plain_on_a, TIMEOUT).await[1..].parse().unwrap();
    for i in first + 1..=50 {
        assert_eq!(recv_text(&mut plain_on_a, TIMEOUT).await, format!("m{i}"));
    }
    // Nothing more: a sentinel sent now is the next message everywhere.
    send_positioned(&b, "u1", "end");
    assert_eq!(recv_text(&mut on_a, TIMEOUT).await, format!("{e}:51\nend"));
    assert_eq!(recv_text(&mut on_b, TIMEOUT).await, format!("{e}:51\nend"));
    assert_eq!(recv_text(&mut plain_on_a, TIMEOUT).await, "end");
    let stats = a.stats();
    assert_eq!(stats.cluster.as_ref().unwrap().history_appends, 50);
    assert_eq!(stats.history_duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed_then_live() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a", 100), node(&redis, "b", 100));
    let (mut ws, start) = live_v1(&b, "u2").await;
    let e = start.epoch;
    for i in 1..=3u64 {
        send_positioned(&a, "u2", &format!("m{i}"));
        assert_eq!(recv_text(&mut ws, TIMEOUT).await, format!("{e}:{i}\nm{i}"));
    }
    drop(ws);
    for i in 4..=10u64 {
        send_positioned(&a, "u2", &format!("m{i}"));
    }
    // v1 resume on the sender's node, the other plain on B.
    let mut v1 = connect_v1(&url(&a, "u2", Some(Position::new(e, 3)))).await;
    let mut plain = connect(&url(&b, "u2", Some(Position::new(e, 5)))).await;
    for i in 4..=10u64 {
        assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:{i}\nm{i}"));
    }
    assert_eq!(position_in(&recv_text(&mut v1, TIMEOUT).await, "!pos "), Position::new(e, 10));
    for i in 6..=10u64 {
        assert_eq!(recv_text(&mut plain, TIMEOUT).await, format!("m{i}"));
    }
    send_positioned(&b, "u2", "live");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:11\nlive"));
    assert_eq!(recv_text(&mut plain, TIMEOUT).await, "live");
    assert!(a.stats().history_replayed >= 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_past_the_history_is_told_lost_and_a_plain_client_is_closed_4410() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a", 10), node(&redis, "b", 10));
    let (ws, start) = live_v1(&b, "u3").await;
    drop(ws);
    let e = start.epoch;
    // Redis trims `MAXLEN ~ 10` by whole stream nodes (100 entries): 300 sends leave at
    // most about 110.
    for i in 1..=300u64 {
        send_positioned(&a, "u3", &format!("m{i}"));
    }
    let mut v1 = connect_v1(&url(&b, "u3", Some(Position::new(e, 1)))).await;
    assert_eq!(position_in(&recv_text(&mut v1, TIMEOUT).await, "!lost "), Position::new(e, 300));
    send_positioned(&a, "u3", "after");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:301\nafter"), "live after the signal");
    let mut plain = connect(&url(&b, "u3", Some(Position::new(e, 50)))).await;
    match next_item(&mut plain, TIMEOUT).await {
        WsMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4410);
            assert_eq!(frame.reason, "history lost, resynchronise");
        }
        other => panic!("expected close 4410, got {other:?}"),
    }
    // Another epoch is lost too.
    let mut other = connect_v1(&url(&b, "u3", Some("zzzzzzzz:5".parse().unwrap()))).await;
    assert_eq!(position_in(&recv_text(&mut other, TIMEOUT).await, "!lost "), Position::new(e, 301));
    assert!(b.stats().history_lost_signals >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_during_a_continuous_stream_from_two_nodes_is_exact_at_every_seam() {
    const SENDS: u64 = 3000;
    let redis = RedisServer::start();
    let (a, b) = (Arc::new(node(&redis, "a", 5000)), Arc::new(node(&redis, "b", 5000)));
    let (mut ws, start) = live_v1(&b, "u4").await;
    let e = start.epoch;
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (a, b, done) = (a.clone(), b.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 1..=SENDS {
                // Half from each node, in one order: each send waits for the previous one's
                // position, so the offsets are the sequence numbers.
                let from = if i % 2 == 0 { &a } else { &b };
                assert_eq!(send_positioned(from, "u4", &i.to_string()), Some(Position::new(e, i)));
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seen = 0u64;
    let mut reconnects = 0;
    let mut since_reconnect = 0;
    // Reconnect every 97 messages to the node the count says, resuming from the last seen.
    while seen < SENDS {
        let text = recv_text(&mut ws, TIMEOUT).await;
        if text.starts_with('!') {
            assert_eq!(position_in(&text, "!pos "), Position::new(e, seen), "joined live where it was");
            continue;
        }
        let (position, body) = split_v1(&text);
        assert_eq!(
            position,
            Position::new(e, seen + 1),
            "exactly the next one (after {reconnects} reconnects)"
        );
        assert_eq!(body, (seen + 1).to_string());
        seen += 1;
        since_reconnect += 1;
        if since_reconnect == 97 && seen < SENDS {
            since_reconnect = 0;
            reconnects += 1;
            drop(ws);
            let node = if reconnects % 2 == 0 { &a } else { &b };
            ws = connect_v1(&url(node, "u4", Some(Position::new(e, seen)))).await;
        }
    }
    sender.join().expect("the sender failed");
    assert!(done.load(Ordering::SeqCst));
    assert!(reconnects >= 20, "{reconnects} reconnects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_is_announced_to_live_sockets_without_a_new_publish() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis, "a", 100), node(&redis, "b", 100));
    let (mut v1, start) = live_v1(&b, "u5").await;
    let mut plain = connect(&url(&b, "u5", Some(start))).await;
    let e = start.epoch;
    for i in 1..=5u64 {
        send_positioned(&a, "u5", &format!("m{i}"));
        assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:{i}\nm{i}"));
        assert_eq!(recv_text(&mut plain, TIMEOUT).await, format!("m{i}"));
    }
    redis.kill9();
    redis.restart();
    // The catch-up read after resubscribing finds no history: a new epoch at 0.
    let lost = tokio::time::timeout(RECOVERY, recv_text(&mut v1, RECOVERY)).await.expect("no signal");
    let now = position_in(&lost, "!lost ");
    assert_ne!(now.epoch, e, "a new epoch");
    assert_eq!(now.offset, 0);
    match next_item(&mut plain, RECOVERY).await {
        WsMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4410),
        other => panic!("expected close 4410, got {other:?}"),
    }
    eventually(RECOVERY, "node a reconnects", || a.is_healthy());
    assert_eq!(send_positioned(&a, "u5", "new"), Some(Position::new(now.epoch, 1)));
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{}:1\nnew", now.epoch));
    // An old position resumes to the signal too, then gets the new epoch from its start.
    let mut old = connect_v1(&url(&b, "u5", Some(Position::new(e, 5)))).await;
    assert_eq!(position_in(&recv_text(&mut old, TIMEOUT).await, "!lost "), Position::new(now.epoch, 0));
    assert_eq!(recv_text(&mut old, TIMEOUT).await, format!("{}:1\nnew", now.epoch));
    assert_eq!(position_in(&recv_text(&mut old, TIMEOUT).await, "!pos "), Position::new(now.epoch, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_a_redis_killed_mid_stream_loses_no_accepted_send_and_duplicates_none() {
    const SENDS: u64 = 2000;
    let mut redis = RedisServer::start_persistent();
    let (a, b) = (Arc::new(node(&redis, "a", 5000)), node(&redis, "b", 5000));
    let (mut v1, start) = live_v1(&b, "u6").await;
    let mut plain = connect(&url(&b, "u6", Some(start))).await;
    let e = start.epoch;
    let (killed_tx, killed_rx) = mpsc::channel::<()>();
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || {
            let mut killed = false;
            for i in 1..=SENDS {
                // Every send is accepted (Ok): queued while Redis is away, appended in send
                // order when it returns.
                send_retrying(&a, "u6", &i.to_string());
                if i == SENDS / 2 && !killed {
                    killed_rx.recv_timeout(TIMEOUT).expect("the kill was not signalled");
                    killed = true;
                }
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        })
    };
    // Kill Redis once the first few hundred have arrived; the rest are sent while it is
    // down and after it is back.
    for i in 1..=300u64 {
        assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:{i}\n{i}"));
    }
    redis.kill9();
    let _ = killed_tx.send(());
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    for i in 301..=SENDS {
        let text = recv_text(&mut v1, RECOVERY).await;
        assert_eq!(text, format!("{e}:{i}\n{i}"), "the same epoch, the next offset, once");
    }
    for i in 1..=SENDS {
        assert_eq!(recv_text(&mut plain, RECOVERY).await, i.to_string());
    }
    sender.join().expect("the sender failed");
    send_positioned(&a, "u6", "end");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:{}\nend", SENDS + 1));
    assert_eq!(recv_text(&mut plain, TIMEOUT).await, "end");
    assert_eq!(b.stats().history_lost_signals, 0);
}

#[test]
fn the_http_api_answers_positions_202_while_redis_is_down_and_reads_history_from_redis() {
    let mut redis = RedisServer::start();
    let server = Server::start(&["--redis", &redis.url(), "--history-size", "100"]);
    eventually_eq(TIMEOUT, "GET /healthz", 200, || server.get("/healthz").status());
    let first = json(&server.post("/socket/h1", "one"));
    let epoch = first["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(first["offset"], 1);
    assert_eq!(json(&server.post("/socket/h1", "two"))["offset"], 2);
    let read = json(&server.get(&format!("/history/h1?since={epoch}:1")));
    assert_eq!(read["recovered"], true);
    assert_eq!(read["offset"], 2);
    assert_eq!(read["messages"], serde_json::json!([{"offset": 2, "text": "two"}]));
    let all = json(&server.get("/history/h1?since=other:1"));
    assert_eq!(all["recovered"], false);
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);

    redis.kill9();
    eventually_eq(TIMEOUT, "GET /healthz while Redis is down", 503, || server.get("/healthz").status());
    let queued = server.post("/socket/h1", "three");
    assert_eq!(queued.status(), 202, "{queued:?}");
    let body = json(&queued);
    assert_eq!(
        (body["offset"].clone(), body["epoch"].clone()),
        (serde_json::Value::Null, serde_json::Value::Null)
    );
    assert_eq!(server.get("/history/h1").status(), 503, "no history without Redis");
    redis.restart();
    eventually_eq(RECOVERY, "GET /healthz", 200, || server.get("/healthz").status());
    // The queued send was appended when Redis came back (a new epoch: this Redis kept
    // nothing), and nothing was appended twice.
    eventually_eq(
        RECOVERY,
        "the history after Redis came back",
        serde_json::json!([{"offset": 1, "text": "three"}]),
        || json(&server.get("/history/h1"))["messages"].clone(),
    );
    assert_eq!(server_counter(&server, "cluster.history_appends"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_and_compat_messages_are_live_only_and_never_replayed() {
    let redis = RedisServer::start();
    let compat = |name: &str| {
        node_with(&redis, name, |config| {
            config.cluster.as_mut().unwrap().compat_channel = Some("legacy:push".into());
        })
    };
    let (a, b) = (compat("a"), compat("b"));
    let (mut v1, start) = live_v1(&b, "7").await;
    let e = start.epoch;
    send_positioned(&a, "7", "positioned");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:1\npositioned"));
    a.broadcast(Message::Text("to all")).expect("broadcast");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, "-\nto all", "a broadcast has no position");
    redis_cli(redis.port(), &["PUBLISH", "legacy:push", r#"{"KEY":"7","VALUE":"from a legacy service"}"#]);
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, "-\nfrom a legacy service", "compat is live-only");
    send_positioned(&a, "7", "second");
    assert_eq!(recv_text(&mut v1, TIMEOUT).await, format!("{e}:2\nsecond"));
    // A resume from the start replays the positioned messages only.
    let mut resumed = connect_v1(&url(&a, "7", Some(Position::new(e, 0)))).await;
    assert_eq!(recv_text(&mut resumed, TIMEOUT).await, format!("{e}:1\npositioned"));
    assert_eq!(recv_text(&mut resumed, TIMEOUT).await, format!("{e}:2\nsecond"));
    assert_eq!(position_in(&recv_text(&mut resumed, TIMEOUT).await, "!pos "), Position::new(e, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_an_id_whose_history_vanished_is_told_lost_at_once() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 100);
    let (mut live, start) = live_v1(&a, "x").await;
    let e = start.epoch;
    for i in 1..=5u64 {
        send_positioned(&a, "x", &format!("m{i}"));
        assert_eq!(recv_text(&mut live, TIMEOUT).await, format!("{e}:{i}\nm{i}"));
    }
    // Deleted (or expired, or evicted) while the subscription stayed up.
    redis_cli(redis.port(), &["DEL", "wspush:h:x", "wspush:m:x"]);
    let mut resumed = connect_v1(&url(&a, "x", Some(Position::new(e, 2)))).await;
    let lost = position_in(&recv_text(&mut resumed, TIMEOUT).await, "!lost ");
    assert_ne!(lost.epoch, e, "the history's new epoch");
    let told = position_in(&recv_text(&mut live, TIMEOUT).await, "!lost ");
    assert_eq!(told, lost, "the live socket is told too");
    assert!(a.stats().cluster.unwrap().history_reads < 100, "no read storm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_went_back_is_announced_not_taken_for_duplicates() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 100);
    let (mut live, start) = live_v1(&a, "r").await;
    let e = start.epoch;
    for i in 1..=6u64 {
        send_positioned(&a, "r", &format!("m{i}"));
        assert_eq!(recv_text(&mut live, TIMEOUT).await, format!("{e}:{i}\nm{i}"));
    }
    // What a Redis restored from an older snapshot looks like: the same epoch, top 3.
    redis_cli(redis.port(), &["DEL", "wspush:h:r"]);
    for i in 1..=3 {
        redis_cli(redis.port(), &["XADD", "wspush:h:r", &i.to_string(), "t", &format!("m{i}")]);
    }
    redis_cli(redis.port(), &["HSET", "wspush:m:r", "s", "3"]);
    redis_cli(redis.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
    let lost = position_in(&recv_text(&mut live, RECOVERY).await, "!lost ");
    assert_eq!(lost, Position::new(e, 3));
    assert_eq!(send_positioned(&a, "r", "m7"), Some(Position::new(e, 4)));
    assert_eq!(recv_text(&mut live, TIMEOUT).await, format!("{e}:4\nm7"), "not dropped as a duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_ids_than_a_worker_reads_at_once_all_catch_up_before_going_live() {
    const IDS: usize = 1100;
    let redis = RedisServer::start();
    // One worker, so it holds every id.
    let a = node_with(&redis, "a", |config| config.workers = 1);
    let mut sockets = Vec::with_capacity(IDS);
    for i in 0..IDS {
        let (ws, _) = live_v1(&a, &format!("k{i}")).await;
        sockets.push(ws);
    }
    // Redis loses everything while the node holds 1,100 ids (more than the 1,024 reads a
    // worker has under way): every id must read its history again before it takes a new
    // message, so every socket hears of the loss first.
    redis_cli(redis.port(), &["FLUSHALL"]);
    redis_cli(redis.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
    eventually(RECOVERY, "resubscribed", || a.stats().cluster.unwrap().subscribed_channels as usize > IDS);
    for i in 0..IDS {
        send_retrying(&a, &format!("k{i}"), "after");
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        // First the signal at the new epoch's start, then the message (read from the new
        // epoch when the id's catch-up came after the send, live otherwise).
        let lost = position_in(&recv_text(ws, RECOVERY).await, "!lost ");
        assert_eq!(lost.offset, 0, "k{i}");
        assert_eq!(recv_text(ws, TIMEOUT).await, format!("{}:1\nafter", lost.epoch), "k{i}");
    }
    // A sentinel: nothing else was queued for any socket.
    for i in 0..IDS {
        send_retrying(&a, &format!("k{i}"), "end");
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        let frame = recv_text(ws, TIMEOUT).await;
        let (position, body) = split_v1(&frame);
        assert_eq!((position.offset, body), (2, "end"), "k{i}");
    }
}
