//! The scenarios: each starts what it measures (Redis, nodes, client processes), runs its
//! phases and returns the figures as rows (name, value) for the table and the JSON line.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::check::{self, PositionFaults};
use crate::clock::now_ns;
use crate::payload::Kind;
use crate::progress::Progress;
use crate::publish::{self, HttpSink, Plan, RedisFormat, RedisSink, Sink};
use crate::servers::{Node, NodeOptions, Redis, Target};
use crate::swarm::{ClientMode, Merged, Share, Swarm};
use crate::Options;

/// The channel the original design (and the baseline) publishes on.
pub const COMPAT_CHANNEL: &str = "websocket";
const PREFIX: &str = "wspush:";
/// HTTP connections per node for publishing through the API.
const HTTP_CONNECTIONS_PER_NODE: usize = 32;

/// How messages reach the server(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// `POST /socket/{id}` / `POST /broadcast` on the nodes' HTTP API.
    Http,
    /// `Engine::send` in the server's own process (`wspush-bench host`).
    Inproc,
    /// PUBLISH `{"KEY": id, "VALUE": text}` on the compat channel (the original format).
    RedisCompat,
    /// PUBLISH the wspush envelope on `wspush:u:{id}` / `wspush:all`.
    RedisEnvelope,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Inproc => "inproc",
            Via::RedisCompat => "redis-compat",
            Via::RedisEnvelope => "redis-envelope",
        }
    }
}

/// Rows of a result, in the order they are shown.
pub type Rows = Vec<(String, Value)>;

/// Everything that makes a run inexact, summed over its phases: any of it non-zero, and the
/// run's figures are not to be trusted (the tool exits non-zero, `"exact": false`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Messages (unicasts, or broadcasts per healthy socket) never delivered to their target.
    pub missing: u64,
    /// Messages delivered more than once to their target (per socket for broadcasts).
    pub duplicates: u64,
    /// Unicasts read on a socket of another id than the one they name.
    pub misrouted: u64,
    /// Sequence numbers that were never sent in the phase they arrived in.
    pub unexpected: u64,
    /// Connections that failed to open or upgrade.
    pub connect_failures: u64,
    /// Messages the transport refused: HTTP non-2xx, Redis error replies, engine errors.
    pub publish_errors: u64,
    /// Connections the server closed (close frame or EOF) while the run held them.
    pub unexpected_closes: u64,
    /// Frames the client could not accept (masked, unknown opcode).
    pub bad_frames: u64,
    /// Publishing that stopped because its transport failed (the connection to Redis or to an
    /// HTTP API died): what it had not sent yet shows as missing.
    pub publish_failures: u64,
    /// Pings a held fleet did not answer: fewer than one per socket per ping interval.
    pub unanswered_pings: u64,
    /// The `wspush.v1` checks that failed.
    pub positions: PositionFaults,
}

impl Faults {
    fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("missing", self.missing),
            ("duplicates", self.duplicates),
            ("misrouted", self.misrouted),
            ("unexpected", self.unexpected),
            ("connect_failures", self.connect_failures),
            ("publish_errors", self.publish_errors),
            ("unexpected_closes", self.unexpected_closes),
            ("bad_frames", self.bad_frames),
            ("publish_failures", self.publish_failures),
            ("unanswered_pings", self.unanswered_pings),
        ]
        .into_iter()
        .chain(self.positions.fields())
    }

    pub fn is_exact(&self) -> bool {
        self.fields().all(|(_, n)| n == 0)
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.fields().map(|(k, n)| (k.to_owned(), json!(n))).collect())
    }

    /// The non-zero counts, as `missing 1, duplicates 2`.
    pub fn summary(&self) -> String {
        let nonzero: Vec<String> =
            self.fields().filter(|&(_, n)| n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        nonzero.join(", ")
    }

    fn closes(&mut self, merged: &Merged) {
        self.unexpected_closes += merged.closes.values().sum::<u64>();
        self.bad_frames += merged.bad_frames;
        self.misrouted += merged.misrouted;
        self.unexpected += merged.unexpected;
        self.positions.add(&merged.positions);
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// Everything a scenario started; dropped at its end, which stops it all.
struct Bench {
    // Dropped in this order: the nodes before the Redis they use.
    nodes: Vec<Node>,
    redis: Option<Redis>,
    target: Target,
    via: Via,
    /// A server someone else runs (`--server-ws`): nothing started, no counters read.
    external: bool,
    /// History is on (`--history-size` above 0): its counters are reported.
    history: bool,
}

impl Bench {
    /// Starts Redis if `needs_redis` (or uses `--redis`), then `count` nodes.
    fn start(
        options: &Options,
        via: Via,
        count: usize,
        needs_redis: bool,
        extra: &[String],
    ) -> io::Result<Bench> {
        let target = options.target;
        if target.is_baseline() && matches!(via, Via::Inproc | Via::RedisEnvelope) {
            return Err(invalid(format!("the baseline cannot be reached --via {}", via.name())));
        }
        let history = options.history_size.unwrap_or(0) > 0;
        if target.is_baseline() && (options.v1 || options.history_size.is_some()) {
            return Err(invalid("the baselines have no history: --v1 and --history-size are wspush's"));
        }
        if options.v1 && !history && options.server_ws.is_none() {
            return Err(invalid("--v1 needs history on: add --history-size N"));
        }
        let mut extra = extra.to_vec();
        if let Some(size) = options.history_size {
            extra.extend(["--history-size".to_owned(), size.to_string()]);
        }
        let extra = &extra[..];
        if let Some(ws) = options.server_ws {
            if via == Via::Inproc || count != 1 {
                return Err(invalid("--server-ws takes one node, reached --via http or Redis"));
            }
            let redis = match (needs_redis, options.redis) {
                (false, _) => None,
                (true, Some(addr)) => Some(Redis::existing(addr)),
                (true, None) => return Err(invalid("--server-ws with a Redis path needs --redis")),
            };
            let node = Node::external(ws, options.server_api.unwrap_or(ws));
            return Ok(Bench { nodes: vec![node], redis, target, via, external: true, history });
        }
        let needs_redis = needs_redis || target.is_baseline() || count > 1 || options.with_redis;
        let redis = match (needs_redis, options.redis, options.redis_masters) {
            (false, _, _) => None,
            (true, Some(addr), _) => Some(Redis::existing(addr)),
            (true, None, 0) => Some(Redis::start()?),
            (true, None, masters) if target == Target::Wspush => Some(Redis::start_cluster(masters)?),
            (true, None, _) => return Err(invalid("--redis-masters: the baselines use one Redis")),
        };
        let mut nodes = Vec::new();
        for index in 0..count {
            let node = match (target, via) {
                (Target::Baseline, _) => {
                    Node::start_baseline(&redis.as_ref().expect("started").url(), COMPAT_CHANNEL)?
                }
                (Target::Uws, _) => Node::start_uws(&redis.as_ref().expect("started").url(), COMPAT_CHANNEL)?,
                (Target::Wspush, Via::Inproc) => Node::start_host(
                    options.workers,
                    extra,
                    redis.as_ref().map(|r| (r.url(), format!("node{index}"))),
                )?,
                (Target::Wspush, _) => Node::start_wspush(&NodeOptions {
                    redis_url: redis.as_ref().map(Redis::url),
                    compat_channel: (via == Via::RedisCompat).then(|| COMPAT_CHANNEL.to_owned()),
                    node_id: redis.as_ref().map(|_| format!("node{index}")),
                    workers: options.workers,
                    extra: extra.to_vec(),
                    binary: options.wspush_bin.clone(),
                })?,
            };
            nodes.push(node);
        }
        Ok(Bench { nodes, redis, target, via, external: false, history })
    }

    fn ws_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.ws).collect()
    }

    fn server_cpu(&self) -> f64 {
        self.nodes.iter().map(Node::cpu_seconds).sum()
    }

    fn server_rss(&self) -> u64 {
        self.nodes.iter().map(Node::rss_bytes).sum()
    }

    fn redis_cpu(&self) -> f64 {
        self.redis.as_ref().map_or(0.0, Redis::cpu_seconds)
    }

    /// In cluster mode, waits until every node subscribed to the channels of all its ids,
    /// so nothing published afterwards can miss a node.
    fn wait_subscribed(&self) -> io::Result<()> {
        if self.target != Target::Wspush || self.redis.is_none() || self.external {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in &self.nodes {
            loop {
                let stats = node.stats()?;
                let fixed = 1 + u64::from(self.via == Via::RedisCompat);
                let ids = stats["ids"].as_u64().unwrap_or(0);
                let subscribed = stats["cluster"]["subscribed_channels"].as_u64().unwrap_or(0);
                if subscribed >= ids + fixed {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "node {} subscribed {subscribed} channels for {ids} ids after 60 s",
                        node.ws
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The sink `via` publishes into (not for inproc: the host publishes itself).
    fn sink(&self) -> io::Result<Box<dyn Sink>> {
        let redis = || match &self.redis {
            Some(r) if !r.cluster => Ok(r.addrs[0]),
            Some(_) => Err(io::Error::other("a Redis Cluster is reached --via http only")),
            None => Err(io::Error::other("no Redis")),
        };
        Ok(match self.via {
            Via::Http => {
                let apis: Vec<SocketAddr> = self.nodes.iter().map(|n| n.api).collect();
                Box::new(HttpSink::connect(&apis, HTTP_CONNECTIONS_PER_NODE)?)
            }
            Via::RedisCompat => {
                Box::new(RedisSink::connect(redis()?, RedisFormat::Compat, COMPAT_CHANNEL, PREFIX)?)
            }
            Via::RedisEnvelope => {
                Box::new(RedisSink::connect(redis()?, RedisFormat::Envelope, COMPAT_CHANNEL, PREFIX)?)
            }
            Via::Inproc => return Err(io::Error::other("inproc has no sink")),
        })
    }

    /// Publishes `plan` and waits for `expected` deliveries: the figures of one phase.
    fn phase(
        &mut self,
        swarm: &mut Swarm,
        plan: &Plan,
        expected: u64,
        options: &Options,
        on_batch: &mut dyn FnMut(&Bench),
    ) -> io::Result<PhaseResult> {
        let (cpu0, redis_cpu0, publish0) = (self.server_cpu(), self.redis_cpu(), self.redis_calls("publish"));
        let started = Instant::now();
        let mut publish_errors = 0;
        let mut publish_failure = None;
        let first_ns = if self.via == Via::Inproc {
            // Unicasts are split over the hosts (each sends its share in-process);
            // broadcasts go out from the first.
            let parts = if plan.kind == Kind::Unicast { self.nodes.len() } else { 1 };
            for (index, node) in self.nodes.iter().take(parts).enumerate() {
                node.host_send(&plan.part(index as u64, parts as u64).to_json().to_string())?;
            }
            let mut first = u64::MAX;
            for node in self.nodes.iter().take(parts) {
                let answer = node.host_answer()?;
                if answer["type"] != "done" {
                    return Err(io::Error::other(format!("the host failed: {answer}")));
                }
                first = first.min(answer["first_ns"].as_u64().unwrap_or(0));
                publish_errors += answer["errors"].as_u64().unwrap_or(0);
            }
            first
        } else {
            let phase_ns = now_ns();
            let mut progress = Progress::new("publishing", plan.count, !options.quiet);
            let mut last_sample = Instant::now();
            let mut sent = 0;
            let outcome = match self.sink() {
                Ok(mut sink) => {
                    let first = publish::run(plan, sink.as_mut(), &mut |n| {
                        sent = n;
                        progress.set(n);
                        if last_sample.elapsed() >= Duration::from_millis(250) {
                            last_sample = Instant::now();
                            on_batch(self);
                        }
                    });
                    // Refusals counted before a failure are faults too.
                    publish_errors = sink.errors();
                    first
                }
                Err(e) => Err(e),
            };
            progress.finish(sent);
            match outcome {
                Ok(first) => first,
                // The connection publishing died: the run goes on to count what arrived, and
                // is reported as inexact (what was not sent is missing), not dropped.
                Err(e) => {
                    eprintln!("wspush-bench: publishing failed after {sent} of {} messages: {e}", plan.count);
                    publish_failure = Some(e.to_string());
                    phase_ns
                }
            }
        };
        let publish_seconds = started.elapsed().as_secs_f64();
        let publish_span = now_ns().saturating_sub(first_ns) as f64 / 1e9;
        let received = swarm.wait_for(expected, Duration::from_secs_f64(options.stall), "delivering")?;
        let merged = swarm.report(if plan.kind == Kind::Broadcast { plan.count } else { 0 })?;
        let end_ns = if received >= expected { merged.last_ns } else { now_ns() };
        Ok(PhaseResult {
            seconds: end_ns.saturating_sub(first_ns) as f64 / 1e9,
            publish_seconds,
            publish_span,
            server_cpu: self.server_cpu() - cpu0,
            redis_cpu: self.redis_cpu() - redis_cpu0,
            redis_publishes: self.redis_calls("publish").saturating_sub(publish0),
            publish_errors,
            publish_failure,
            merged,
        })
    }

    fn redis_calls(&self, command: &str) -> u64 {
        self.redis.as_ref().map_or(0, |r| r.calls_of(command))
    }
}

struct PhaseResult {
    seconds: f64,
    publish_seconds: f64,
    /// From the first message's stamp until the last was handed to the transport.
    publish_span: f64,
    server_cpu: f64,
    redis_cpu: f64,
    redis_publishes: u64,
    publish_errors: u64,
    /// Why publishing stopped before the end, if it did.
    publish_failure: Option<String>,
    merged: Merged,
}

impl PhaseResult {
    /// The common rows: throughput, correctness, cost, latency; adds the phase's faults.
    fn rows(
        &self,
        prefix: &'static str,
        rows: &mut Rows,
        missing: u64,
        duplicates: u64,
        faults: &mut Faults,
    ) {
        let m = &self.merged;
        faults.missing += missing;
        faults.duplicates += duplicates;
        faults.publish_errors += self.publish_errors;
        faults.closes(m);
        if let Some(why) = &self.publish_failure {
            faults.publish_failures += 1;
            rows.push((format!("{prefix}publish_failure"), json!(why)));
        }
        let per_second = if self.seconds > 0.0 { m.deliveries as f64 / self.seconds } else { 0.0 };
        let cpu_per_100k = if m.deliveries > 0 { self.server_cpu / m.deliveries as f64 * 1e5 } else { 0.0 };
        let ms = |q: f64| round(m.latency.quantile(q) as f64 / 1e6, 3);
        let named = |name: &str| format!("{prefix}{name}");
        rows.push((named("deliveries"), json!(m.deliveries)));
        rows.push((named("missing"), json!(missing)));
        rows.push((named("duplicates"), json!(duplicates)));
        rows.push((named("misrouted"), json!(m.misrouted)));
        if m.unexpected > 0 {
            rows.push((named("unexpected"), json!(m.unexpected)));
        }
        rows.push((named("publish_errors"), json!(self.publish_errors)));
        rows.push((named("seconds"), json!(round(self.seconds, 3))));
        rows.push((named("publish_seconds"), json!(round(self.publish_seconds, 3))));
        // Near zero: the server kept pace with the publisher, so deliveries/s is the
        // publisher's rate; large: the server is what this run measured.
        let drained_after_ms = (self.seconds - self.publish_span).max(0.0) * 1e3;
        rows.push((named("drained_after_publish_ms"), json!(round(drained_after_ms, 1))));
        rows.push((named("deliveries_per_s"), json!(per_second.round())));
        rows.push((named("server_cpu_s"), json!(round(self.server_cpu, 2))));
        rows.push((named("server_cpu_s_per_100k"), json!(round(cpu_per_100k, 3))));
        rows.push((named("redis_cpu_s"), json!(round(self.redis_cpu, 2))));
        rows.push((named("latency_p50_ms"), json!(ms(0.50))));
        rows.push((named("latency_p99_ms"), json!(ms(0.99))));
        rows.push((named("latency_p999_ms"), json!(ms(0.999))));
        rows.push((named("latency_max_ms"), json!(ms(1.0))));
        if !m.closes.is_empty() {
            rows.push((named("closes"), json!(m.closes)));
        }
        v1_rows(m, prefix, rows);
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Splits `count` connections (ids `0..count`, alternating over `targets`) into client
/// processes of at most `per_process`, each from its own 127.x.0.1 (and up).
fn shares(count: usize, targets: &[SocketAddr], per_process: usize, slow_every: u64) -> Vec<Share> {
    let mut shares = Vec::new();
    let mut first = 0;
    while first < count {
        let n = per_process.min(count - first);
        // Keep the alternation global: connection i of a share has id first + i, and
        // goes to targets[(first + i) % len].
        let rotated: Vec<SocketAddr> =
            (0..targets.len()).map(|k| targets[(first + k) % targets.len()]).collect();
        shares.push(Share {
            targets: rotated,
            first_id: first as u64,
            count: n,
            source: Some(IpAddr::V4(Ipv4Addr::new(127, 10 + shares.len() as u8, 0, 1))),
            slow_every,
        });
        first += n;
    }
    shares
}

fn connect_rows(swarm: &Swarm, rows: &mut Rows, faults: &mut Faults) {
    faults.connect_failures += swarm.failed;
    rows.push(("connected".into(), json!(swarm.connected)));
    rows.push(("connect_failures".into(), json!(swarm.failed)));
    if !swarm.failures.is_empty() {
        rows.push(("connect_failure_reasons".into(), json!(swarm.failures)));
    }
    rows.push(("connect_seconds".into(), json!(round(swarm.connect_seconds, 3))));
    let rate = if swarm.connect_seconds > 0.0 { swarm.connected as f64 / swarm.connect_seconds } else { 0.0 };
    rows.push(("connects_per_s".into(), json!(rate.round())));
}

fn unicast_plan(options: &Options, count: u64, ids: u64, rate: Option<f64>) -> Plan {
    Plan {
        kind: Kind::Unicast,
        count,
        first_seq: 0,
        first_id: 0,
        ids,
        skip_every: 0,
        rate,
        size: options.size,
        seed: options.seed,
        round_robin: false,
    }
}

fn broadcast_plan(options: &Options, count: u64, rate: Option<f64>) -> Plan {
    Plan {
        kind: Kind::Broadcast,
        count,
        first_seq: 0,
        first_id: 0,
        ids: 0,
        skip_every: 0,
        rate,
        size: options.size,
        seed: options.seed,
        round_robin: false,
    }
}

/// `idle`: N connections held with pings; connects/s and the server's RSS per connection.
pub fn idle(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    let n = options.connections.unwrap_or(19_000);
    let hold = options.duration.unwrap_or(10.0);
    // Pings every 2 s, so the hold sees several rounds of them.
    let extra = ["--ping-interval", "2", "--idle-timeout", "10"].map(String::from);
    let bench = Bench::start(options, Via::Http, 1, false, &extra)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = bench.server_rss();
    let mut swarm = Swarm::connect(
        &shares(n, &bench.ws_addrs(), options.per_process, 0),
        0,
        ClientMode::of(options),
        !options.quiet,
    )?;
    connect_rows(&swarm, rows, faults);
    // Count pings and closes from here on: the hold, not the connect phase (whose closes
    // are faults too).
    faults.closes(&swarm.report(0)?);
    let cpu0 = bench.server_cpu();
    hold_connections(hold, options);
    let rss_after = bench.server_rss();
    let merged = swarm.report(0)?;
    faults.closes(&merged);
    let stats = bench.nodes[0].stats()?;
    rows.push(("held_seconds".into(), json!(hold)));
    rows.push(("server_connections".into(), stats["connections"].clone()));
    rows.push(("closed_while_held".into(), json!(merged.closes.values().sum::<u64>())));
    rows.push(("pings_answered".into(), json!(merged.pings)));
    rows.push(("server_rss_before_mib".into(), json!(round(rss_before as f64 / 1048576.0, 1))));
    rows.push(("server_rss_after_mib".into(), json!(round(rss_after as f64 / 1048576.0, 1))));
    let per_conn = rss_after.saturating_sub(rss_before) as f64 / swarm.connected.max(1) as f64;
    rows.push(("server_rss_bytes_per_connection".into(), json!(per_conn.round())));
    rows.push(("server_cpu_s_while_held".into(), json!(round(bench.server_cpu() - cpu0, 2))));
    Ok(())
}

/// Holds the connected sockets for `seconds` (a progress bar meanwhile), sending nothing.
fn hold_connections(seconds: f64, options: &Options) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut progress = Progress::new("holding (s)", seconds as u64, !options.quiet);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        progress.set((seconds - deadline.saturating_duration_since(Instant::now()).as_secs_f64()) as u64);
    }
    progress.finish(seconds as u64);
}

/// `unicast` and `latency`: messages to random ids among the connected ones.
pub fn unicast(options: &Options, rows: &mut Rows, latency: bool, faults: &mut Faults) -> io::Result<()> {
    let via = options.via.unwrap_or(Via::RedisCompat);
    let node_count = options.nodes.unwrap_or(1);
    let n = options.connections.unwrap_or(1_000);
    let (rate, m) = if latency {
        let rate = options.rate.unwrap_or(10_000.0);
        (Some(rate), options.messages.unwrap_or((rate * options.duration.unwrap_or(10.0)) as u64))
    } else {
        (options.rate, options.messages.unwrap_or(200_000))
    };
    let needs_redis = matches!(via, Via::RedisCompat | Via::RedisEnvelope);
    let mut bench = Bench::start(options, via, node_count, needs_redis, &[])?;
    let mut swarm = Swarm::connect(
        &shares(n, &bench.ws_addrs(), options.per_process, 0),
        m,
        ClientMode::of(options),
        !options.quiet,
    )?;
    connect_rows(&swarm, rows, faults);
    bench.wait_subscribed()?;
    if options.v1 {
        // A v1 socket is live from its `!pos` on: what is sent before is not its (it
        // would resume for it), so nothing is sent until every socket has its position.
        let positioned = swarm.wait_live(swarm.connected, Duration::from_secs_f64(options.stall))?;
        rows.push(("positioned".into(), json!(positioned)));
    }
    rows.push(("rate".into(), json!(rate)));
    let plan = unicast_plan(options, m, n as u64, rate);
    let result = bench.phase(&mut swarm, &plan, m, options, &mut |_| {})?;
    let missing = m.saturating_sub(result.merged.unicast_distinct);
    result.rows("", rows, missing, result.merged.unicast_duplicates, faults);
    rows.push(("redis_publishes".into(), json!(result.redis_publishes)));
    server_counters(&bench, rows);
    Ok(())
}

/// The wspush nodes' own account of losses, summed: where a message went missing, if one did.
fn server_counters(bench: &Bench, rows: &mut Rows) {
    if bench.target != Target::Wspush || bench.external {
        return;
    }
    let mut names =
        vec!["received", "delivery_dropped", "reconnects", "slow_consumer_disconnects", "queue_full"];
    names.extend(bench.history_names());
    let mut totals: Vec<(&str, u64)> = names.into_iter().map(|name| (name, 0)).collect();
    for stats in bench.nodes.iter().filter_map(|n| n.stats().ok()) {
        for (name, total) in totals.iter_mut() {
            let value = stats[*name].as_u64().or_else(|| stats["cluster"][*name].as_u64());
            *total += value.unwrap_or(0);
        }
    }
    for (name, total) in totals {
        rows.push((format!("server_{name}"), json!(total)));
    }
}

/// `broadcast`: K broadcasts to N sockets, either as one burst (the default: K = 500,
/// published as fast as the transport takes them) or, with `--rate` or `--duration`, paced:
/// `--rate` broadcasts/s (100) for `--duration` s (10), which reports whether the publisher
/// kept the rate and the latency while it was held.
pub fn broadcast(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    let via = options.via.unwrap_or(Via::Http);
    let n = options.connections.unwrap_or(10_000);
    let sustained = options.rate.is_some() || options.duration.is_some();
    let (rate, k) = if sustained {
        let rate = options.rate.unwrap_or(100.0);
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(invalid("--rate must be a positive number of broadcasts per second"));
        }
        let duration = options.duration.unwrap_or(10.0);
        (Some(rate), options.broadcasts.unwrap_or((rate * duration).round() as u64).max(1))
    } else {
        (None, options.broadcasts.unwrap_or(500))
    };
    let needs_redis = matches!(via, Via::RedisCompat | Via::RedisEnvelope);
    if options.target == Target::Wspush && via == Via::RedisCompat {
        return Err(invalid("the compat format has no broadcast in wspush: use --via redis-envelope"));
    }
    let mut bench = Bench::start(options, via, options.nodes.unwrap_or(1), needs_redis, &[])?;
    let mut swarm = Swarm::connect(
        &shares(n, &bench.ws_addrs(), options.per_process, 0),
        0,
        ClientMode::of(options),
        !options.quiet,
    )?;
    connect_rows(&swarm, rows, faults);
    bench.wait_subscribed()?;
    let expected = k * swarm.connected;
    let plan = broadcast_plan(options, k, rate);
    let result = bench.phase(&mut swarm, &plan, expected, options, &mut |_| {})?;
    rows.push(("mode".into(), json!(if sustained { "sustained" } else { "burst" })));
    rows.push(("broadcasts".into(), json!(k)));
    if let Some(rate) = rate {
        rows.push(("rate".into(), json!(rate)));
        rows.push(("duration_s".into(), json!(round(k as f64 / rate, 3))));
        // K broadcasts are K - 1 intervals, from the first one's stamp to the last one
        // handed to the transport (publishing starts with the first at once).
        let achieved =
            if k > 1 && result.publish_span > 0.0 { (k - 1) as f64 / result.publish_span } else { rate };
        rows.push(("achieved_rate".into(), json!(round(achieved, 2))));
        rows.push(("rate_kept".into(), json!(achieved >= RATE_KEPT * rate)));
    }
    result.rows("", rows, result.merged.broadcast_missing, result.merged.broadcast_duplicates, faults);
    Ok(())
}

/// A paced run kept its rate when it published at least this share of it.
const RATE_KEPT: f64 = 0.98;

/// `cluster`: nodes (2) and Redis, clients on all, sends through every node's API.
pub fn cluster(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    let via = options.via.unwrap_or(Via::Http);
    let node_count = options.nodes.unwrap_or(2);
    let n = options.connections.unwrap_or(2_000);
    let m = options.messages.unwrap_or(100_000);
    let mut bench = Bench::start(options, via, node_count, true, &[])?;
    let shares = shares(n, &bench.ws_addrs(), options.per_process, 0);
    let mut swarm = connect_fleet(&bench, &shares, m, options, rows, faults)?;
    let before = cluster_counters(&bench);
    let redis_cpu_before = bench.redis.as_ref().map(Redis::cpu_seconds_each).unwrap_or_default();
    let plan = unicast_plan(options, m, n as u64, options.rate);
    let result = bench.phase(&mut swarm, &plan, m, options, &mut |_| {})?;
    let after = cluster_counters(&bench);
    let missing = m.saturating_sub(result.merged.unicast_distinct);
    result.rows("", rows, missing, result.merged.unicast_duplicates, faults);
    rows.push((
        "redis_publishes_per_1000_messages".into(),
        json!(round(result.redis_publishes as f64 * 1000.0 / m as f64, 1)),
    ));
    if bench.target == Target::Wspush {
        let (published, trips) = (after.0 - before.0, after.1 - before.1);
        rows.push(("node_publishes".into(), json!(published)));
        rows.push((
            "redis_round_trips_per_1000_publishes".into(),
            json!(round(trips as f64 * 1000.0 / published.max(1) as f64, 2)),
        ));
    }
    if let Some(redis) = bench.redis.as_ref().filter(|r| r.cluster) {
        // The Redis CPU of the phase, per master and in all, per 100,000 deliveries.
        let per_master: Vec<f64> = redis
            .cpu_seconds_each()
            .iter()
            .zip(&redis_cpu_before)
            .map(|(after, before)| after - before)
            .collect();
        let deliveries = result.merged.unicast_distinct.max(1) as f64;
        rows.push(("redis_masters".into(), json!(redis.addrs.len())));
        rows.push((
            "redis_cpu_s_per_100k_deliveries".into(),
            json!(round(per_master.iter().sum::<f64>() * 100_000.0 / deliveries, 3)),
        ));
        rows.push((
            "redis_cpu_s_per_100k_deliveries_per_master".into(),
            json!(per_master.iter().map(|cpu| round(cpu * 100_000.0 / deliveries, 3)).collect::<Vec<_>>()),
        ));
    }
    server_counters(&bench, rows);
    Ok(())
}

/// Connects the clients of a multi-node run and waits until every node subscribed their
/// ids; reports the connect phase and the SUBSCRIBE commands the storm cost.
fn connect_fleet(
    bench: &Bench,
    shares: &[Share],
    unicast_space: u64,
    options: &Options,
    rows: &mut Rows,
    faults: &mut Faults,
) -> io::Result<Swarm> {
    let subscribes_before = bench.redis_calls("subscribe");
    let swarm = Swarm::connect(shares, unicast_space, ClientMode::of(options), !options.quiet)?;
    connect_rows(&swarm, rows, faults);
    bench.wait_subscribed()?;
    rows.push(("nodes".into(), json!(bench.nodes.len())));
    let storm = bench.redis_calls("subscribe") - subscribes_before;
    rows.push(("connect_storm_subscribe_commands".into(), json!(storm)));
    if bench.target == Target::Wspush && !bench.external && bench.redis.is_some() {
        // Writes of those commands: a round trip each, however many commands it carries.
        let trips: u64 = bench
            .nodes
            .iter()
            .filter_map(|n| n.stats().ok())
            .map(|stats| stats["cluster"]["subscribe_round_trips"].as_u64().unwrap_or(0))
            .sum();
        rows.push(("connect_storm_subscribe_round_trips".into(), json!(trips)));
    }
    Ok(swarm)
}

/// (published, publish_round_trips) summed over the wspush nodes.
fn cluster_counters(bench: &Bench) -> (u64, u64) {
    if bench.target != Target::Wspush || bench.external {
        return (0, 0);
    }
    bench.nodes.iter().filter_map(|n| n.stats().ok()).fold((0, 0), |(p, t), stats| {
        let c = &stats["cluster"];
        (p + c["published"].as_u64().unwrap_or(0), t + c["publish_round_trips"].as_u64().unwrap_or(0))
    })
}

/// `slow`: 1% of clients stop reading while broadcasts go out at a fixed rate; the healthy
/// clients' latency and the server's memory, in the first and the second half.
pub fn slow(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    let via = options.via.unwrap_or(Via::Http);
    let n = options.connections.unwrap_or(1_000);
    let rate = options.rate.unwrap_or(200.0);
    let duration = options.duration.unwrap_or(20.0);
    let slow_every = (100.0 / options.slow_percent.max(0.01)).round() as u64;
    let extra = ["--max-buffered-bytes", "262144"].map(String::from);
    let extra: &[String] = if options.target == Target::Wspush { &extra } else { &[] };
    let needs_redis = matches!(via, Via::RedisCompat | Via::RedisEnvelope);
    let mut bench = Bench::start(options, via, 1, needs_redis, extra)?;
    let mut swarm = Swarm::connect(
        &shares(n, &bench.ws_addrs(), options.per_process, slow_every),
        0,
        ClientMode::of(options),
        !options.quiet,
    )?;
    connect_rows(&swarm, rows, faults);
    let rss_start = bench.server_rss();
    let mut rss_peak = rss_start;
    let half = (rate * duration / 2.0) as u64;
    let plan = broadcast_plan(options, half, Some(rate));
    let mut sample = |bench: &Bench| rss_peak = rss_peak.max(bench.server_rss());
    let healthy = n as u64 - (n as u64).div_ceil(slow_every);
    let first = bench.phase(&mut swarm, &plan, half * healthy, options, &mut sample)?;
    let rss_mid = bench.server_rss();
    let second = bench.phase(&mut swarm, &plan, half * healthy, options, &mut sample)?;
    let rss_end = bench.server_rss();
    rows.push(("slow_clients".into(), json!(n as u64 - healthy)));
    rows.push(("rate".into(), json!(rate)));
    first.rows(
        "first_half_",
        rows,
        first.merged.broadcast_missing,
        first.merged.broadcast_duplicates,
        faults,
    );
    second.rows(
        "second_half_",
        rows,
        second.merged.broadcast_missing,
        second.merged.broadcast_duplicates,
        faults,
    );
    let mib = |b: u64| round(b as f64 / 1048576.0, 1);
    rows.push(("server_rss_start_mib".into(), json!(mib(rss_start))));
    rows.push(("server_rss_mid_mib".into(), json!(mib(rss_mid))));
    rows.push(("server_rss_end_mib".into(), json!(mib(rss_end))));
    rows.push(("server_rss_peak_mib".into(), json!(mib(rss_peak.max(rss_end)))));
    if options.target == Target::Wspush && !bench.external {
        let stats = bench.nodes[0].stats()?;
        rows.push(("slow_consumer_disconnects".into(), stats["slow_consumer_disconnects"].clone()));
    }
    Ok(())
}

/// `fleet`: 5 nodes x 19,000 connections and one Redis; a broadcast storm, then a unicast
/// storm, both published to Redis.
pub fn fleet(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    if options.target != Target::Wspush {
        return Err(invalid("fleet runs wspush only"));
    }
    let node_count = options.nodes.unwrap_or(5);
    let n = options.connections.unwrap_or(19_000 * node_count);
    let per_node = n.div_ceil(node_count);
    let k = options.broadcasts.unwrap_or(20);
    let m = options.messages.unwrap_or(200_000);
    // The fleet is held through at least two rounds of pings before any message, so "holds
    // with pings" is measured: every socket must answer them and none may be closed.
    let ping_interval = 5.0;
    let hold = options.duration.unwrap_or(2.5 * ping_interval);
    let extra = ["--ping-interval", "5", "--idle-timeout", "30"].map(String::from);
    let mut bench = Bench::start(options, Via::RedisEnvelope, node_count, true, &extra)?;
    let rss_before = bench.server_rss();
    // Each node's clients in their own processes, from their own 127.x.y.1.
    let mut all = Vec::new();
    for (index, node) in bench.nodes.iter().enumerate() {
        let first = index * per_node;
        let count = per_node.min(n - first.min(n));
        let mut start = 0;
        while start < count {
            let c = options.per_process.min(count - start);
            all.push(Share {
                targets: vec![node.ws],
                first_id: (first + start) as u64,
                count: c,
                source: Some(IpAddr::V4(Ipv4Addr::new(127, 10 + all.len() as u8, 0, 1))),
                slow_every: 0,
            });
            start += c;
        }
    }
    let mut swarm = connect_fleet(&bench, &all, m, options, rows, faults)?;
    let per_conn = bench.server_rss().saturating_sub(rss_before) as f64 / swarm.connected.max(1) as f64;
    rows.push(("server_rss_bytes_per_connection".into(), json!(per_conn.round())));
    faults.closes(&swarm.report(0)?);
    hold_connections(hold, options);
    let held = swarm.report(0)?;
    faults.closes(&held);
    rows.push(("held_seconds".into(), json!(hold)));
    rows.push(("closed_while_held".into(), json!(held.closes.values().sum::<u64>())));
    rows.push(("pings_answered".into(), json!(held.pings)));
    let rounds = (hold / ping_interval).floor() as u64;
    rows.push(("ping_rounds_expected".into(), json!(rounds)));
    faults.unanswered_pings = (rounds * swarm.connected).saturating_sub(held.pings);
    let expected = k * swarm.connected;
    let broadcasts =
        bench.phase(&mut swarm, &broadcast_plan(options, k, None), expected, options, &mut |_| {})?;
    broadcasts.rows(
        "broadcast_",
        rows,
        broadcasts.merged.broadcast_missing,
        broadcasts.merged.broadcast_duplicates,
        faults,
    );
    let plan = unicast_plan(options, m, n as u64, options.rate);
    let unicasts = bench.phase(&mut swarm, &plan, m, options, &mut |_| {})?;
    let missing = m.saturating_sub(unicasts.merged.unicast_distinct);
    unicasts.rows("unicast_", rows, missing, unicasts.merged.unicast_duplicates, faults);
    let connections: u64 = bench
        .nodes
        .iter()
        .filter_map(|n| n.stats().ok())
        .map(|s| s["connections"].as_u64().unwrap_or(0))
        .sum();
    rows.push(("server_connections_at_end".into(), json!(connections)));
    Ok(())
}

/// The server's history counters (`GET /stats`), reported when history is on.
const HISTORY_COUNTERS: [&str; 7] = [
    "history_appended",
    "history_replayed",
    "history_resumes",
    "history_lost_signals",
    "history_evicted",
    "history_duplicates",
    "history_gap_fills",
];

/// The backplane's history counters (`GET /stats` `cluster`), reported with Redis.
const CLUSTER_HISTORY_COUNTERS: [&str; 5] = [
    "history_appends",
    "history_append_retried",
    "history_reads",
    "history_read_round_trips",
    "history_read_failed",
];

/// The `wspush.v1` checks of a phase, as rows (only when v1 frames were seen or a v1 check
/// failed).
fn v1_rows(m: &Merged, prefix: &str, rows: &mut Rows) {
    let counts: Vec<_> =
        std::iter::once(("pos_signals", m.pos_signals)).chain(m.positions.fields()).collect();
    if counts.iter().all(|&(_, n)| n == 0) {
        return;
    }
    for (name, n) in counts {
        rows.push((format!("{prefix}{name}"), json!(n)));
    }
}

impl Bench {
    /// Publishes `plan` through the sink and waits for the transport to take it all; the
    /// refusals, and why publishing stopped if it did.
    fn publish_only(&self, plan: &Plan, options: &Options, label: &str) -> io::Result<(u64, Option<String>)> {
        let mut progress = Progress::new(label, plan.count, !options.quiet);
        let mut sent = 0;
        let mut sink = self.sink()?;
        let outcome = publish::run(plan, sink.as_mut(), &mut |n| {
            sent = n;
            progress.set(n);
        });
        progress.finish(sent);
        let failure = outcome.err().map(|e| {
            eprintln!("wspush-bench: publishing failed after {sent} of {} messages: {e}", plan.count);
            e.to_string()
        });
        Ok((sink.errors(), failure))
    }

    /// Waits until the nodes hold at most `most` connections (not for an external server).
    fn wait_connections(&self, most: u64) -> io::Result<()> {
        if self.external {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held: u64 = self
                .nodes
                .iter()
                .map(|n| n.stats().map(|s| s["connections"].as_u64().unwrap_or(0)))
                .sum::<io::Result<u64>>()?;
            if held <= most {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the server still holds {held} connections after 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The history counters this run reports: none with history off, the backplane's too
    /// with Redis.
    fn history_names(&self) -> Vec<&'static str> {
        match (self.history, self.redis.is_some()) {
            (false, _) => Vec::new(),
            (true, false) => HISTORY_COUNTERS.to_vec(),
            (true, true) => HISTORY_COUNTERS.iter().chain(&CLUSTER_HISTORY_COUNTERS).copied().collect(),
        }
    }

    /// The history counters summed over the nodes (zeros for an external server).
    fn history_counters(&self) -> Vec<(&'static str, u64)> {
        let stats: Vec<Value> = if self.external {
            Vec::new()
        } else {
            self.nodes.iter().filter_map(|n| n.stats().ok()).collect()
        };
        let value =
            |s: &Value, name: &str| s[name].as_u64().or_else(|| s["cluster"][name].as_u64()).unwrap_or(0);
        self.history_names()
            .into_iter()
            .map(|name| (name, stats.iter().map(|s| value(s, name)).sum()))
            .collect()
    }
}

/// Unicasts `first_seq..first_seq + count`, number `s` to id `s % ids`.
fn round_robin_plan(options: &Options, first_seq: u64, count: u64, ids: u64) -> Plan {
    Plan { first_seq, round_robin: true, ..unicast_plan(options, count, ids, None) }
}

/// The plain clients' positions: `GET /history/{id}` for every id (which starts an empty
/// history for an id that has none), written as a JSON object id -> "E:O" to a file the
/// client processes read.
fn write_positions(bench: &Bench, ids: u64) -> io::Result<std::path::PathBuf> {
    let api = bench.nodes[0].api;
    let mut stream = std::io::BufReader::new(std::net::TcpStream::connect(api)?);
    stream.get_ref().set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut positions = serde_json::Map::new();
    let mut line = String::new();
    for id in 0..ids {
        use std::io::{BufRead, Write};
        write!(stream.get_mut(), "GET /history/{id}?limit=1 HTTP/1.1\r\nHost: {api}\r\n\r\n")?;
        line.clear();
        stream.read_line(&mut line)?;
        let body = publish::read_http_body(&mut stream)?;
        if line.split_whitespace().nth(1) != Some("200") {
            return Err(io::Error::other(format!(
                "GET /history/{id}: {} {}",
                line.trim(),
                String::from_utf8_lossy(&body)
            )));
        }
        let value: Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
        let (Some(epoch), Some(offset)) = (value["epoch"].as_str(), value["offset"].as_u64()) else {
            return Err(io::Error::other(format!("GET /history/{id}: no position in {value}")));
        };
        positions.insert(id.to_string(), json!(format!("{epoch}:{offset}")));
    }
    let path = std::env::temp_dir().join(format!("wspush-bench-since-{}.json", std::process::id()));
    std::fs::write(&path, Value::Object(positions).to_string())?;
    Ok(path)
}

/// `resume`: a resume storm. N clients on K ids connect (v1: each gets its `!pos`), all
/// disconnect, M messages go out (round robin over the ids) while they are away, then all
/// reconnect at once with `?since=` while L live messages go out: every socket must get
/// exactly the messages of its id it missed and the live ones, each once (v1: in offset
/// order, no gap, `!pos` after the missed ones).
pub fn resume(options: &Options, rows: &mut Rows, faults: &mut Faults) -> io::Result<()> {
    if options.target != Target::Wspush {
        return Err(invalid("resume runs wspush only (the baselines have no history)"));
    }
    if options.client != crate::swarm::ClientKind::Mio {
        return Err(invalid("resume runs with --client mio (the tungstenite client does not reconnect)"));
    }
    let via = options.via.unwrap_or(Via::Http);
    if via != Via::Http {
        return Err(invalid("resume publishes --via http (the node a POST reaches keeps the history)"));
    }
    let n = options.connections.unwrap_or(10_000);
    let k = options.ids.unwrap_or(n as u64);
    if k == 0 || k > n as u64 {
        return Err(invalid("--ids must be 1 to --connections"));
    }
    let m = options.messages.unwrap_or(500);
    let live = options.live.unwrap_or(k.max(100));
    let v1 = !options.plain;
    let since = !options.no_since;
    let history_size = options.history_size.unwrap_or(((m + live).div_ceil(k) as usize + 10).max(100));
    if history_size == 0 {
        return Err(invalid("resume needs history on: --history-size above 0"));
    }
    let options = &Options { history_size: Some(history_size), v1, ..options.clone() };
    let bench = Bench::start(options, via, 1, false, &[])?;
    let stall = Duration::from_secs_f64(options.stall);
    rows.push(("clients".into(), json!(n)));
    rows.push(("ids".into(), json!(k)));
    rows.push(("missed_messages".into(), json!(m)));
    rows.push(("live_messages".into(), json!(live)));
    rows.push(("history_size".into(), json!(history_size)));
    rows.push(("since".into(), json!(since)));
    let rss_start = bench.server_rss();
    let mode = ClientMode { kind: options.client, v1, ids: k };
    let mut swarm =
        Swarm::connect(&shares(n, &bench.ws_addrs(), options.per_process, 0), 0, mode, !options.quiet)?;
    connect_rows(&swarm, rows, faults);
    // Through Redis (--with-redis): every id's channel subscribed before anything is sent.
    bench.wait_subscribed()?;
    if v1 {
        let positioned = swarm.wait_live(swarm.connected, stall)?;
        rows.push(("positioned".into(), json!(positioned)));
    }
    // The connect phase: nothing was sent, anything counted is a fault.
    faults.closes(&swarm.report_range(0, 0)?);
    let since_file = if !v1 && since { Some(write_positions(&bench, k)?) } else { None };
    let rss_connected = bench.server_rss();
    swarm.disconnect()?;
    bench.wait_connections(0)?;
    let counters0 = bench.history_counters();
    let (mut publish_errors, mut failure) =
        bench.publish_only(&round_robin_plan(options, 0, m, k), options, "publishing (away)")?;
    // The reconnect storm, with live messages meanwhile (a plain reconnect without `since`
    // cannot get what is sent before it is back: then they go out once all are back).
    let cpu0 = bench.server_cpu();
    let t0 = now_ns();
    swarm.start_reconnect(if since { m } else { 0 }, since_file.as_deref())?;
    // Paced with --rate, so they span the reconnect and some arrive after a socket's `!pos`.
    let live_plan = Plan { rate: options.rate, ..round_robin_plan(options, m, live, k) };
    let mut publish_live = |bench: &Bench| -> io::Result<()> {
        let (errors, why) = bench.publish_only(&live_plan, options, "publishing (live)")?;
        publish_errors += errors;
        failure = failure.take().or(why);
        Ok(())
    };
    if since {
        publish_live(&bench)?;
    }
    swarm.wait_reconnected()?;
    let reconnect_seconds = swarm.connect_seconds;
    faults.connect_failures += swarm.failed;
    rows.push(("reconnected".into(), json!(swarm.connected)));
    rows.push(("reconnect_failures".into(), json!(swarm.failed)));
    if !swarm.failures.is_empty() {
        rows.push(("reconnect_failure_reasons".into(), json!(swarm.failures)));
    }
    rows.push(("reconnect_seconds".into(), json!(round(reconnect_seconds, 3))));
    if !since {
        publish_live(&bench)?;
    }
    let lo = if since { 0 } else { m };
    let per_socket = |c: u64| {
        let (a, b) = check::id_range(c % k, k, lo, m + live);
        b - a
    };
    let expected: u64 = (0..n as u64).map(per_socket).sum();
    let replay_expected: u64 = if since {
        (0..n as u64).map(|c| check::id_range(c % k, k, 0, m)).map(|(a, b)| b - a).sum()
    } else {
        0
    };
    let mut rss_peak = bench.server_rss();
    swarm.wait_for(expected, stall, "replaying and live")?;
    rss_peak = rss_peak.max(bench.server_rss());
    let cpu = bench.server_cpu() - cpu0;
    let merged = swarm.report_range(lo, m + live)?;
    let counters = bench.history_counters();
    faults.missing += merged.unicast_missing;
    faults.duplicates += merged.unicast_duplicates;
    faults.publish_errors += publish_errors;
    faults.closes(&merged);
    if let Some(why) = failure {
        faults.publish_failures += 1;
        rows.push(("publish_failure".into(), json!(why)));
    }
    let seconds = |ns: u64| if ns > t0 { round((ns - t0) as f64 / 1e9, 3) } else { 0.0 };
    let replay_seconds = seconds(merged.replay_done_ns);
    rows.push(("replay_seconds".into(), json!(replay_seconds)));
    rows.push(("resumed_clients".into(), json!(merged.replays_done)));
    rows.push(("replay_pending_clients".into(), json!(merged.replay_pending)));
    rows.push(("replayed_deliveries_expected".into(), json!(replay_expected)));
    rows.push((
        "replayed_per_s".into(),
        json!(if replay_seconds > 0.0 { (replay_expected as f64 / replay_seconds).round() } else { 0.0 }),
    ));
    rows.push(("deliveries".into(), json!(merged.deliveries)));
    rows.push(("expected".into(), json!(merged.unicast_expected)));
    rows.push(("missing".into(), json!(merged.unicast_missing)));
    rows.push(("duplicates".into(), json!(merged.unicast_duplicates)));
    rows.push(("misrouted".into(), json!(merged.misrouted)));
    rows.push(("publish_errors".into(), json!(publish_errors)));
    rows.push(("seconds".into(), json!(seconds(merged.last_ns))));
    rows.push(("server_cpu_s".into(), json!(round(cpu, 2))));
    let per_100k = if merged.deliveries > 0 { cpu / merged.deliveries as f64 * 1e5 } else { 0.0 };
    rows.push(("server_cpu_s_per_100k".into(), json!(round(per_100k, 3))));
    let mib = |b: u64| round(b as f64 / 1048576.0, 1);
    rows.push(("server_rss_start_mib".into(), json!(mib(rss_start))));
    rows.push(("server_rss_connected_mib".into(), json!(mib(rss_connected))));
    rows.push(("server_rss_peak_mib".into(), json!(mib(rss_peak.max(bench.server_rss())))));
    if !bench.external {
        for ((name, after), (_, before)) in counters.iter().zip(&counters0) {
            rows.push((format!("server_{name}"), json!(after.saturating_sub(*before))));
        }
    }
    v1_rows(&merged, "", rows);
    if !merged.closes.is_empty() {
        rows.push(("closes".into(), json!(merged.closes)));
    }
    if let Some(path) = since_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
