//! The client processes of a run, seen from the parent: spawns `wspush-bench client`
//! processes (each holding at most ~19,000 sockets: a process may have 20,000 open files
//! here), reads their JSON lines, waits for the upgrades and the deliveries, and merges their
//! reports. Each id is held by one process, and a process counts a unicast as delivered only
//! on a socket of the id it names, so adding the processes' distinct counts is exact: a copy
//! in another process is misrouted there, never a delivery that hides a loss.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::check::PositionFaults;
use crate::histogram::Histogram;
use crate::progress::Progress;

/// How long a phase goes on listening once every message arrived (or the wait stalled):
/// copies that come after the last first delivery are counted, not lost in the next phase.
/// Not part of the timing: a phase's time ends at its last delivery.
const SETTLE: Duration = Duration::from_millis(250);

/// Which WebSocket client implementation the client processes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientKind {
    /// `client.rs`: mio and this repository's frame code, built for many sockets per process.
    #[default]
    Mio,
    /// `tungstenite_client.rs`: tokio + tokio-tungstenite, an independent implementation.
    Tungstenite,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Mio => "mio",
            ClientKind::Tungstenite => "tungstenite",
        }
    }
}

/// What every client process of a run does alike.
#[derive(Debug, Clone, Copy)]
pub struct ClientMode {
    pub kind: ClientKind,
    /// Offer `wspush.v1` and check its positions.
    pub v1: bool,
    /// Connection `c` (counted over the whole run) is id `c % ids`, unicasts counted per
    /// socket; 0: id `c`, counted per process.
    pub ids: u64,
}

impl ClientMode {
    pub fn of(options: &crate::Options) -> ClientMode {
        ClientMode { kind: options.client, v1: options.v1, ids: 0 }
    }
}

/// One client process's share.
#[derive(Debug, Clone)]
pub struct Share {
    pub targets: Vec<SocketAddr>,
    pub first_id: u64,
    pub count: usize,
    pub source: Option<IpAddr>,
    pub slow_every: u64,
}

struct Client {
    child: Child,
    stdin: ChildStdin,
}

pub struct Swarm {
    clients: Vec<Client>,
    lines: mpsc::Receiver<(usize, Value)>,
    received: Vec<u64>,
    pub connected: u64,
    pub failed: u64,
    pub connect_seconds: f64,
    pub failures: BTreeMap<String, u64>,
    show_progress: bool,
    /// Sockets `!pos`-ed per process (v1), from its `received` lines.
    live: Vec<u64>,
    /// Connections in all.
    total: u64,
}

/// What every client process saw in one phase, added up.
#[derive(Default)]
pub struct Merged {
    pub healthy: u64,
    pub deliveries: u64,
    pub unicast_distinct: u64,
    pub unicast_duplicates: u64,
    /// Unicasts read on a socket of another id than the one they name.
    pub misrouted: u64,
    /// Sequence numbers that were not sent in the phase.
    pub unexpected: u64,
    pub broadcast_missing: u64,
    pub broadcast_duplicates: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub latency: Histogram,
    pub pings: u64,
    pub bad_frames: u64,
    pub closes: BTreeMap<String, u64>,
    /// Per-socket unicasts (`report_range`): expected, and not received.
    pub unicast_expected: u64,
    pub unicast_missing: u64,
    /// The `wspush.v1` checks that failed.
    pub positions: PositionFaults,
    /// `!pos` received.
    pub pos_signals: u64,
    /// Sockets that had their `!pos` (or `!lost`) since they last connected.
    pub live: u64,
    /// Resuming sockets that got every missed unicast, when the last did, and those that
    /// did not.
    pub replays_done: u64,
    pub replay_done_ns: u64,
    pub replay_pending: u64,
}

impl Swarm {
    /// Starts one process per share; returns once every connection is upgraded or failed.
    pub fn connect(
        shares: &[Share],
        unicast_space: u64,
        mode: ClientMode,
        show_progress: bool,
    ) -> io::Result<Swarm> {
        let kind = mode.kind;
        let exe = std::env::current_exe()?;
        let (tx, lines) = mpsc::channel();
        let mut clients = Vec::new();
        for (index, share) in shares.iter().enumerate() {
            let targets: Vec<String> = share.targets.iter().map(ToString::to_string).collect();
            let mut command = Command::new(&exe);
            command
                .arg("client")
                .args(["--kind", kind.name()])
                .args(["--targets", &targets.join(",")])
                .args(["--first-id", &share.first_id.to_string(), "--count", &share.count.to_string()])
                .args(["--slow-every", &share.slow_every.to_string()])
                .args(["--unicast-space", &unicast_space.to_string()])
                .args(["--ids", &mode.ids.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            if let Some(source) = share.source {
                command.args(["--source", &source.to_string()]);
            }
            if mode.v1 {
                command.arg("--v1");
            }
            let mut child = command.spawn()?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in stdout.lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Value>(&line) {
                        Ok(value) => {
                            if tx.send((index, value)).is_err() {
                                break;
                            }
                        }
                        Err(_) => eprintln!("client {index}: {line}"),
                    }
                }
                let _ = tx.send((index, serde_json::json!({"type": "exited"})));
            });
            clients.push(Client { child, stdin });
        }
        let total: u64 = shares.iter().map(|s| s.count as u64).sum();
        let mut swarm = Swarm {
            received: vec![0; clients.len()],
            live: vec![0; clients.len()],
            clients,
            lines,
            connected: 0,
            failed: 0,
            connect_seconds: 0.0,
            failures: BTreeMap::new(),
            show_progress,
            total,
        };
        swarm.wait_connected("connecting")?;
        Ok(swarm)
    }

    /// Waits for every process's `connected` line (after starting, or `reconnect`); the
    /// counts are this round's.
    fn wait_connected(&mut self, label: &str) -> io::Result<()> {
        (self.connected, self.failed, self.connect_seconds) = (0, 0, 0.0);
        self.failures.clear();
        let mut progress = Progress::new(label, self.total, self.show_progress);
        let mut connected = vec![0u64; self.clients.len()];
        let mut done = vec![false; self.clients.len()];
        while !done.iter().all(|&d| d) {
            let (index, line) = self.next_line(Duration::from_secs(120))?;
            match line["type"].as_str() {
                Some("progress") => connected[index] = line["connected"].as_u64().unwrap_or(0),
                Some("connected") => {
                    done[index] = true;
                    connected[index] = line["connected"].as_u64().unwrap_or(0);
                    self.connected += connected[index];
                    self.failed += line["failed"].as_u64().unwrap_or(0);
                    self.connect_seconds = self.connect_seconds.max(line["seconds"].as_f64().unwrap_or(0.0));
                    for (why, n) in line["failures"].as_object().into_iter().flatten() {
                        *self.failures.entry(why.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
                    }
                }
                Some("received") => self.received_line(index, &line),
                _ => {}
            }
            progress.set(connected.iter().sum());
        }
        progress.finish(self.connected);
        Ok(())
    }

    fn received_line(&mut self, index: usize, line: &Value) {
        self.received[index] = line["count"].as_u64().unwrap_or(0);
        self.live[index] = line["live"].as_u64().unwrap_or(0);
    }

    /// Sends `command` to every client process.
    fn tell(&mut self, command: &str) -> io::Result<()> {
        for client in &mut self.clients {
            writeln!(client.stdin, "{command}")?;
            client.stdin.flush()?;
        }
        Ok(())
    }

    /// `wspush.v1`: waits until `expected` sockets had their `!pos` (or nothing changed for
    /// `stall`); returns how many did.
    pub fn wait_live(&mut self, expected: u64, stall: Duration) -> io::Result<u64> {
        let mut progress = Progress::new("positioned (!pos)", expected, self.show_progress);
        let mut last_change = Instant::now();
        loop {
            let live: u64 = self.live.iter().sum();
            progress.set(live);
            if live >= expected || last_change.elapsed() > stall {
                progress.finish(live);
                return Ok(live);
            }
            if self.poll_received()? {
                last_change = Instant::now();
            }
        }
    }

    /// Takes the next line from the client processes, if one comes within 100 ms, recording
    /// a `received` line; whether it was one. A process that exited is an error.
    fn poll_received(&mut self) -> io::Result<bool> {
        match self.lines.recv_timeout(Duration::from_millis(100)) {
            Ok((index, line)) if line["type"] == "received" => {
                self.received_line(index, &line);
                Ok(true)
            }
            Ok((index, line)) if line["type"] == "exited" => {
                Err(io::Error::other(format!("client process {index} exited")))
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => Ok(false),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("clients gone")),
        }
    }

    /// Every client process closes all its sockets (`resume`).
    pub fn disconnect(&mut self) -> io::Result<()> {
        self.tell("disconnect")?;
        let mut pending = self.clients.len();
        while pending > 0 {
            let (_, line) = self.next_line(Duration::from_secs(30))?;
            pending -= usize::from(line["type"] == "disconnected");
        }
        self.received.iter_mut().for_each(|r| *r = 0);
        self.live.iter_mut().for_each(|r| *r = 0);
        Ok(())
    }

    /// Starts every client process reconnecting all its sockets, each with `?since=` its
    /// position (`since_file`: the plain sockets' positions), expecting the unicasts below
    /// `missed_below` to be replayed; returns at once (see [`Swarm::wait_reconnected`]).
    pub fn start_reconnect(
        &mut self,
        missed_below: u64,
        since_file: Option<&std::path::Path>,
    ) -> io::Result<()> {
        let file = since_file.map(|p| format!(" {}", p.display())).unwrap_or_default();
        self.tell(&format!("reconnect {missed_below}{file}"))
    }

    /// Waits until every socket reconnected (or failed to).
    pub fn wait_reconnected(&mut self) -> io::Result<()> {
        self.wait_connected("reconnecting")
    }

    fn next_line(&mut self, timeout: Duration) -> io::Result<(usize, Value)> {
        let (index, line) = self
            .lines
            .recv_timeout(timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client processes went quiet"))?;
        if line["type"] == "exited" {
            return Err(io::Error::other(format!("client process {index} exited")));
        }
        Ok((index, line))
    }

    /// Waits until `expected` first deliveries (to the right socket) arrived in all, or
    /// nothing arrived for `stall`; then `settle` more, so that a late copy is counted in this
    /// phase. Returns the count seen.
    pub fn wait_for(&mut self, expected: u64, stall: Duration, label: &str) -> io::Result<u64> {
        let mut progress = Progress::new(label, expected, self.show_progress);
        let mut last_change = Instant::now();
        let mut settled: Option<Instant> = None;
        loop {
            let total: u64 = self.received.iter().sum();
            progress.set(total);
            if total >= expected || last_change.elapsed() > stall {
                let since = *settled.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE {
                    progress.finish(total);
                    return Ok(total);
                }
            }
            if self.poll_received()? {
                last_change = Instant::now();
            }
        }
    }

    /// Ends the phase: every client reports (expecting `broadcasts` broadcasts per healthy
    /// socket) and starts counting afresh.
    pub fn report(&mut self, broadcasts: u64) -> io::Result<Merged> {
        self.report_with(&format!("report {broadcasts}"))
    }

    /// Ends the phase of per-socket unicasts (`resume`): every socket expects the unicasts
    /// `lo..hi` of its id.
    pub fn report_range(&mut self, lo: u64, hi: u64) -> io::Result<Merged> {
        self.report_with(&format!("report-range {lo} {hi}"))
    }

    fn report_with(&mut self, command: &str) -> io::Result<Merged> {
        self.tell(command)?;
        let mut merged = Merged::default();
        let mut pending = self.clients.len();
        while pending > 0 {
            let (_, line) = self.next_line(Duration::from_secs(30))?;
            if line["type"] != "report" {
                continue;
            }
            pending -= 1;
            let n = |key: &str| line[key].as_u64().unwrap_or(0);
            merged.healthy += n("healthy");
            merged.deliveries += n("deliveries");
            merged.unicast_distinct += n("unicast_distinct");
            merged.unicast_duplicates += n("unicast_duplicates");
            merged.misrouted += n("misrouted");
            merged.unexpected += n("unexpected");
            merged.broadcast_missing += n("broadcast_missing");
            merged.broadcast_duplicates += n("broadcast_duplicates");
            merged.pings += n("pings");
            merged.bad_frames += n("bad_frames");
            merged.unicast_expected += n("unicast_expected");
            merged.unicast_missing += n("unicast_missing");
            merged.positions.add(&PositionFaults::from_report(&line));
            merged.pos_signals += n("pos_signals");
            merged.live += n("live");
            merged.replays_done += n("replays_done");
            merged.replay_done_ns = merged.replay_done_ns.max(n("replay_done_ns"));
            merged.replay_pending += n("replay_pending");
            if n("first_ns") > 0 && (merged.first_ns == 0 || n("first_ns") < merged.first_ns) {
                merged.first_ns = n("first_ns");
            }
            merged.last_ns = merged.last_ns.max(n("last_ns"));
            merged.latency.merge(&Histogram::from_json(&line["latency"]));
            for (why, count) in line["closes"].as_object().into_iter().flatten() {
                *merged.closes.entry(why.clone()).or_insert(0) += count.as_u64().unwrap_or(0);
            }
        }
        self.received.iter_mut().for_each(|r| *r = 0);
        Ok(merged)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for client in &mut self.clients {
            let _ = writeln!(client.stdin, "quit");
        }
        for client in &mut self.clients {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = client.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = client.child.kill();
            let _ = client.child.wait();
        }
    }
}
