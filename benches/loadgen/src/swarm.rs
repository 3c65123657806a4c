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
}

impl Swarm {
    /// Starts one process per share; returns once every connection is upgraded or failed.
    pub fn connect(
        shares: &[Share],
        unicast_space: u64,
        kind: ClientKind,
        show_progress: bool,
    ) -> io::Result<Swarm> {
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
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            if let Some(source) = share.source {
                command.args(["--source", &source.to_string()]);
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
            clients,
            lines,
            connected: 0,
            failed: 0,
            connect_seconds: 0.0,
            failures: BTreeMap::new(),
            show_progress,
        };
        let mut progress = Progress::new("connecting", total, show_progress);
        let mut connected = vec![0u64; swarm.clients.len()];
        let mut done = vec![false; swarm.clients.len()];
        while !done.iter().all(|&d| d) {
            let (index, line) = swarm.next_line(Duration::from_secs(120))?;
            match line["type"].as_str() {
                Some("progress") => connected[index] = line["connected"].as_u64().unwrap_or(0),
                Some("connected") => {
                    done[index] = true;
                    connected[index] = line["connected"].as_u64().unwrap_or(0);
                    swarm.connected += connected[index];
                    swarm.failed += line["failed"].as_u64().unwrap_or(0);
                    swarm.connect_seconds =
                        swarm.connect_seconds.max(line["seconds"].as_f64().unwrap_or(0.0));
                    for (why, n) in line["failures"].as_object().into_iter().flatten() {
                        *swarm.failures.entry(why.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
                    }
                }
                _ => {}
            }
            progress.set(connected.iter().sum());
        }
        progress.finish(swarm.connected);
        Ok(swarm)
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
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok((index, line)) if line["type"] == "received" => {
                    self.received[index] = line["count"].as_u64().unwrap_or(0);
                    last_change = Instant::now();
                }
                Ok((index, line)) if line["type"] == "exited" => {
                    return Err(io::Error::other(format!("client process {index} exited")))
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(io::Error::other("clients gone")),
            }
        }
    }

    /// Ends the phase: every client reports (expecting `broadcasts` broadcasts per healthy
    /// socket) and starts counting afresh.
    pub fn report(&mut self, broadcasts: u64) -> io::Result<Merged> {
        for client in &mut self.clients {
            writeln!(client.stdin, "report {broadcasts}")?;
            client.stdin.flush()?;
        }
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
