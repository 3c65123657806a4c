//! The processes a run measures: Redis, wspush nodes (the release `wspush` binary), the
//! Node.js baseline, its Bun (uWebSockets) twin, or an in-process engine host (`wspush-bench host`). Each is killed when
//! dropped, so a failed run leaves nothing behind.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procstat;

/// A child process, killed on drop.
pub struct Process {
    child: Child,
    pub name: String,
}

impl Process {
    fn spawn(name: &str, command: &mut Command) -> io::Result<Process> {
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name} ({command:?}): {e}")))?;
        Ok(Process { child, name: name.into() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu_seconds(&self) -> f64 {
        procstat::cpu_seconds(self.pid())
    }

    pub fn rss_bytes(&self) -> u64 {
        procstat::rss_bytes(self.pid())
    }

    fn check_running(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!("{} exited early ({status})", self.name))),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(process: &mut Process, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        process.check_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not listen on {addr} within {timeout:?}", process.name),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of our own, nothing persisted; or (`start_cluster`) a Redis Cluster of
/// such servers, masters only.
pub struct Redis {
    pub processes: Vec<Process>,
    /// Every server's address (one for a single Redis, each master's for a cluster).
    pub addrs: Vec<SocketAddr>,
    /// A Redis Cluster: the nodes get `redis+cluster://` and publish sharded.
    pub cluster: bool,
}

impl Redis {
    pub fn start() -> io::Result<Redis> {
        let (process, addr) = Self::spawn_server(&[])?;
        Ok(Redis { processes: vec![process], addrs: vec![addr], cluster: false })
    }

    fn spawn_server(extra: &[&str]) -> io::Result<(Process, SocketAddr)> {
        let port = loop {
            // A cluster node's bus port (port + 10,000) must exist and be free too.
            let port = free_port()?;
            if extra.is_empty()
                || (port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok())
            {
                break port;
            }
        };
        let dir = std::env::temp_dir().join(format!("wspush-bench-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut process = Process::spawn(
            "redis-server",
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&dir)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_for_port(&mut process, addr, Duration::from_secs(10))?;
        Ok((process, addr))
    }

    /// A Redis Cluster of `masters` masters (no replicas), created with `redis-cli --cluster
    /// create` and waited for until every node says `cluster_state:ok`.
    pub fn start_cluster(masters: usize) -> io::Result<Redis> {
        let mut processes = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..masters {
            let (process, addr) =
                Self::spawn_server(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])?;
            processes.push(process);
            addrs.push(addr);
        }
        let mut create = Command::new("redis-cli");
        if masters == 1 {
            // `--cluster create` wants 3 masters at least: one node takes every slot itself.
            create.args(["-h", "127.0.0.1", "-p", &addrs[0].port().to_string()]);
            create.args(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        } else {
            create.args(["--cluster", "create"]).args(addrs.iter().map(ToString::to_string));
            create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        }
        create.stdout(Stdio::null()).stderr(Stdio::piped());
        let out = create.output().map_err(|e| io::Error::other(format!("cannot run redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let redis = Redis { processes, addrs, cluster: true };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !redis.addrs.iter().all(|addr| {
            bulk_answer(*addr, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
        }) {
            if Instant::now() > deadline {
                return Err(io::Error::other("the Redis Cluster did not become ok within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    /// A Redis someone else runs.
    pub fn existing(addr: SocketAddr) -> Redis {
        Redis { processes: Vec::new(), addrs: vec![addr], cluster: false }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        match self.cluster {
            true => format!("redis+cluster://{}", hosts.join(",")),
            false => format!("redis://{}", hosts[0]),
        }
    }

    /// CPU seconds of every server together.
    pub fn cpu_seconds(&self) -> f64 {
        self.processes.iter().map(Process::cpu_seconds).sum()
    }

    /// CPU seconds of each server.
    pub fn cpu_seconds_each(&self) -> Vec<f64> {
        self.processes.iter().map(Process::cpu_seconds).collect()
    }

    /// Calls per command since start (`INFO commandstats`), summed over the servers, e.g.
    /// `("publish", 1200)`; a cluster's sharded commands count as their classic ones
    /// (`spublish` as `publish`, `ssubscribe` as `subscribe`).
    pub fn command_calls(&self) -> io::Result<Vec<(String, u64)>> {
        let mut calls: Vec<(String, u64)> = Vec::new();
        for addr in &self.addrs {
            for line in bulk_answer(*addr, &["INFO", "commandstats"])?.lines() {
                let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
                    continue;
                };
                let Some(count) =
                    rest.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|c| c.parse().ok())
                else {
                    continue;
                };
                let name = match name {
                    "spublish" => "publish",
                    "ssubscribe" => "subscribe",
                    "sunsubscribe" => "unsubscribe",
                    other => other,
                };
                match calls.iter_mut().find(|(n, _)| n == name) {
                    Some((_, c)) => *c += count,
                    None => calls.push((name.to_owned(), count)),
                }
            }
        }
        Ok(calls)
    }

    /// Calls of `command` since start.
    pub fn calls_of(&self, command: &str) -> u64 {
        self.command_calls()
            .ok()
            .and_then(|all| all.into_iter().find(|(n, _)| n == command))
            .map_or(0, |(_, c)| c)
    }
}

/// The bulk-string answer of the Redis at `addr` to `args` (`INFO commandstats`,
/// `CLUSTER INFO`).
fn bulk_answer(addr: SocketAddr, args: &[&str]) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let length: usize = header.trim().trim_start_matches('$').parse().map_err(io::Error::other)?;
    let mut body = vec![0; length + 2];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The `wspush` release binary (or, with `--via inproc`, the engine in a host process).
    Wspush,
    /// benches/baseline: Node.js ws + ioredis, the original design.
    Baseline,
    /// benches/baseline-bun: the same design on Bun.serve (uWebSockets topics) and Bun's Redis client.
    Uws,
}

impl Target {
    /// The original design (Node.js or Bun): one compat channel, no envelope, no in-process sends.
    pub fn is_baseline(self) -> bool {
        matches!(self, Target::Baseline | Target::Uws)
    }
}

/// How a wspush node is configured beyond its ports.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub redis_url: Option<String>,
    pub compat_channel: Option<String>,
    pub node_id: Option<String>,
    pub workers: usize,
    pub extra: Vec<String>,
    pub binary: Option<PathBuf>,
}

/// One server under test.
pub struct Node {
    /// `None` for a server someone else runs (`--server-ws`): no CPU or memory figures.
    pub process: Option<Process>,
    pub ws: SocketAddr,
    /// Where the HTTP API (`/socket/{id}`, `/stats`) answers; the baseline serves both on one port.
    pub api: SocketAddr,
    host: Option<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
}

fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found: build it with `cargo build --release -p wspush`", path.display()),
        ))
    }
}

/// benches/baseline, with its dependencies installed.
pub fn baseline_dir() -> io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline");
    if !dir.join("node_modules/ws").exists() || !dir.join("node_modules/ioredis").exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the baseline's dependencies are missing: run `npm ci` in {}", dir.display()),
        ));
    }
    Ok(dir)
}

/// benches/baseline-bun, with bun installed (by `npm ci` there): the directory and the binary.
pub fn baseline_bun() -> io::Result<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline-bun");
    let bun = dir.join("node_modules/.bin/bun");
    if !bun.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("bun is missing: run `npm ci` in {}", dir.display()),
        ));
    }
    Ok((dir, bun))
}

impl Node {
    pub fn start_wspush(options: &NodeOptions) -> io::Result<Node> {
        let (ws, api) = (local(free_port()?), local(free_port()?));
        let binary = match &options.binary {
            Some(path) => path.clone(),
            None => sibling_binary("wspush")?,
        };
        let mut command = Command::new(binary);
        command
            .args(["--ws-listen", &ws.to_string(), "--api-listen", &api.to_string()])
            .args(["--log", "warn"])
            .args(&options.extra)
            .stdout(Stdio::null());
        if options.workers > 0 {
            command.args(["--workers", &options.workers.to_string()]);
        }
        if let Some(url) = &options.redis_url {
            command.args(["--redis", url]);
        }
        if let Some(channel) = &options.compat_channel {
            command.args(["--compat-channel", channel]);
        }
        if let Some(node_id) = &options.node_id {
            command.args(["--node-id", node_id]);
        }
        let mut process = Process::spawn("wspush", &mut command)?;
        wait_for_port(&mut process, ws, Duration::from_secs(10))?;
        wait_for_port(&mut process, api, Duration::from_secs(10))?;
        Ok(Node { process: Some(process), ws, api, host: None })
    }

    pub fn start_baseline(redis_url: &str, channel: &str) -> io::Result<Node> {
        let dir = baseline_dir()?;
        Self::start_script(
            "node baseline",
            Command::new("node").arg(dir.join("server.js")),
            redis_url,
            channel,
        )
    }

    /// benches/baseline-bun/server.js under the bun that `npm ci` installed there.
    pub fn start_uws(redis_url: &str, channel: &str) -> io::Result<Node> {
        let (dir, bun) = baseline_bun()?;
        Self::start_script("bun baseline", Command::new(bun).arg(dir.join("server.js")), redis_url, channel)
    }

    /// A baseline server script: `--port`, `--redis`, `--channel`, one port for both.
    fn start_script(name: &str, command: &mut Command, redis_url: &str, channel: &str) -> io::Result<Node> {
        let port = free_port()?;
        let mut process = Process::spawn(
            name,
            command
                .args(["--port", &port.to_string(), "--redis", redis_url, "--channel", channel])
                .stdout(Stdio::null()),
        )?;
        let addr = local(port);
        wait_for_port(&mut process, addr, Duration::from_secs(10))?;
        // The Node.js baseline listens before its subscription is made; /stats answers either
        // way, so give the SUBSCRIBE its round trip.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Node { process: Some(process), ws: addr, api: addr, host: None })
    }

    /// `wspush-bench host`: an engine in a process of its own that sends what it is told to,
    /// in-process (in cluster mode with `redis`: URL and node id). `api` is meaningless for it.
    pub fn start_host(workers: usize, extra: &[String], redis: Option<(String, String)>) -> io::Result<Node> {
        let ws = local(free_port()?);
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["host", "--ws-listen", &ws.to_string(), "--workers", &workers.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some((url, node_id)) = redis {
            command.args(["--redis", &url, "--node-id", &node_id]);
        }
        let mut process = Process::spawn("wspush-bench host", &mut command)?;
        let stdin = process.child.stdin.take().expect("piped");
        let stdout = BufReader::new(process.child.stdout.take().expect("piped"));
        wait_for_port(&mut process, ws, Duration::from_secs(10))?;
        Ok(Node { process: Some(process), ws, api: ws, host: Some(Mutex::new((stdin, stdout))) })
    }

    /// A server someone else runs, its WebSocket and HTTP API addresses.
    pub fn external(ws: SocketAddr, api: SocketAddr) -> Node {
        Node { process: None, ws, api, host: None }
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.process.as_ref().map_or(0.0, Process::cpu_seconds)
    }

    pub fn rss_bytes(&self) -> u64 {
        self.process.as_ref().map_or(0, Process::rss_bytes)
    }

    /// Sends a line to the host (a plan, or `stats`).
    pub fn host_send(&self, line: &str) -> io::Result<()> {
        let host = self.host.as_ref().ok_or_else(|| io::Error::other("not a host node"))?;
        let mut host = host.lock().expect("not poisoned");
        writeln!(host.0, "{line}")?;
        host.0.flush()
    }

    /// The host's next answer.
    pub fn host_answer(&self) -> io::Result<Value> {
        let host = self.host.as_ref().ok_or_else(|| io::Error::other("not a host node"))?;
        let mut host = host.lock().expect("not poisoned");
        let mut line = String::new();
        if host.1.read_line(&mut line)? == 0 {
            return Err(io::Error::other("the host exited"));
        }
        serde_json::from_str(&line).map_err(io::Error::other)
    }

    /// `GET /stats` (wspush and the baseline both answer it; a host answers in that shape).
    pub fn stats(&self) -> io::Result<Value> {
        if self.host.is_some() {
            self.host_send("stats")?;
            return self.host_answer();
        }
        http_get_json(self.api, "/stats")
    }
}

fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// A GET, its body parsed as JSON.
pub fn http_get_json(addr: SocketAddr, path: &str) -> io::Result<Value> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let body = crate::publish::read_http_body(&mut reader)?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("GET {path} on {addr}: {}", status.trim())));
    }
    serde_json::from_slice(&body).map_err(|e| io::Error::other(format!("GET {path} on {addr}: {e}")))
}
