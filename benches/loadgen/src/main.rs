//! `wspush-bench`: the load generator. It starts what it measures (Redis, wspush nodes or
//! the Node.js baseline), drives it from client processes of its own, and reports each
//! scenario as a table (stderr) and one JSON line (stdout). See benches/README.md.
//!
//! A run is exact when nothing was missing, duplicated, misrouted or unexpected, no connection
//! failed or closed, and no publish was refused; otherwise it still prints its figures, with
//! `"exact": false` and the counts, and exits with status 3.
//!
//! The server's CPU seconds (from /proc) are reported next to every throughput: on a 2-core
//! machine the clients and Redis compete with the server for the same cores, so server CPU
//! seconds per 100,000 deliveries is the fair efficiency figure.

mod check;
mod client;
mod clock;
mod histogram;
mod host;
mod payload;
mod procstat;
mod progress;
mod publish;
mod scenarios;
mod servers;
mod swarm;
mod tungstenite_client;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use scenarios::{Faults, Rows, Via};
use servers::Target;
use swarm::ClientKind;

#[derive(Parser)]
#[command(name = "wspush-bench", version, about = "Load generator for wspush and the Node.js baseline")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N connections (default 19,000), hold them with pings; connects/s and server RSS
    /// per connection.
    Idle(Options),
    /// Five nodes x 19,000 connections and one Redis, held through two rounds of pings (5 s
    /// apart; every socket must answer them), then a broadcast storm and a unicast storm;
    /// deliveries/s, missing, duplicates.
    Fleet(Options),
    /// M messages (default 200,000) to random ids among N connected (default 1,000), via
    /// HTTP, in-process or Redis; deliveries/s, missing, duplicates, latency. Via HTTP, a
    /// baseline PUBLISHes each POST to Redis and delivers what Redis sends back; wspush
    /// delivers each POST to its own sockets, and with --with-redis also PUBLISHes it (for
    /// other nodes), so both pay a PUBLISH per message.
    Unicast(Options),
    /// K broadcasts (default 500) to N sockets (default 10,000) in one burst; deliveries/s and
    /// the time to the last delivery. With --rate R and/or --duration D: sustained, R
    /// broadcasts/s (default 100) for D s (default 10); deliveries/s held, latency, and the
    /// publish rate achieved.
    Broadcast(Options),
    /// Two nodes and a Redis, clients on both, sends through both APIs; deliveries/s,
    /// latency, Redis commands per 1,000 messages.
    Cluster(Options),
    /// A fixed send rate (default 10,000 messages/s for 10 s); latency percentiles.
    Latency(Options),
    /// 1% of clients stop reading during fixed-rate broadcasts; healthy clients' latency and
    /// server memory.
    Slow(Options),
    /// A resume storm (history on): N clients (default 10,000) on K ids (--ids, default N)
    /// connect, get their position, and all disconnect; M messages (default 500, round robin
    /// over the ids) are published while they are away; then all reconnect at once with
    /// `?since=` and must get exactly what they missed, in order, then `!pos`, then the live
    /// messages (--live) published meanwhile. Replay seconds, resumed clients, replayed
    /// deliveries, server CPU and RSS. With --v1 (the default for this scenario unless
    /// --plain) positions come from the frames; --plain clients take theirs from
    /// `GET /history/{id}` (or, with --no-since, reconnect without one).
    Resume(Options),
    /// (internal) A client process.
    #[command(hide = true)]
    Client(ClientArgs),
    /// (internal) An engine that publishes in-process.
    #[command(hide = true)]
    Host(HostArgs),
}

/// What every scenario accepts; unset sizes take the scenario's defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// The server to measure.
    #[arg(long, value_enum, default_value = "wspush")]
    pub target: Target,
    /// The WebSocket client the client processes use: `mio` (this repository's frame code)
    /// or `tungstenite` (tokio-tungstenite, an independent implementation); both apply the
    /// same checks and accounting.
    #[arg(long, value_enum, default_value = "mio")]
    pub client: ClientKind,
    /// How messages reach the server [default: per scenario].
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    /// WebSocket connections in all.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Unicast messages.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Broadcasts.
    #[arg(long)]
    pub broadcasts: Option<u64>,
    /// Messages per second (default: as fast as the transport takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds (idle and fleet: hold time; latency, slow and sustained broadcast: sending time).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Payload bytes per message (at least 33: kind, sequence number, timestamp, target id).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Server nodes.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// wspush worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Most connections per client process (a process may hold 20,000 open files here).
    #[arg(long, default_value_t = 19_000)]
    pub per_process: usize,
    /// Offer the `wspush.v1` subprotocol (history on: `--history-size`): every frame carries
    /// its position, and each socket's offsets must run on by one (a gap, a repeat, a silent
    /// new epoch, `!lost` are faults); the bodies are checked as without.
    #[arg(long)]
    pub v1: bool,
    /// wspush: keep this many messages of history per id (`--history-size` of the server;
    /// 0: off) [default: off; resume: enough for what it publishes].
    #[arg(long)]
    pub history_size: Option<usize>,
    /// resume: the ids the clients share (client `c` is id `c % ids`) [default: one per client].
    #[arg(long)]
    pub ids: Option<u64>,
    /// resume: messages published after the reconnect starts, while the replays run (round
    /// robin over the ids, after the missed ones; paced by --rate if given) [default:
    /// max(ids, 100)].
    #[arg(long)]
    pub live: Option<u64>,
    /// resume: plain clients (no `wspush.v1`), resuming from the position `GET /history/{id}`
    /// gave before they went away.
    #[arg(long, conflicts_with = "v1")]
    pub plain: bool,
    /// resume with --plain: reconnect without `?since` (what a client without history does:
    /// the missed messages are not expected, only the live ones).
    #[arg(long, requires = "plain")]
    pub no_since: bool,
    /// Percentage of clients that stop reading (slow).
    #[arg(long, default_value_t = 1.0)]
    pub slow_percent: f64,
    /// The wspush binary to run [default: `wspush` next to this one]; e.g. an older build,
    /// to compare two versions in one session.
    #[arg(long)]
    pub wspush_bin: Option<std::path::PathBuf>,
    /// wspush: run every node with a Redis backplane (cluster mode) even when it is alone, so
    /// that with `--via http` every send is also PUBLISHed to Redis as the baselines publish
    /// every POST (wspush still delivers to its own sockets directly; Redis carries the
    /// message to other nodes). The baselines always use Redis; this changes nothing for them.
    #[arg(long)]
    pub with_redis: bool,
    /// Use this Redis instead of starting one.
    #[arg(long)]
    pub redis: Option<SocketAddr>,
    /// wspush: start a Redis Cluster of this many masters (no replicas) instead of one Redis,
    /// and give the nodes `redis+cluster://` (sharded pub/sub); 0: one Redis.
    #[arg(long, default_value_t = 0)]
    pub redis_masters: usize,
    /// Measure a server someone else runs, its WebSocket address (one node; nothing started,
    /// no server CPU or memory figures).
    #[arg(long)]
    pub server_ws: Option<SocketAddr>,
    /// With `--server-ws`: its HTTP API (`POST /socket/{id}`, `/broadcast`) [default: the
    /// WebSocket address].
    #[arg(long, requires = "server_ws")]
    pub server_api: Option<SocketAddr>,
    /// Seed of the id choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up waiting for deliveries after this many seconds without progress.
    #[arg(long, default_value_t = 10.0)]
    pub stall: f64,
    /// A label copied into the JSON line (e.g. the run number).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args)]
struct ClientArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<SocketAddr>,
    #[arg(long, default_value_t = 0)]
    first_id: u64,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    source: Option<IpAddr>,
    #[arg(long, default_value_t = 0)]
    slow_every: u64,
    #[arg(long, default_value_t = 0)]
    unicast_space: usize,
    #[arg(long, default_value = "/websocket/")]
    path_prefix: String,
    #[arg(long, value_enum, default_value = "mio")]
    kind: ClientKind,
    #[arg(long)]
    v1: bool,
    #[arg(long, default_value_t = 0)]
    ids: u64,
}

#[derive(clap::Args)]
struct HostArgs {
    #[arg(long)]
    ws_listen: SocketAddr,
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long)]
    max_buffered_bytes: Option<usize>,
    #[arg(long)]
    redis: Option<String>,
    #[arg(long, default_value = "host")]
    node_id: String,
    #[arg(long, default_value_t = 0)]
    history_size: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, options) = match cli.scenario {
        Scenario::Client(args) => {
            let plan = client::ClientPlan {
                targets: args.targets,
                first_id: args.first_id,
                count: args.count,
                source: args.source,
                slow_every: args.slow_every,
                unicast_space: args.unicast_space,
                path_prefix: args.path_prefix,
                v1: args.v1,
                ids: args.ids,
            };
            return exit(match args.kind {
                ClientKind::Mio => client::run(plan),
                ClientKind::Tungstenite => tungstenite_client::run(plan),
            });
        }
        Scenario::Host(args) => {
            let redis = args.redis.map(|url| (url, args.node_id));
            return exit(host::run(
                args.ws_listen,
                args.workers,
                args.max_buffered_bytes,
                args.history_size,
                redis,
            ));
        }
        Scenario::Idle(o) => ("idle", o),
        Scenario::Fleet(o) => ("fleet", o),
        Scenario::Unicast(o) => ("unicast", o),
        Scenario::Broadcast(o) => ("broadcast", o),
        Scenario::Cluster(o) => ("cluster", o),
        Scenario::Latency(o) => ("latency", o),
        Scenario::Slow(o) => ("slow", o),
        Scenario::Resume(o) => ("resume", o),
    };
    if options.size < payload::HEADER_LEN {
        eprintln!("wspush-bench: --size must be at least {} bytes", payload::HEADER_LEN);
        return ExitCode::from(2);
    }
    if options.connections.is_some_and(|n| n >= payload::EVERYONE as usize) {
        eprintln!(
            "wspush-bench: --connections must be below {} (ids are 32-bit in the payload)",
            payload::EVERYONE
        );
        return ExitCode::from(2);
    }
    let mut rows: Rows = Vec::new();
    let mut faults = Faults::default();
    let outcome = match name {
        "idle" => scenarios::idle(&options, &mut rows, &mut faults),
        "fleet" => scenarios::fleet(&options, &mut rows, &mut faults),
        "unicast" => scenarios::unicast(&options, &mut rows, false, &mut faults),
        "latency" => scenarios::unicast(&options, &mut rows, true, &mut faults),
        "broadcast" => scenarios::broadcast(&options, &mut rows, &mut faults),
        "cluster" => scenarios::cluster(&options, &mut rows, &mut faults),
        "resume" => scenarios::resume(&options, &mut rows, &mut faults),
        _ => scenarios::slow(&options, &mut rows, &mut faults),
    };
    if let Err(e) = outcome {
        eprintln!("wspush-bench {name}: {e}");
        return ExitCode::from(if e.kind() == std::io::ErrorKind::InvalidInput { 2 } else { 1 });
    }
    print_results(name, &options, &rows, &faults);
    if faults.is_exact() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "wspush-bench {name}: INEXACT run: {} (figures above are not to be trusted)",
            faults.summary()
        );
        ExitCode::from(EXIT_INEXACT)
    }
}

/// The exit status of a run that completed but lost, duplicated or misrouted something (or
/// saw a failed connection, a refused publish or an unexpected close).
const EXIT_INEXACT: u8 = 3;

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The table on stderr, the JSON line on stdout (with `exact` and every fault count).
fn print_results(name: &str, options: &Options, rows: &Rows, faults: &Faults) {
    let target = match options.target {
        _ if options.server_ws.is_some() => "external",
        Target::Wspush => "wspush",
        Target::Baseline => "baseline",
        Target::Uws => "uws",
    };
    let via = options.via.map(|v| format!("{v:?}")).unwrap_or_else(|| "default".into());
    eprintln!("\n{name} · {target} · via {via} · client {}", options.client.name());
    for (key, value) in rows {
        eprintln!("  {key:<40} {value}");
    }
    eprintln!("  {:<40} {}", "exact", faults.is_exact());
    let mut line = Map::new();
    line.insert("scenario".into(), name.into());
    line.insert("target".into(), target.into());
    line.insert("client".into(), options.client.name().into());
    line.insert("label".into(), options.label.clone().map_or(Value::Null, Value::from));
    line.insert("size".into(), options.size.into());
    if options.redis_masters > 0 {
        line.insert("redis_masters".into(), options.redis_masters.into());
    }
    if options.with_redis {
        line.insert("with_redis".into(), true.into());
    }
    if options.v1 || (name == "resume" && !options.plain) {
        line.insert("v1".into(), true.into());
    }
    if let Some(size) = options.history_size {
        line.insert("history_size".into(), size.into());
    }
    for (key, value) in rows {
        line.insert(key.clone(), value.clone());
    }
    line.insert("exact".into(), faults.is_exact().into());
    line.insert("faults".into(), faults.to_json());
    println!("{}", Value::Object(line));
}
