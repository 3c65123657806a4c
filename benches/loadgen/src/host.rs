//! `wspush-bench host`: an engine in a process of its own (the server under test for
//! `--via inproc`), publishing plans it reads as JSON lines on stdin through `Engine::send` /
//! `Engine::broadcast`, as an application embedding wspush does. It answers each plan with a
//! JSON line once every message was handed to the engine; `stats` answers with the engine's
//! counters. With `--redis` it is a cluster node.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::publish::{self, EngineSink, Plan};

pub fn run(
    ws_listen: SocketAddr,
    workers: usize,
    max_buffered_bytes: Option<usize>,
    history_size: usize,
    redis: Option<(String, String)>,
) -> i32 {
    let mut config =
        wspush::Config { ws_listen: Some(ws_listen), workers, history_size, ..wspush::Config::default() };
    if let Some((url, node_id)) = redis {
        config.cluster =
            Some(wspush::ClusterConfig { node_id: Some(node_id), ..wspush::ClusterConfig::new(url) });
    }
    if let Some(bytes) = max_buffered_bytes {
        config.max_buffered_bytes = bytes;
    }
    let engine = match wspush::Engine::start(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wspush-bench host: {e}");
            return 1;
        }
    };
    let mut out = io::stdout().lock();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let _ = writeln!(out, "{}", stats_json(&engine.stats()));
            let _ = out.flush();
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line).ok().as_ref().and_then(Plan::from_json) {
            None => json!({"type": "error", "error": format!("not a plan: {line}")}),
            Some(plan) => {
                let mut sink = EngineSink { engine: &engine, retries: 0, errors: 0 };
                match publish::run(&plan, &mut sink, &mut |_| {}) {
                    Ok(first_ns) => {
                        json!({"type": "done", "first_ns": first_ns, "retries": sink.retries, "errors": sink.errors})
                    }
                    Err(e) => json!({"type": "error", "error": e.to_string()}),
                }
            }
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    engine.shutdown(Duration::from_secs(2));
    0
}

/// The engine's counters in the shape of the server's `GET /stats` (the fields the
/// scenarios read).
fn stats_json(stats: &wspush::Stats) -> Value {
    let cluster = stats.cluster.as_ref().map(|c| {
        json!({
            "subscribed_channels": c.subscribed_channels, "published": c.published,
            "publish_round_trips": c.publish_round_trips, "received": c.received,
            "delivery_dropped": c.delivery_dropped, "reconnects": c.reconnects,
        })
    });
    json!({
        "connections": stats.connections, "ids": stats.ids,
        "slow_consumer_disconnects": stats.slow_consumer_disconnects, "queue_full": stats.queue_full,
        "cluster": cluster,
    })
}
